"""The delivery worker against a real loopback receiver, on SQLite and PostgreSQL.

Counts, not clocks: backoff and timeouts are shrunk to fractions of a second and every assertion is about
what the receiver got and what the outbox row says.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.webhooks import service
from callplane.core.webhooks.models import Delivery, DeliveryStatus, WebhookEndpoint
from callplane.core.webhooks.signing import generate_secret, verify
from callplane.workers.delivery import DeliveryConfig, DeliveryWorker, Outcome, backoff_s
from tests.webhooks.conftest import Db, Receiver, new_account

LOOPBACK = TargetPolicy.from_config(["127.0.0.1/32"])
FAST = DeliveryConfig(
    batch_size=10, lease_s=5.0, timeout_s=2.0, backoff_base_s=0.01, backoff_cap_s=0.05, poll_interval_s=0.02
)

Sessions = async_sessionmaker[AsyncSession]


async def _webhook(
    sessions: Sessions, box: SecretBox, url: str, event_type: str = "call.completed"
) -> tuple[str, str, str]:
    """An endpoint at ``url`` with one event enqueued: (account id, endpoint secret, delivery id)."""
    account_id = await new_account(sessions)
    async with sessions() as session, session.begin():
        _, secret = await service.create_endpoint(session=session, secret_box=box, account_id=account_id, url=url)
        [delivery] = await service.enqueue_event(
            session=session, account_id=account_id, event_type=event_type, payload={"call_id": "c1"}, call_id="c1"
        )
    return account_id, secret, delivery.id


async def _callbacks(sessions: Sessions, url: str, count: int) -> list[str]:
    account_id = await new_account(sessions)
    async with sessions() as session, session.begin():
        return [
            (
                await service.enqueue_callback(
                    session=session,
                    account_id=account_id,
                    call_id=f"call{i}",
                    url=url,
                    payload={"call_id": f"call{i}", "status": "completed"},
                    event_type="call.completed",
                )
            ).id
            for i in range(count)
        ]


async def _row(sessions: Sessions, delivery_id: str) -> Delivery:
    async with sessions() as session:
        row = await session.get(Delivery, delivery_id)
        assert row is not None
        return row


async def _until(check: Callable[[], Awaitable[bool]], step: Callable[[], Awaitable[Any]], rounds: int = 400) -> None:
    """Step the worker until ``check`` holds; bounded by rounds, not by a clock."""
    for _ in range(rounds):
        if await check():
            return
        await step()
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def test_delivered_first_time_with_a_valid_signature(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        url = receiver.route()
        async with db.sessions() as sessions:
            _, secret, delivery_id = await _webhook(sessions, secret_box, url)
            receiver.set_secret(url, secret)
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST) as w:
                assert await w.run_once() >= 1
            row = await _row(sessions, delivery_id)
        [receipt] = receiver.receipts(url)
        assert receipt.verified is True and receipt.status == 200
        assert receipt.headers["webhook-id"] == delivery_id
        assert receipt.headers["content-type"] == "application/json"
        sent = json.loads(receipt.body)
        assert sent["type"] == "call.completed" and sent["data"] == {"call_id": "c1"}
        assert row.status == DeliveryStatus.DELIVERED
        assert row.attempts == 1 and row.last_status_code == 200 and row.last_error is None
        assert row.delivered_at is not None and row.lease_expires_at is None

    asyncio.run(body())


def test_retried_with_backoff_then_delivered(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        url = receiver.route(statuses=[500, 503])
        async with db.sessions() as sessions:
            _, secret, delivery_id = await _webhook(sessions, secret_box, url)
            receiver.set_secret(url, secret)
            config = DeliveryConfig(batch_size=10, lease_s=5, timeout_s=2, backoff_base_s=30, backoff_cap_s=60)
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=config) as w:
                await w.run_once()
                row = await _row(sessions, delivery_id)
                assert row.status == DeliveryStatus.PENDING
                assert row.attempts == 1 and row.last_status_code == 500 and "answered 500" in (row.last_error or "")
                assert row.lease_expires_at is None
                assert row.next_attempt_at >= row.created_at
                # The backoff keeps it out of the next claim unless it drew a (near-)zero delay.
                if (row.next_attempt_at - row.created_at).total_seconds() > 1:
                    assert await w.run_once() == 0
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST) as w:
                await _force_due(sessions, delivery_id)
                await w.run_once()
                await _force_due(sessions, delivery_id)
                await w.run_once()
            row = await _row(sessions, delivery_id)
        receipts = receiver.receipts(url)
        assert [r.status for r in receipts] == [500, 503, 200]
        assert all(r.verified for r in receipts)
        assert {r.headers["webhook-id"] for r in receipts} == {delivery_id}  # constant across retries
        assert row.status == DeliveryStatus.DELIVERED and row.attempts == 3 and row.last_status_code == 200

    asyncio.run(body())


async def _force_due(sessions: Sessions, delivery_id: str) -> None:
    """Skip the backoff wait of a pending delivery (the schedule itself is checked in test_backoff_bounds)."""
    async with sessions() as session, session.begin():
        row = await session.get(Delivery, delivery_id)
        assert row is not None
        row.next_attempt_at = row.created_at


def test_backoff_bounds() -> None:
    """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]; its mean grows, then flattens at the cap."""
    for attempt in range(1, 12):
        ceiling = min(600.0, 1.0 * 2 ** (attempt - 1))
        draws = [backoff_s(attempt, base_s=1.0, cap_s=600.0) for _ in range(400)]
        assert all(0 <= d <= ceiling for d in draws)
        assert 0.35 < (sum(draws) / len(draws)) / ceiling < 0.65


def test_gives_up_after_max_attempts_and_keeps_the_last_error(
    db: Db, secret_box: SecretBox, receiver: Receiver
) -> None:
    async def body() -> None:
        callback_secret = generate_secret()
        url = receiver.route(secret=callback_secret, statuses=[503] * 10)
        async with db.sessions() as sessions:
            [delivery_id] = await _callbacks(sessions, url, 1)
            async with DeliveryWorker(
                sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST, callback_secret=callback_secret
            ) as w:

                async def settled() -> bool:
                    return (await _row(sessions, delivery_id)).status != DeliveryStatus.PENDING

                await _until(settled, w.run_once)
            row = await _row(sessions, delivery_id)
        receipts = receiver.receipts(url)
        assert len(receipts) == 4  # the first try and 3 retries
        assert all(r.verified for r in receipts)
        assert json.loads(receipts[0].body) == {"call_id": "call0", "status": "completed"}
        assert row.status == DeliveryStatus.FAILED and row.attempts == 4
        assert row.last_status_code == 503 and "answered 503" in (row.last_error or "")

    asyncio.run(body())


def test_callbacks_without_an_instance_secret_go_unsigned(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        url = receiver.route()
        async with db.sessions() as sessions:
            [delivery_id] = await _callbacks(sessions, url, 1)
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST) as w:
                await w.run_once()
            assert (await _row(sessions, delivery_id)).status == DeliveryStatus.DELIVERED
        [receipt] = receiver.receipts(url)
        assert receipt.headers["webhook-id"] == delivery_id and "webhook-signature" not in receipt.headers

    asyncio.run(body())


def test_private_targets_are_refused_permanently_unless_allow_listed(
    db: Db, secret_box: SecretBox, receiver: Receiver
) -> None:
    async def body() -> None:
        url = receiver.route()
        async with db.sessions() as sessions:
            _, _, loopback_id = await _webhook(sessions, secret_box, url)
            _, _, private_id = await _webhook(sessions, secret_box, "http://10.20.30.40:8080/hook")
            async with DeliveryWorker(
                sessions=sessions, secret_box=secret_box, policy=TargetPolicy(), config=FAST
            ) as w:
                await w.run_once()
            loopback = await _row(sessions, loopback_id)
            private = await _row(sessions, private_id)
        assert receiver.receipts(url) == []
        for row, reason in ((loopback, "loopback"), (private, "private")):
            assert row.status == DeliveryStatus.FAILED
            assert row.attempts == 0  # nothing went on the wire
            assert f"a {reason} address" in (row.last_error or "")
            assert "allow-lists" in (row.last_error or "")

    asyncio.run(body())


def test_410_gone_disables_the_endpoint(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        url = receiver.route(statuses=[410])
        async with db.sessions() as sessions:
            account_id, secret, delivery_id = await _webhook(sessions, secret_box, url)
            receiver.set_secret(url, secret)
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST) as w:
                await w.run_once()
            row = await _row(sessions, delivery_id)
            async with sessions() as session, session.begin():
                endpoint = await session.get(WebhookEndpoint, row.endpoint_id)
                assert endpoint is not None and endpoint.enabled is False
                again = await service.enqueue_event(
                    session=session, account_id=account_id, event_type="call.completed", payload={}
                )
        assert row.status == DeliveryStatus.FAILED and row.attempts == 1 and row.last_status_code == 410
        assert "disabled" in (row.last_error or "")
        assert again == []
        assert len(receiver.receipts(url)) == 1

    asyncio.run(body())


def test_deleted_endpoint_fails_its_pending_deliveries(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        url = receiver.route()
        async with db.sessions() as sessions:
            account_id, _, delivery_id = await _webhook(sessions, secret_box, url)
            async with sessions() as session, session.begin():
                endpoint_id = (await _row(sessions, delivery_id)).endpoint_id
                assert endpoint_id is not None
                await service.delete_endpoint(session=session, account_id=account_id, endpoint_id=endpoint_id)
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST) as w:
                await w.run_once()
            row = await _row(sessions, delivery_id)
        assert row.status == DeliveryStatus.FAILED and "deleted" in (row.last_error or "")
        assert receiver.receipts(url) == []

    asyncio.run(body())


def test_slow_receiver_times_out_and_is_retried(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        url = receiver.route(delay_s=1.5)
        config = DeliveryConfig(batch_size=10, lease_s=5, timeout_s=0.2, backoff_base_s=30, backoff_cap_s=60)
        async with db.sessions() as sessions:
            [delivery_id] = await _callbacks(sessions, url, 1)
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=config) as w:
                await w.run_once()
            row = await _row(sessions, delivery_id)
        assert row.status == DeliveryStatus.PENDING and row.attempts == 1
        assert row.last_status_code is None and "did not answer within 0.2 s" in (row.last_error or "")

    asyncio.run(body())


def test_redirects_are_failures_not_followed(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        elsewhere = receiver.route()
        url = receiver.route(statuses=[302], headers={"location": elsewhere})
        async with db.sessions() as sessions:
            [delivery_id] = await _callbacks(sessions, url, 1)
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST) as w:
                await w.run_once()
            row = await _row(sessions, delivery_id)
        assert receiver.receipts(elsewhere) == []
        assert row.status == DeliveryStatus.PENDING and row.last_status_code == 302
        assert "redirects are not followed" in (row.last_error or "")

    asyncio.run(body())


def test_two_workers_never_deliver_one_delivery_twice(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        url = receiver.route()
        config = DeliveryConfig(batch_size=4, lease_s=30, timeout_s=5, backoff_base_s=0.01, backoff_cap_s=0.05)
        # Two engines: two connections, as two worker processes would have.
        async with db.sessions() as first, db.sessions() as second:
            ids = await _callbacks(first, url, 60)
            workers = [
                DeliveryWorker(sessions=s, secret_box=secret_box, policy=LOOPBACK, config=config)
                for s in (first, second)
            ]

            async def drain(worker: DeliveryWorker) -> int:
                total = 0
                while processed := await worker.run_once():
                    total += processed
                await worker.aclose()
                return total

            counts = await asyncio.gather(*(drain(w) for w in workers))
            rows = [await _row(first, i) for i in ids]
        receipts = receiver.receipts(url)
        assert sum(counts) == 60
        assert all(counts), f"one worker did all the work: {counts}"
        assert len(receipts) == 60
        assert sorted(r.headers["webhook-id"] for r in receipts) == sorted(ids)
        assert all(r.status == DeliveryStatus.DELIVERED and r.attempts == 1 for r in rows)

    asyncio.run(body())


def test_a_crash_after_claiming_is_redelivered_once_the_lease_lapses(
    db: Db, secret_box: SecretBox, receiver: Receiver
) -> None:
    async def body() -> None:
        url = receiver.route()
        config = DeliveryConfig(batch_size=10, lease_s=0.5, timeout_s=0.2, backoff_base_s=0.01, backoff_cap_s=0.05)
        async with db.sessions() as sessions:
            [delivery_id] = await _callbacks(sessions, url, 1)
            crashed = DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=config)
            [claimed] = await crashed.claim()  # ...and then the process dies before sending
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=config) as w:
                assert await w.run_once() == 0  # the lease still holds
                await asyncio.sleep(0.6)
                assert await w.run_once() == 1
            # The crashed worker's late result (had it been a stall, not a crash) is fenced off.
            assert await crashed.record(claimed, Outcome(200, None)) is False
            await crashed.aclose()
            row = await _row(sessions, delivery_id)
        assert len(receiver.receipts(url)) == 1
        assert row.status == DeliveryStatus.DELIVERED and row.attempts == 1

    asyncio.run(body())


def test_run_forever_delivers_until_stopped(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        url = receiver.route()
        async with db.sessions() as sessions:
            ids = await _callbacks(sessions, url, 3)
            stop = asyncio.Event()
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST) as w:
                task = asyncio.create_task(w.run_forever(stop))

                async def all_delivered() -> bool:
                    rows = [await _row(sessions, i) for i in ids]
                    return all(r.status == DeliveryStatus.DELIVERED for r in rows)

                await _until(all_delivered, lambda: asyncio.sleep(0.02))
                stop.set()
                await task
        assert len(receiver.receipts(url)) == 3

    asyncio.run(body())


def test_a_commit_that_wrote_deliveries_wakes_the_worker(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    """The worker polls once an hour here: deliveries committed while it waits arrive only because the commit
    woke it (outbox.deliveries_written); a rolled-back transaction's delivery is never sent."""

    async def body() -> None:
        url = receiver.route()
        hourly = DeliveryConfig(batch_size=10, lease_s=5.0, timeout_s=2.0, poll_interval_s=3600.0)
        async with db.sessions() as sessions:
            stop = asyncio.Event()
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=hourly) as w:
                task = asyncio.create_task(w.run_forever(stop))
                await asyncio.sleep(0.2)  # let its first (empty) claim pass: it now waits for the hour or a wake-up
                account_id = await new_account(sessions)
                with pytest.raises(RuntimeError):
                    async with sessions() as session, session.begin():
                        await service.enqueue_callback(
                            session=session, account_id=account_id, call_id="gone", url=url,
                            payload={"call_id": "gone"}, event_type="call.completed",
                        )  # fmt: skip
                        raise RuntimeError("rolled back")
                ids = await _callbacks(sessions, url, 3)

                async def all_delivered() -> bool:
                    rows = [await _row(sessions, i) for i in ids]
                    return all(r.status == DeliveryStatus.DELIVERED and r.attempts == 1 for r in rows)

                await _until(all_delivered, lambda: asyncio.sleep(0.02))
                stop.set()
                await task
        receipts = receiver.receipts(url)
        assert sorted(r.headers["webhook-id"] for r in receipts) == sorted(ids)

    asyncio.run(body())


