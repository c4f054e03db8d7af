"""Signals and custom data set on a call from outside: with the call, or later through a signal API.

A submitted signal is identified on its call by (signal definition, ``partner_unique_id``): the same pair
again replaces the earlier row (the new row names the one it corrects), a new ``partner_unique_id`` adds a
second signal of that name, and resending exactly what is stored changes nothing. A custom data field has
one value per call; a new one replaces it. Names match the account's definitions case-insensitively and the
stored name is the definition's. The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls.models import Call, CallCustomData, CallSignal
from callplane.core.events.models import Event
from callplane.core.events.types import CALL_SIGNALS_APPLIED
from callplane.core.signals.errors import (
    AdvertiserNotAccessible,
    CallNotMatched,
    SignalLimitReached,
    SignalsRejected,
)
from callplane.core.signals.models import SignalSubmission, SubmissionStatus
from callplane.core.tenancy.models import Organization
from callplane.core.tenancy.schemas import AccountCatalog, Principal
from callplane.core.tenancy.service import TenancyLookups
from callplane.db.base import new_id

MAX_SIGNALS_PER_CALL = 100
# A call found by start time may differ from the one reported by this much (clocks are not synchronised).
START_TIME_TOLERANCE = timedelta(minutes=15)
SUBMITTED = "submitted"  # with the call, at ingestion
API = "api"  # later, through a signal API
DETECTED = "detected"  # found in the transcript
# How long a call_in_progress submission waits for its call (Invoca: "may take up to 24 hours to process").
PENDING_MAX_AGE = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class SignalInput:
    name: str
    value: bool = True
    partner_unique_id: str = ""
    occurred_at: datetime | None = None  # None: now for a new signal, unchanged for an update
    revenue: str | None = None  # a decimal with up to two places, as sent


@dataclass(frozen=True, slots=True)
class CustomDataInput:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class CallSearch:
    """How the submitter names the call: our id, or a start time with optional narrowing fields."""

    call_id: str | None = None
    started_at: datetime | None = None
    calling_e164: str | None = None
    duration_s: float | None = None
    advertiser_external_id: str | None = None
    campaign_external_id: str | None = None
    network_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        stored = asdict(self)
        stored["started_at"] = self.started_at.isoformat() if self.started_at else None
        return stored

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> CallSearch:
        started = stored.get("started_at")
        return cls(**{**stored, "started_at": datetime.fromisoformat(started) if started else None})


@dataclass(frozen=True, slots=True)
class AppliedSignal:
    id: str
    name: str
    partner_unique_id: str
    value: bool
    occurred_at: datetime | None
    revenue: str | None
    corrects_id: str | None  # the row this one replaced, when it was an update


@dataclass(frozen=True, slots=True)
class Applied:
    call: Call
    signals: list[AppliedSignal] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose calls a search may find: one account, optionally only some of its organizations."""

    account_id: str
    account_external_id: str | None = None
    organization_scope: frozenset[str] | None = None

    @classmethod
    def of(cls, principal: Principal) -> Scope:
        return cls(principal.account.id, principal.account.external_id, principal.organization_scope)


