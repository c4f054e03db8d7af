"""The delivery worker: claim due deliveries, POST them outside any transaction, record what happened.

The SQL that matters is here on purpose. A claim is one UPDATE over a sub-select of due rows that sets a lease
and commits; on PostgreSQL the sub-select takes ``FOR UPDATE SKIP LOCKED`` so workers on many machines claim
disjoint rows without waiting on each other, and on SQLite callplane's transactions are ``BEGIN IMMEDIATE``, so
claims serialize. The POST happens after that commit (no transaction is held open on a slow receiver), and
the result is written only if the lease is still the one we set (the lease time is the fencing token): a
worker that stalled past its lease finds the row taken and writes nothing. A worker that crashes mid-POST
leaves a lease that lapses, and the delivery is sent again: delivery is at least once, receivers dedupe on
``webhook-id``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import ipaddress
import json
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, cast

import httpx
from opentelemetry.trace import SpanKind
from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# The guarded transport is private to recordings for now; it is the one SSRF-safe HTTP client in callplane
# (every connect resolved, checked and pinned). Move it to a shared module when a third user appears.
from callplane.core.recordings.errors import FetchError
from callplane.core.recordings.fetch import _GuardedTransport
from callplane.core.recordings.targets import IPAddress, TargetPolicy
from callplane.core.tenancy.secrets_box import SecretBox, SecretUnreadable
from callplane.core.webhooks import outbox
from callplane.core.webhooks.errors import DeliveryTargetRefused
from callplane.core.webhooks.models import Delivery, DeliveryKind, DeliveryStatus, WebhookEndpoint
from callplane.core.webhooks.signing import ID_HEADER, TIMESTAMP_HEADER, signature_headers
from callplane.observability.metrics import WEBHOOK_DELIVERIES, WEBHOOK_LAG
from callplane.observability.tracing import continued

log = logging.getLogger(__name__)

DELIVERIES = cast(Table, Delivery.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
USER_AGENT = "callplane-webhooks/1"


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """Worker knobs; the defaults are production values, tests shrink the times."""

    batch_size: int = 32  # deliveries claimed per run_once
    concurrency: int = 4  # POSTs in flight per worker (the guarded pool holds 4 connections)
    lease_s: float = 60.0  # must outlast timeout_s, or a slow POST could be claimed twice
    timeout_s: float = 10.0  # whole request, connect to last byte (GitHub's receiver deadline)
    backoff_base_s: float = 30.0
    backoff_cap_s: float = 6 * 3600.0
    poll_interval_s: float = 1.0
    max_response_bytes: int = 64 * 1024  # we read (and discard) at most this much of a response

    def __post_init__(self) -> None:
        if self.lease_s <= self.timeout_s:
            raise ValueError("lease_s must be longer than timeout_s")


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery this worker holds the lease on; ``lease_expires_at`` fences the write of its result."""

    id: str
    kind: str
    endpoint_id: str | None
    url: str
    event_type: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    lease_expires_at: datetime
    secret: str | None  # the signing secret, decrypted; never logged
    blocked: str | None  # why it must not be sent at all (endpoint deleted or disabled)
    basic_auth: tuple[str, str] | None = None  # (username, encrypted password); never logged
    created_at: datetime | None = None  # when the outbox row was written: the lag metric's start
    trace_context: str | None = None  # the traceparent of the span that wrote the row: the POST continues it

    def __repr__(self) -> str:
        return f"ClaimedDelivery(id={self.id!r}, kind={self.kind!r}, event_type={self.event_type!r})"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to; ``sent`` is False when nothing went on the wire."""

    status_code: int | None
    error: str | None
    sent: bool = True
    permanent: bool = False
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff_s(attempts: int, *, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter (AWS): retries of many deliveries that failed together spread out."""
    return random.uniform(0, min(cap_s, base_s * 2 ** max(0, attempts - 1)))  # noqa: S311 - jitter, not security


