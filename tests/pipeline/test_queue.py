"""The job queue's claims on a real database: disjoint under concurrency, and a lapsed lease is reclaimed."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callplane.core.calls import service as calls
from callplane.core.calls.models import Call, CallStatus
from callplane.core.ingestion import service as ingestion
from callplane.core.ingestion.schemas import CallSubmission
from callplane.core.jobs import queue
from callplane.core.jobs.models import Job, JobKind, JobStatus
from callplane.core.tenancy.service import TenancyLookups
from callplane.db.engine import create_engine, create_session_factory
from callplane.testing.factories import Admin
from callplane.testing.server import RunningServer, running_server

KINDS = [JobKind.PROCESS_CALL.value]


def _ingest(server: RunningServer, admin: Admin, count: int) -> tuple[str, set[str]]:
    """Accept `count` calls (the API server of these tests runs no workers, so their jobs stay queued)."""
    network = admin.network()
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for _ in range(count):
            client.post(
                "/api/2022-03-01/calls.json",
                headers={"Authorization": network.token},
                json={
                    "call": {
                        "external_call_unique_id": secrets.token_hex(6),
                        "start_time": 1460404800,
                        "destination_phone_number": 9093900003,
                        "calling_phone_number": 8779257384,
                        "advertiser_campaign_id_from_network": 86,
                        "call_direction": "inbound",
                        "recording_url": "https://example.com/r.wav",
                    }
                },
            ).raise_for_status()
        calls = client.get(
            "/v1/calls", params={"limit": 500}, headers={"Authorization": f"Bearer {network.token}"}
        ).json()["calls"]
    return network.account_id, {c["id"] for c in calls}


def test_concurrent_claims_are_disjoint(server: RunningServer, admin: Admin) -> None:
    account_id, call_ids = _ingest(server, admin, 30)

    async def run() -> list[list[queue.ClaimedJob]]:
        engine = create_engine(server.settings)
        sessions = create_session_factory(engine)

        async def claimer(worker: int) -> list[queue.ClaimedJob]:
            claimed: list[queue.ClaimedJob] = []
            for _ in range(20):
                async with sessions() as session, session.begin():
                    batch = await queue.claim(session, worker_id=f"w{worker}", kinds=KINDS, limit=3, lease_seconds=60)
                claimed += [job for job in batch if job.account_id == account_id]
            return claimed

        try:
            return list(await asyncio.gather(*(claimer(i) for i in range(4))))
        finally:
            await engine.dispose()

    results = asyncio.run(run())
    claimed_calls = [job.call_id for result in results for job in result]
    assert len(claimed_calls) == len(set(claimed_calls))  # nobody got a job twice
    assert set(claimed_calls) == call_ids  # and every job of these calls was claimed


def test_lapsed_lease_is_reclaimed_and_the_old_owner_is_fenced(server: RunningServer, admin: Admin) -> None:
    account_id, call_ids = _ingest(server, admin, 1)

    async def run() -> None:
        engine = create_engine(server.settings)
        sessions = create_session_factory(engine)
        try:
            async with sessions() as session, session.begin():
                first = [
                    j
                    for j in await queue.claim(session, worker_id="dies", kinds=KINDS, limit=100, lease_seconds=0.05)
                    if j.account_id == account_id
                ]
            assert [j.call_id for j in first] == list(call_ids) and first[0].attempts == 1
            await asyncio.sleep(0.1)  # the first worker "dies": its lease lapses
            async with sessions() as session, session.begin():
                second = [
                    j
                    for j in await queue.claim(
                        session, worker_id="takes-over", kinds=KINDS, limit=100, lease_seconds=60
                    )
                    if j.account_id == account_id
                ]
            assert [j.id for j in second] == [first[0].id] and second[0].attempts == 2
            async with sessions() as session, session.begin():
                # The old owner may come back; it no longer owns the job and changes nothing.
                assert not await queue.heartbeat(
                    session, job_id=first[0].id, worker_id="dies", attempt=1, lease_seconds=60
                )
                assert not await queue.finish(session, job_id=first[0].id, worker_id="dies", attempt=1)
                assert await queue.finish(session, job_id=first[0].id, worker_id="takes-over", attempt=2)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_a_lapsed_run_is_fenced_off_when_its_own_worker_claims_the_job_again(
    server: RunningServer, admin: Admin
) -> None:
    """One worker process whose run stalled past its lease claims the job again itself: same worker id, so only
    the claim's attempt number tells the stale run from the new one (else both would record stages, and a failure
    in the stale run could fail a call the new run completes)."""
    account_id, _ = _ingest(server, admin, 1)

    async def claim(sessions: Any, lease_seconds: float) -> queue.ClaimedJob:
        async with sessions() as session, session.begin():
            claimed = await queue.claim(session, worker_id="w", kinds=KINDS, limit=100, lease_seconds=lease_seconds)
        [job] = [j for j in claimed if j.account_id == account_id]
        return job

    async def run() -> None:
        engine = create_engine(server.settings)
        sessions = create_session_factory(engine)
        try:
            stale = await claim(sessions, 0.05)
            await asyncio.sleep(0.1)  # the run stalls; its lease lapses
            fresh = await claim(sessions, 60)
            assert (fresh.id, fresh.attempts) == (stale.id, stale.attempts + 1)
            async with sessions() as session, session.begin():
                assert not await queue.heartbeat(
                    session, job_id=stale.id, worker_id="w", attempt=stale.attempts, lease_seconds=60
                )
                assert not await queue.start(session, job_id=stale.id, worker_id="w", attempt=stale.attempts, stage="x")
                assert not await queue.record_stage(
                    session, job_id=stale.id, worker_id="w", stage="recording", next_stage="x", attempt=stale.attempts
                )
                assert not await queue.fail(
                    session, job_id=stale.id, worker_id="w", stage="recording", attempt=stale.attempts, error="stale"
                )
                assert not await queue.finish(session, job_id=stale.id, worker_id="w", attempt=stale.attempts)
                assert await queue.finish(session, job_id=fresh.id, worker_id="w", attempt=fresh.attempts)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_backoff_grows_and_is_capped() -> None:
    samples = [queue.backoff_seconds(attempt, base=1.0, cap=30.0) for attempt in range(1, 12) for _ in range(50)]
    assert all(0 <= s <= 30.0 for s in samples)
    early = [queue.backoff_seconds(1, base=1.0, cap=30.0) for _ in range(200)]
    late = [queue.backoff_seconds(6, base=1.0, cap=30.0) for _ in range(200)]
    assert max(early) <= 1.0 and sum(late) / len(late) > 5 * sum(early) / len(early)


def test_enqueue_joins_the_callers_transaction(server: RunningServer, admin: Admin) -> None:
    """A job queued for a call exists exactly when the caller's change does: rolled back with it, committed with
    it; never committed by the queue on its own."""
    _, [call_id] = _ingest(server, admin, 1)

    async def jobs_of(sessions: Any) -> list[Job]:
        async with sessions() as session:
            return list(await session.scalars(select(Job).where(Job.call_id == call_id).order_by(Job.created_at)))

    async def run() -> None:
        engine = create_engine(server.settings)
        sessions = create_session_factory(engine)
        try:
            [ingested] = await jobs_of(sessions)
            assert ingested.max_attempts == server.settings.job_max_attempts  # what the ingestion API passed
            async with sessions() as session:
                async with session.begin():
                    call = await session.get(Call, call_id)
                    assert call is not None
                    await calls.queue_for_processing(session, call, "voice/abandoned.wav", max_attempts=2)
                    await session.rollback()
            assert [job.id for job in await jobs_of(sessions)] == [ingested.id]
            async with sessions() as session, session.begin():
                call = await session.get(Call, call_id)
                assert call is not None
                call.status, call.status_reason = CallStatus.FAILED, "earlier failure"
                job_id = await calls.queue_for_processing(session, call, "voice/kept.wav", max_attempts=2)
            first, queued = await jobs_of(sessions)
            assert first.id == ingested.id
            assert (queued.id, queued.kind, queued.status) == (job_id, JobKind.PROCESS_CALL, JobStatus.QUEUED)
            assert (queued.max_attempts, queued.attempts, queued.stage) == (2, 0, None)
            async with sessions() as session:
                call = await session.get(Call, call_id)
                assert call is not None
                assert (call.status, call.status_reason, call.recording_filename) == (
                    CallStatus.QUEUED,
                    None,
                    "voice/kept.wav",
                )
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_ingestion_queues_jobs_with_the_attempts_it_is_given(server: RunningServer, admin: Admin) -> None:
    """What the routes pass from Settings.job_max_attempts reaches the job rows, on both ways in: one call (on
    PostgreSQL the one-statement bundle) and a batch."""
    network = admin.network()

    def submission() -> CallSubmission:
        return CallSubmission(
            external_id=secrets.token_hex(6),
            campaign_external_id=network.campaign_external_id,
            direction="inbound",
            recording_url="https://example.com/r.wav",
        )

    async def run() -> dict[str, int]:
        engine = create_engine(server.settings)
        sessions = create_session_factory(engine)
        lookups = TenancyLookups(ttl_seconds=0)
        try:
            async with sessions() as session:
                principal = await lookups.principal_for_token(session, network.token)
                assert principal is not None
                single = await ingestion.submit_single_call(
                    session=session,
                    lookups=lookups,
                    principal=principal,
                    submission=submission(),
                    wire_problems=[],
                    max_attempts=3,
                )
                batch = await ingestion.accept_batch(
                    session=session,
                    principal=principal,
                    organization_id=network.advertiser_id,
                    submissions=[submission(), submission()],
                    max_attempts=7,
                )
                await session.commit()
            call_ids = [single.call_id, *(accepted.call_id for accepted in batch)]
            async with sessions() as session:
                rows = await session.execute(select(Job.call_id, Job.max_attempts).where(Job.call_id.in_(call_ids)))
                attempts = {call_id: max_attempts for call_id, max_attempts in rows.all()}
            return {"single": attempts[single.call_id]} | {
                f"batch{index}": attempts[accepted.call_id] for index, accepted in enumerate(batch)
            }
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == {"single": 3, "batch0": 7, "batch1": 7}


def test_the_ingestion_routes_queue_with_the_configured_attempts(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """CALLPLANE_JOB_MAX_ATTEMPTS reaches the jobs of calls accepted through the Invoca and Zipteams routes."""
    settings = server.settings.model_copy(
        update={"job_max_attempts": 3, "data_dir": tmp_path_factory.mktemp("attempts")}
    )
    with running_server(settings) as configured:
        operator = Admin(configured.base_url, settings.admin_token or "")
        try:
            network_account, _ = _ingest(configured, operator, 1)
            partner = operator.partner()
            with httpx.Client(base_url=configured.base_url, timeout=30) as client:
                item = {
                    "call": {
                        "id": f"call-{secrets.token_hex(5)}",
                        "recording_url": "https://example.com/recordings/call123.mp3",
                        "start_time": "2023-01-01T10:00:00Z",
                        "end_time": "2023-01-01T10:30:00Z",
                        "contact_number": "+1234567890",
                    }
                }
                batch = client.post("/partner/ingest/batch-call", headers=partner.headers, json={"data": [item]})
                assert batch.status_code == 200, batch.text
        finally:
            operator.client.close()

    async def attempts() -> list[int]:
        engine = create_engine(settings)
        try:
            async with create_session_factory(engine)() as session:
                accounts = [network_account, partner.account_id]
                return list(await session.scalars(select(Job.max_attempts).where(Job.account_id.in_(accounts))))
        finally:
            await engine.dispose()

    assert asyncio.run(attempts()) == [3, 3]


def test_job_row_sets_every_column_of_a_queued_job_and_refuses_no_attempts() -> None:
    """Bulk inserts (ingestion) build statements from the row's keys: the same keys every time, all but the
    columns a claim or a failure fills in."""
    row = queue.job_row(kind=JobKind.PROCESS_CALL, account_id="a", call_id="c", max_attempts=3)
    assert set(queue.JOBS.c.keys()) - set(row) == {"locked_by", "lease_expires_at", "last_error"}
    assert (row["status"], row["attempts"], row["max_attempts"], row["run_after"]) == (
        JobStatus.QUEUED,
        0,
        3,
        row["created_at"],
    )
    assert queue.job_row(kind="k", account_id="a", call_id=None)["max_attempts"] == queue.DEFAULT_MAX_ATTEMPTS
    with pytest.raises(ValueError, match="at least 1"):
        queue.job_row(kind="k", account_id="a", call_id=None, max_attempts=0)