def signal_row(
    *,
    call_id: str,
    account_id: str,
    definition: tuple[str, str],
    signal: SignalInput,
    source: str,
    now: datetime,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """One call_signals row for a submitted signal (``definition`` is the catalog's (id, name))."""
    return {
        "id": new_id(),
        "call_id": call_id,
        "account_id": account_id,
        "signal_definition_id": definition[0],
        "name": definition[1],
        "value": signal.value,
        "source": source,
        "evidence": {},
        "partner_unique_id": signal.partner_unique_id,
        "occurred_at": signal.occurred_at,
        "revenue": signal.revenue,
        "created_at": created_at or now,
        "updated_at": None if created_at is None else now,
    }


def custom_data_row(
    *, call_id: str, account_id: str, field: tuple[str | None, str], value: str, source: str, now: datetime
) -> dict[str, Any]:
    """One call_custom_data row (``field`` is the catalog's (id, api name), or (None, name) unchecked)."""
    return {
        "id": new_id(),
        "call_id": call_id,
        "account_id": account_id,
        "field_id": field[0],
        "name": field[1],
        "value": value,
        "source": source,
        "created_at": now,
    }


def unknown_names(catalog: AccountCatalog, signal_names: Iterable[str], field_names: Iterable[str]) -> list[str]:
    """The documented "must already exist" checks, one problem per unknown name."""
    problems = [
        f"signal {name!r} does not exist in your Signal AI configuration"
        for name in signal_names
        if name.casefold() not in catalog.signals
    ]
    problems += [
        f"custom data field {name!r} does not exist in your Custom Data configuration"
        for name in field_names
        if name.casefold() not in catalog.custom_fields
    ]
    return problems


async def find_call(*, session: AsyncSession, lookups: TenancyLookups, scope: Scope, search: CallSearch) -> Call:
    """The call the search names, inside ``scope`` only; the closest start time wins a time search."""
    statement: Select[Call] = select(Call).where(Call.account_id == scope.account_id)
    if scope.organization_scope is not None:
        statement = statement.where(Call.organization_id.in_(scope.organization_scope))
    if search.call_id is not None:
        # The documented rule: with a call id, the other search fields are ignored.
        call = await session.scalar(statement.where(Call.id == search.call_id))
        if call is None:
            raise CallNotMatched()
        return call
    if search.started_at is None:
        raise CallNotMatched()
    statement = await _narrowed(session, lookups, scope, search, statement)
    window = statement.where(
        Call.started_at >= search.started_at - START_TIME_TOLERANCE,
        Call.started_at <= search.started_at + START_TIME_TOLERANCE,
    )
    if search.calling_e164 is not None:
        window = window.where(or_(Call.from_e164 == search.calling_e164, Call.contact_e164 == search.calling_e164))
    candidates = list(await session.scalars(window.limit(200)))
    if not candidates:
        raise CallNotMatched()
    return min(candidates, key=lambda call: (_distance(call, search), call.received_at, call.id))


async def _narrowed(
    session: AsyncSession, lookups: TenancyLookups, scope: Scope, search: CallSearch, statement: Select[Call]
) -> Select[Call]:
    if search.network_id is not None and search.network_id not in (scope.account_id, scope.account_external_id):
        raise AdvertiserNotAccessible()
    if search.advertiser_external_id is not None:
        organization_id = await session.scalar(
            select(Organization.id).where(
                Organization.account_id == scope.account_id,
                Organization.external_id == search.advertiser_external_id,
            )
        )
        if organization_id is None or not _visible(scope, organization_id):
            raise AdvertiserNotAccessible()
        statement = statement.where(Call.organization_id == organization_id)
    if search.campaign_external_id is not None:
        campaign = await lookups.campaign(session, scope.account_id, search.campaign_external_id)
        if campaign is None or not _visible(scope, campaign.organization_id):
            raise AdvertiserNotAccessible()
        statement = statement.where(Call.campaign_id == campaign.id)
    return statement


def _visible(scope: Scope, organization_id: str) -> bool:
    return scope.organization_scope is None or organization_id in scope.organization_scope


def _distance(call: Call, search: CallSearch) -> float:
    assert call.started_at is not None and search.started_at is not None
    seconds = abs((call.started_at - search.started_at).total_seconds())
    if search.duration_s is not None and call.duration_ms is not None:
        seconds += abs(call.duration_ms / 1000 - search.duration_s)
    return seconds


async def apply_to_call(
    *,
    session: AsyncSession,
    lookups: TenancyLookups,
    call: Call,
    signals: Sequence[SignalInput],
    custom_data: Sequence[CustomDataInput],
    source: str = API,
    now: datetime | None = None,
) -> list[AppliedSignal]:
    """Add, update or confirm each signal and replace each custom data value; all or nothing."""
    now = now or datetime.now(UTC)
    # Two requests for one call take turns (PostgreSQL row lock; SQLite has one writer anyway), so both
    # cannot insert the same (name, partner_unique_id) or pass the limit together.
    await session.execute(select(Call.id).where(Call.id == call.id).with_for_update())
    catalog = await lookups.catalog(session, call.account_id)
    problems = unknown_names(catalog, (s.name for s in signals), (c.name for c in custom_data))
    if problems:
        raise SignalsRejected("; ".join(problems), problems)
    stored = await session.scalars(
        select(CallSignal).where(CallSignal.call_id == call.id, CallSignal.source.in_((SUBMITTED, API)))
    )
    by_key = {(row.signal_definition_id or row.name.casefold(), row.partner_unique_id): row for row in stored}
    # Every check before the first change, so that a refusal leaves the call as it was.
    keys_after = set(by_key) | {(catalog.signals[s.name.casefold()][0], s.partner_unique_id) for s in signals}
    if len(keys_after) > MAX_SIGNALS_PER_CALL:
        raise SignalLimitReached(problems=[SignalLimitReached().message])
    applied = [await _apply_signal(session, call, catalog, by_key, signal, source, now) for signal in signals]
    for item in custom_data:
        field_id, name = catalog.custom_fields[item.name.casefold()]
        await session.execute(
            delete(CallCustomData).where(CallCustomData.call_id == call.id, CallCustomData.field_id == field_id)
        )
        session.add(
            CallCustomData(
                **custom_data_row(
                    call_id=call.id,
                    account_id=call.account_id,
                    field=(field_id, name),
                    value=item.value,
                    source=source,
                    now=now,
                )
            )
        )
    session.add(
        Event(
            account_id=call.account_id,
            call_id=call.id,
            type=CALL_SIGNALS_APPLIED,
            payload={
                "call_id": call.id,
                "signals": [{"name": s.name, "value": s.value, "id": s.id} for s in applied],
                "custom_data": [catalog.custom_fields[c.name.casefold()][1] for c in custom_data],
                "source": source,
            },
            created_at=now,
        )
    )
    await session.flush()
    return applied


async def _apply_signal(
    session: AsyncSession,
    call: Call,
    catalog: AccountCatalog,
    by_key: dict[tuple[str, str], CallSignal],
    signal: SignalInput,
    source: str,
    now: datetime,
) -> AppliedSignal:
    definition = catalog.signals[signal.name.casefold()]
    key = (definition[0], signal.partner_unique_id)
    old = by_key.get(key)
    if old is not None and _unchanged(old, signal):
        return _applied(old, corrects_id=None)
    occurred_at = signal.occurred_at or (old.occurred_at if old is not None and old.occurred_at else now)
    row = CallSignal(
        **signal_row(
            call_id=call.id,
            account_id=call.account_id,
            definition=definition,
            signal=SignalInput(signal.name, signal.value, signal.partner_unique_id, occurred_at, signal.revenue),
            source=source,
            now=now,
            created_at=old.created_at if old is not None else None,
        )
    )
    if old is not None:
        # A correction is a new row naming the one it replaces (the Signal API's corrects_transaction_id).
        row.evidence = {"corrects": old.id}
        await session.delete(old)
    by_key[key] = row
    session.add(row)
    return _applied(row, corrects_id=old.id if old is not None else None)


def _unchanged(row: CallSignal, signal: SignalInput) -> bool:
    return (
        row.value == signal.value
        and row.revenue == signal.revenue
        and (signal.occurred_at is None or row.occurred_at == signal.occurred_at)
    )


def _applied(row: CallSignal, *, corrects_id: str | None) -> AppliedSignal:
    return AppliedSignal(
        id=row.id,
        name=row.name,
        partner_unique_id=row.partner_unique_id,
        value=row.value,
        occurred_at=row.occurred_at,
        revenue=row.revenue,
        corrects_id=corrects_id,
    )


async def submit_signals(
    *,
    session: AsyncSession,
    lookups: TenancyLookups,
    principal: Principal,
    search: CallSearch,
    signals: Sequence[SignalInput],
    custom_data: Sequence[CustomDataInput],
) -> Applied:
    """Find the call in the caller's scope and apply everything to it now."""
    call = await find_call(session=session, lookups=lookups, scope=Scope.of(principal), search=search)
    applied = await apply_to_call(session=session, lookups=lookups, call=call, signals=signals, custom_data=custom_data)
    return Applied(call=call, signals=applied)


async def submit_signals_later(
    *,
    session: AsyncSession,
    lookups: TenancyLookups,
    principal: Principal,
    search: CallSearch,
    signals: Sequence[SignalInput],
    custom_data: Sequence[CustomDataInput],
) -> SignalSubmission:
    """Keep the submission (the call may still be in progress), then try it at once against finished calls.

    A submission that finds no call stays pending for ``resolve_pending_submissions``; one that finds its
    call but cannot be applied is kept as rejected with the reason, since its 201 was already promised.
    """
    scope = Scope.of(principal)
    submission = SignalSubmission(
        id=new_id(),
        account_id=scope.account_id,
        organization_id=principal.organization_id,
        search={
            **search.to_dict(),
            "organization_scope": _scope_list(scope),
            "account_external_id": scope.account_external_id,
        },
        signals=[_signal_to_dict(s) for s in signals],
        custom_data=[asdict(c) for c in custom_data],
        status=SubmissionStatus.PENDING,
    )
    session.add(submission)
    await session.flush()
    await _resolve(session, lookups, submission)
    return submission


async def resolve_pending_submissions(
    *, session: AsyncSession, lookups: TenancyLookups, account_id: str, limit: int = 100
) -> int:
    """Apply the account's recent pending submissions whose call now exists; how many were resolved.

    The pipeline calls this when it first takes up a call. Submissions older than ``PENDING_MAX_AGE`` are
    left alone, so an account's stale ones cannot slow every call down.
    """
    pending = await session.scalars(
        select(SignalSubmission)
        .where(
            SignalSubmission.account_id == account_id,
            SignalSubmission.status == SubmissionStatus.PENDING,
            SignalSubmission.created_at >= datetime.now(UTC) - PENDING_MAX_AGE,
        )
        .order_by(SignalSubmission.created_at)
        .limit(limit)
    )
    resolved = 0
    for submission in list(pending):
        await _resolve(session, lookups, submission)
        resolved += submission.status != SubmissionStatus.PENDING
    return resolved


async def _resolve(session: AsyncSession, lookups: TenancyLookups, submission: SignalSubmission) -> None:
    stored = dict(submission.search)
    organization_scope = stored.pop("organization_scope", None)
    account_external_id = stored.pop("account_external_id", None)
    scope = Scope(
        submission.account_id,
        account_external_id,
        frozenset(organization_scope) if organization_scope is not None else None,
    )
    try:
        call = await find_call(session=session, lookups=lookups, scope=scope, search=CallSearch.from_dict(stored))
    except CallNotMatched:
        return
    except AdvertiserNotAccessible as error:
        _finish(submission, SubmissionStatus.REJECTED, None, error.message)
        return
    try:  # apply_to_call refuses before its first change, so a rejection leaves no partial rows
        await apply_to_call(
            session=session,
            lookups=lookups,
            call=call,
            signals=[_signal_from_dict(s) for s in submission.signals],
            custom_data=[CustomDataInput(**c) for c in submission.custom_data],
        )
    except SignalsRejected as error:
        _finish(submission, SubmissionStatus.REJECTED, call.id, error.message)
        return
    _finish(submission, SubmissionStatus.APPLIED, call.id, None)


def _finish(submission: SignalSubmission, status: SubmissionStatus, call_id: str | None, reason: str | None) -> None:
    submission.status = status
    submission.call_id = call_id
    submission.reason = reason
    submission.resolved_at = datetime.now(UTC)


def _scope_list(scope: Scope) -> list[str] | None:
    return sorted(scope.organization_scope) if scope.organization_scope is not None else None


def _signal_to_dict(signal: SignalInput) -> dict[str, Any]:
    stored = asdict(signal)
    stored["occurred_at"] = signal.occurred_at.isoformat() if signal.occurred_at else None
    return stored


def _signal_from_dict(stored: dict[str, Any]) -> SignalInput:
    occurred = stored.get("occurred_at")
    return SignalInput(**{**stored, "occurred_at": datetime.fromisoformat(occurred) if occurred else None})