class _DeliveryPolicy(TargetPolicy):
    """The recordings target policy, with a refusal message that speaks of notifications."""

    __slots__ = ()

    def check(self, ip: IPAddress, host: str | None = None) -> None:
        reason = self.refusal(ip, host)
        if reason is not None:
            literal = host is None or _is_ip(host)
            via = f"{ip} is" if literal else f"{host} resolves to {ip},"
            raise DeliveryTargetRefused(
                f"refusing to deliver: {via} a {reason} address; notifications go only to public addresses "
                "unless an operator allow-lists the network or host"
            )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def _log_result(claimed: ClaimedDelivery, outcome: Outcome, owned: bool) -> None:
    fields: dict[str, Any] = {
        "delivery_id": claimed.id,
        "kind": claimed.kind,
        "event_type": claimed.event_type,
        "target": _where(claimed.url),
        "attempt": claimed.attempts + 1,
        "status_code": outcome.status_code,
    }
    if not owned:
        log.warning("delivery lease lost; result discarded", extra={"fields": fields})
    elif outcome.delivered:
        log.info("delivery delivered", extra={"fields": fields})
    else:
        log.warning("delivery attempt failed", extra={"fields": fields | {"error": outcome.error}})


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive; they were written in UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _where(url: str) -> str:
    """host:port only: URLs may carry credentials or tokens, which never reach a log or ``last_error``."""
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