def test_signature_the_receiver_checks_is_over_the_exact_body(
    db: Db, secret_box: SecretBox, receiver: Receiver
) -> None:
    """Non-ASCII payloads: the signed bytes are the sent bytes, so a receiver verifying the raw body agrees."""

    async def body() -> None:
        url = receiver.route()
        async with db.sessions() as sessions:
            account_id = await new_account(sessions)
            async with sessions() as session, session.begin():
                _, secret = await service.create_endpoint(
                    session=session, secret_box=secret_box, account_id=account_id, url=url
                )
                await service.enqueue_event(
                    session=session, account_id=account_id, event_type="call.completed", payload={"name": "Zoë 📞"}
                )
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST) as w:
                await w.run_once()
        [receipt] = receiver.receipts(url)
        verify(secret, receipt.headers, receipt.body)
        assert json.loads(receipt.body)["data"] == {"name": "Zoë 📞"}

    asyncio.run(body())


def test_credentials_and_query_strings_never_reach_last_error_or_logs(
    db: Db, secret_box: SecretBox, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        url = receiver.route(statuses=[500])
        port = url.split(":")[2].split("/")[0]
        path = url.split(port, 1)[1]
        secret_url = f"http://alice:pa55word@127.0.0.1:{port}{path}?token=t0k3n"
        async with db.sessions() as sessions:
            _, secret, delivery_id = await _webhook(sessions, secret_box, secret_url)
            with caplog.at_level(logging.DEBUG, logger="callplane.core.webhooks"):
                async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST) as w:
                    await w.run_once()
            row = await _row(sessions, delivery_id)
        assert [r.status for r in receiver.receipts(url)] == [500]
        assert row.last_status_code == 500
        logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
        assert "answered 500" in logged
        for leak in ("pa55word", "t0k3n", "alice", secret, secret.removeprefix("whsec_")):
            assert leak not in (row.last_error or "")
            assert leak not in logged

    asyncio.run(body())


def test_a_huge_response_body_is_not_read_to_the_end(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        url = receiver.route(body_bytes=50 * 1024 * 1024)
        async with db.sessions() as sessions:
            [delivery_id] = await _callbacks(sessions, url, 1)
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=FAST) as w:
                await w.run_once()
            row = await _row(sessions, delivery_id)
        assert row.status == DeliveryStatus.DELIVERED and row.last_status_code == 200

    asyncio.run(body())


def test_retry_after_is_honoured(db: Db, secret_box: SecretBox, receiver: Receiver) -> None:
    async def body() -> None:
        url = receiver.route(statuses=[429], headers={"retry-after": "120"})
        config = DeliveryConfig(batch_size=10, lease_s=5, timeout_s=2, backoff_base_s=0.01, backoff_cap_s=3600)
        async with db.sessions() as sessions:
            [delivery_id] = await _callbacks(sessions, url, 1)
            before = datetime.now(UTC)
            async with DeliveryWorker(sessions=sessions, secret_box=secret_box, policy=LOOPBACK, config=config) as w:
                await w.run_once()
            row = await _row(sessions, delivery_id)
        assert row.status == DeliveryStatus.PENDING and row.last_status_code == 429
        assert row.next_attempt_at - before >= timedelta(seconds=120)

    asyncio.run(body())