class DeliveryWorker:
    """Sends due deliveries. Any number may run against one database; each delivery goes out once per attempt."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        secret_box: SecretBox,
        policy: TargetPolicy,
        config: DeliveryConfig | None = None,
        callback_secret: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._box = secret_box
        self._policy = _DeliveryPolicy(policy.allowed_networks, policy.allowed_hosts)
        self.config = config or DeliveryConfig()
        self._callback_secret = callback_secret  # a whsec_ secret; callbacks go unsigned without one
        self._client: httpx.AsyncClient | None = None
        self.worker_id = uuid.uuid4().hex[:12]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=_GuardedTransport(self._policy, None),
                follow_redirects=False,  # a 3xx is a failed attempt (Standard Webhooks), never followed
                trust_env=False,  # an environment proxy would bypass the guarded transport
                timeout=httpx.Timeout(self.config.timeout_s),
            )
        return self._client

    # --- the SQL ---------------------------------------------------------------------------------------------

    async def claim(self) -> list[ClaimedDelivery]:
        """Lease up to ``batch_size`` due deliveries and commit, so the POSTs run outside any transaction."""
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=self.config.lease_s)
        d = DELIVERIES.c
        due = (
            select(d.id)
            .where(
                d.status == DeliveryStatus.PENDING,
                d.next_attempt_at <= now,
                or_(d.lease_expires_at.is_(None), d.lease_expires_at < now),
            )
            .order_by(d.next_attempt_at)
            .limit(self.config.batch_size)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has no row locks and BEGIN IMMEDIATE instead
        )
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    update(DELIVERIES)
                    .where(d.id.in_(due.scalar_subquery()))
                    .values(lease_expires_at=lease)
                    .returning(
                        d.id,
                        d.kind,
                        d.endpoint_id,
                        d.url,
                        d.event_type,
                        d.payload,
                        d.attempts,
                        d.max_attempts,
                        d.created_at,
                        d.trace_context,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).all()
            endpoint_ids = {row.endpoint_id for row in rows if row.endpoint_id}
            endpoints: dict[str, tuple[bool, str, tuple[str, str] | None]] = {}
            if endpoint_ids:
                e = ENDPOINTS.c
                result = await session.execute(
                    select(e.id, e.enabled, e.secret_ciphertext, e.basic_auth_username, e.basic_auth_ciphertext).where(
                        e.id.in_(endpoint_ids)
                    )
                )
                endpoints = {
                    row.id: (
                        bool(row.enabled),
                        row.secret_ciphertext,
                        (row.basic_auth_username, row.basic_auth_ciphertext) if row.basic_auth_ciphertext else None,
                    )
                    for row in result
                }
        return [self._claimed(row, lease, endpoints) for row in rows]

    def _claimed(
        self, row: Any, lease: datetime, endpoints: dict[str, tuple[bool, str, tuple[str, str] | None]]
    ) -> ClaimedDelivery:
        secret: str | None = None
        blocked: str | None = None
        basic_auth: tuple[str, str] | None = None
        if row.kind == DeliveryKind.WEBHOOK:
            found = endpoints.get(row.endpoint_id or "")
            if found is None:
                blocked = "the webhook endpoint was deleted"
            elif not found[0]:
                blocked = "the webhook endpoint is disabled"
            else:
                secret = found[1]  # still encrypted; decrypted in deliver()
                basic_auth = found[2]
        else:
            secret = self._callback_secret
        return ClaimedDelivery(
            id=row.id,
            kind=row.kind,
            endpoint_id=row.endpoint_id,
            url=row.url,
            event_type=row.event_type,
            payload=row.payload,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            lease_expires_at=lease,
            secret=secret,
            blocked=blocked,
            basic_auth=basic_auth,
            created_at=_utc(row.created_at),
            trace_context=row.trace_context,
        )

    async def record(self, claimed: ClaimedDelivery, outcome: Outcome) -> bool:
        """Write one attempt's result if the lease is still ours; False means another worker owns it now."""
        [owned] = await self.record_many([(claimed, outcome)])
        return owned

    async def record_many(self, results: Sequence[tuple[ClaimedDelivery, Outcome]]) -> list[bool]:
        """Write a batch's results in one transaction (one commit, one fsync on SQLite, instead of one each).

        Each UPDATE is fenced by the lease we set: a row whose lease lapsed and was claimed again is left to
        its new owner, and its entry in the returned list is False.
        """
        now = datetime.now(UTC)
        d = DELIVERIES.c
        owned: list[bool] = []
        # Plain successes (the bulk under load) sharing a lease and status code are written by one UPDATE; the
        # lease fences it exactly as it fences the per-row UPDATE below, and RETURNING says which rows were ours.
        successes: dict[tuple[datetime, int | None], list[str]] = {}
        for claimed, outcome in results:
            if outcome.delivered:
                successes.setdefault((claimed.lease_expires_at, outcome.status_code), []).append(claimed.id)
        async with self._sessions() as session, session.begin():
            written: set[str] = set()
            for (lease, status_code), ids in successes.items():
                result = await session.execute(
                    update(DELIVERIES)
                    .where(d.id.in_(ids), d.status == DeliveryStatus.PENDING, d.lease_expires_at == lease)
                    .values(
                        attempts=d.attempts + 1,
                        lease_expires_at=None,
                        last_status_code=status_code,
                        last_error=None,
                        status=DeliveryStatus.DELIVERED,
                        delivered_at=now,
                    )
                    .returning(d.id)
                    .execution_options(synchronize_session=False)
                )
                written.update(result.scalars())
            for claimed, outcome in results:
                if outcome.delivered:
                    owned.append(claimed.id in written)
                    continue
                result = await session.execute(
                    update(DELIVERIES)
                    .where(
                        and_(
                            d.id == claimed.id,
                            d.status == DeliveryStatus.PENDING,
                            d.lease_expires_at == claimed.lease_expires_at,
                        )
                    )
                    .values(**self._result_values(claimed, outcome, now))
                    .execution_options(synchronize_session=False)
                )
                ours = bool(result.rowcount)  # type: ignore[attr-defined]
                owned.append(ours)
                if ours and claimed.kind == DeliveryKind.WEBHOOK and outcome.status_code == 410:
                    # 410 Gone: the receiver asks us to stop (Standard Webhooks); pending deliveries then fail.
                    await session.execute(
                        update(ENDPOINTS).where(ENDPOINTS.c.id == claimed.endpoint_id).values(enabled=False)
                    )
        for (claimed, outcome), ours in zip(results, owned, strict=True):
            _log_result(claimed, outcome, ours)
            if ours:  # counted where the result is written, once per attempt, by the worker that owns it
                self._count(claimed, outcome, now)
        return owned

    def _count(self, claimed: ClaimedDelivery, outcome: Outcome, now: datetime) -> None:
        if outcome.delivered:
            WEBHOOK_DELIVERIES.labels(claimed.kind, "delivered").inc()
            if claimed.created_at is not None:
                WEBHOOK_LAG.labels(claimed.kind).observe(max(0.0, (now - claimed.created_at).total_seconds()))
            return
        attempts = claimed.attempts + (1 if outcome.sent else 0)
        gave_up = outcome.permanent or attempts >= claimed.max_attempts
        WEBHOOK_DELIVERIES.labels(claimed.kind, "failed" if gave_up else "retry").inc()

    def _result_values(self, claimed: ClaimedDelivery, outcome: Outcome, now: datetime) -> dict[str, Any]:
        attempts = claimed.attempts + (1 if outcome.sent else 0)
        values: dict[str, Any] = {
            "attempts": attempts,
            "lease_expires_at": None,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
        }
        if outcome.delivered:
            return values | {"status": DeliveryStatus.DELIVERED, "delivered_at": now}
        if outcome.permanent or attempts >= claimed.max_attempts:
            return values | {"status": DeliveryStatus.FAILED}
        delay = backoff_s(attempts, base_s=self.config.backoff_base_s, cap_s=self.config.backoff_cap_s)
        if outcome.retry_after_s is not None:
            delay = max(delay, min(outcome.retry_after_s, self.config.backoff_cap_s))
        return values | {"next_attempt_at": now + timedelta(seconds=delay)}

    # --- HTTP ------------------------------------------------------------------------------------------------

    async def send(self, claimed: ClaimedDelivery) -> Outcome:
        """POST the delivery once; never raises for anything the receiver or the network does."""
        if claimed.blocked is not None:
            return Outcome(None, claimed.blocked, sent=False, permanent=True)
        body = json.dumps(claimed.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        try:
            secret = claimed.secret
            if secret is not None and claimed.kind == DeliveryKind.WEBHOOK:
                secret = self._box.decrypt(secret)
            if claimed.basic_auth is not None:
                username, ciphertext = claimed.basic_auth
                token = base64.b64encode(f"{username}:{self._box.decrypt(ciphertext)}".encode()).decode()
                headers["authorization"] = f"Basic {token}"
        except SecretUnreadable:
            return Outcome(
                None, "the endpoint's signing secret cannot be decrypted with the configured key", sent=False
            )
        if secret is not None:
            headers |= signature_headers(secret, claimed.id, body)
        else:  # unsigned callbacks still carry the id receivers dedupe on
            headers |= {ID_HEADER: claimed.id, TIMESTAMP_HEADER: str(int(time.time()))}
        where = _where(claimed.url)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                async with self._http().stream("POST", claimed.url, content=body, headers=headers) as response:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= self.config.max_response_bytes:
                            break  # the answer is the status code; a huge body is not our problem
        except TimeoutError:
            return Outcome(None, f"{where} did not answer within {self.config.timeout_s:g} s")
        except DeliveryTargetRefused as exc:
            return Outcome(None, exc.message, sent=False, permanent=True)
        except FetchError as exc:  # the guarded transport's connect, timeout and protocol errors
            return Outcome(None, exc.message)
        except httpx.HTTPError as exc:
            return Outcome(None, f"{where}: {type(exc).__name__}")
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(status, None)
        said = f"{where} answered {status} {response.reason_phrase}".rstrip()
        if status == 410:
            gone = "; the webhook endpoint is now disabled" if claimed.kind == DeliveryKind.WEBHOOK else ""
            return Outcome(status, said + gone, permanent=True)
        if 300 <= status < 400:
            said += " (redirects are not followed; register the final URL)"
        return Outcome(status, said, retry_after_s=_retry_after_s(response.headers.get("retry-after")))

    async def run_once(self) -> int:
        """Claim one batch of due deliveries, send them (``concurrency`` at a time), record the results together.

        Returns how many were claimed. Recording per batch delays a result by at most one ``timeout_s``; a crash
        before the write re-sends the batch, which at-least-once delivery allows.
        """
        claimed = await self.claim()
        if not claimed:
            return 0
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(item: ClaimedDelivery) -> Outcome:
            async with gate:
                # Continues the trace of what wrote the row (a job's stage, an API request); no-op when tracing is off.
                with continued(f"deliver {item.event_type}", item.trace_context, kind=SpanKind.CLIENT) as span:
                    outcome = await self.send(item)
                    span.set_attribute("http.response.status_code", outcome.status_code or 0)
                    return outcome

        outcomes = await asyncio.gather(*(one(item) for item in claimed), return_exceptions=True)
        results: list[tuple[ClaimedDelivery, Outcome]] = []
        for item, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                # A bug, not the receiver's doing: leave the row leased (it is retried when the lease lapses)
                # and log the cause rather than hide it in last_error.
                log.error("sending a delivery failed", exc_info=outcome, extra={"fields": {"delivery_id": item.id}})
                continue
            results.append((item, outcome))
        if results:
            await self.record_many(results)
        return len(claimed)

    async def run_forever(self, stop_event: asyncio.Event) -> None:
        """Poll until ``stop_event`` is set; a full batch is followed at once by the next claim, and a commit in
        this process that wrote deliveries (``outbox.deliveries_written``) ends the wait early."""
        wake = asyncio.Event()

        async def stop_wakes() -> None:
            await stop_event.wait()
            wake.set()

        stopper = asyncio.create_task(stop_wakes())
        key = outbox.register(wake)
        try:
            while not stop_event.is_set():
                wake.clear()  # before the claim: a commit during this run brings the next one at once
                try:
                    processed = await self.run_once()
                except (SQLAlchemyError, OSError):
                    log.exception("delivery worker: claim failed; retrying after the poll interval")
                    processed = 0
                if processed < self.config.batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self.config.poll_interval_s)
        finally:
            outbox.unregister(key)
            stopper.cancel()
