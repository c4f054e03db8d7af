"""The job queue's SQL: enqueue, claim, lease, heartbeat, finish, retry, fail — all of it here, on purpose.

Work is queued only through `enqueue` (or `job_row` for bulk Core inserts): both join the caller's transaction
and never commit, so a job exists exactly when the change that asked for it does (docs/decisions.md "One job
queue").

Claims are one UPDATE over a sub-select: on PostgreSQL the sub-select takes `FOR UPDATE SKIP LOCKED`, so any
number of workers on any number of machines claim disjoint jobs without waiting on each other; on SQLite the
transaction is `BEGIN IMMEDIATE`, which serializes claimers. A claimed job carries a lease; a worker that dies
stops renewing it, and once it lapses the job is claimable again (and its attempt counted).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.jobs.models import Job, JobStatus
from callplane.db.base import new_id
from callplane.observability.metrics import JOB_QUEUE_DELAY, JOBS_CLAIMED, JOBS_ENQUEUED
from callplane.observability.tracing import current_traceparent

JOBS = cast(Table, Job.__table__)
# Attempts of a job whose enqueuer names none; processes pass Settings.job_max_attempts (same default) instead.
DEFAULT_MAX_ATTEMPTS = 5


def job_row(
    *,
    kind: str,
    account_id: str,
    call_id: str | None,
    max_attempts: int | None = None,
    run_after: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A queued job as a row (every column but those a claim fills in), for Core bulk inserts on a hot path.

    The keys are the same for every job, so statements built from them (and their compiled forms) are reused.
    """
    now = now or datetime.now(UTC)
    if max_attempts is not None and max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    return {
        "id": new_id(),
        "account_id": account_id,
        "call_id": call_id,
        "kind": kind,
        "stage": None,
        "status": JobStatus.QUEUED,
        "attempts": 0,
        "max_attempts": DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts,
        "history": [],
        "run_after": run_after or now,
        "created_at": now,
        "updated_at": now,
        "trace_context": current_traceparent(),  # the worker continues this trace (observability/tracing.py)
    }


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    account_id: str,
    call_id: str | None,
    max_attempts: int | None = None,
    run_after: datetime | None = None,
) -> str:
    """Queue one job in the caller's transaction (added to the session, never flushed or committed here); its id.

    Added through the unit of work, so it is inserted after a call added to the same session (its foreign key).
    ``max_attempts`` None means DEFAULT_MAX_ATTEMPTS; ``run_after`` None means at once. A coroutine although it
    awaits nothing yet: waking idle workers (a NOTIFY) can then be added without changing any caller.
    """
    row = job_row(kind=kind, account_id=account_id, call_id=call_id, max_attempts=max_attempts, run_after=run_after)
    session.add(Job(**row))
    JOBS_ENQUEUED.labels(kind).inc()  # the bulk inserts of ingestion count theirs once the rows are in
    job_id: str = row["id"]
    return job_id


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    account_id: str
    call_id: str | None
    kind: str
    stage: str | None
    attempts: int
    max_attempts: int
    trace_context: str | None = None


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: spreads retries of many jobs that failed together."""
    return random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))  # noqa: S311 - jitter, not security


async def claim(
    session: AsyncSession,
    *,
    worker_id: str,
    kinds: list[str],
    limit: int,
    lease_seconds: float,
    stages: list[str] | None = None,
    first_stage: str = "",
) -> list[ClaimedJob]:
    """Claim up to ``limit`` due jobs; with ``stages``, only jobs whose next stage is one of them (a job that
    has not started yet is at ``first_stage``)."""
    now = datetime.now(UTC)
    conditions = [
        JOBS.c.kind.in_(kinds),
        or_(
            and_(JOBS.c.status == JobStatus.QUEUED, JOBS.c.run_after <= now),
            and_(JOBS.c.status == JobStatus.RUNNING, JOBS.c.lease_expires_at < now),
        ),
    ]
    if stages is not None:
        conditions.append(func.coalesce(JOBS.c.stage, first_stage).in_(stages))
    due = select(JOBS.c.id).where(*conditions).order_by(JOBS.c.run_after).limit(limit).with_for_update(skip_locked=True)
    result = await session.execute(
        update(JOBS)
        .where(JOBS.c.id.in_(due.scalar_subquery()))
        .values(
            status=JobStatus.RUNNING,
            locked_by=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=JOBS.c.attempts + 1,
            updated_at=now,
        )
        .returning(
            JOBS.c.id,
            JOBS.c.account_id,
            JOBS.c.call_id,
            JOBS.c.kind,
            JOBS.c.stage,
            JOBS.c.attempts,
            JOBS.c.max_attempts,
            JOBS.c.trace_context,
            JOBS.c.run_after,
        )
        .execution_options(synchronize_session=False)
    )
    claimed = []
    for *fields, run_after in result.all():
        job = ClaimedJob(*fields)
        # A claim is where a job stops waiting: how late past its due time (backoff included) it was picked up.
        stage = job.stage or first_stage
        JOBS_CLAIMED.labels(stage).inc()
        JOB_QUEUE_DELAY.labels(stage).observe(max(0.0, (now - _aware(run_after)).total_seconds()))
        claimed.append(job)
    return claimed


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _owned(job_id: str, worker_id: str, attempt: int) -> Any:
    """Still this run's job: the claim's attempt number is its fencing token, so a run whose lease lapsed is
    fenced off even when the same worker (same ``worker_id``) claimed the job again."""
    return and_(
        JOBS.c.id == job_id,
        JOBS.c.locked_by == worker_id,
        JOBS.c.attempts == attempt,
        JOBS.c.status == JobStatus.RUNNING,
    )


async def heartbeat(session: AsyncSession, *, job_id: str, worker_id: str, attempt: int, lease_seconds: float) -> bool:
    """Extend the lease; False means the job is no longer ours (it lapsed and someone else took it)."""
    result = await session.execute(
        update(JOBS)
        .where(_owned(job_id, worker_id, attempt))
        .values(lease_expires_at=datetime.now(UTC) + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def start(session: AsyncSession, *, job_id: str, worker_id: str, attempt: int, stage: str) -> bool:
    """Move a job that has not started yet to its first stage; True for exactly one run of the job.

    What a job does once at its start (announcing the call) goes in the same transaction: a run killed before
    that commit leaves the stage unset, so the next run does it; one killed after finds it set and skips it.
    """
    result = await session.execute(
        update(JOBS)
        .where(_owned(job_id, worker_id, attempt), JOBS.c.stage.is_(None))
        .values(stage=stage, updated_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _history(session: AsyncSession, job_id: str) -> list[Any]:
    history = await session.scalar(select(JOBS.c.history).where(JOBS.c.id == job_id))
    return list(history or [])


async def record_stage(
    session: AsyncSession, *, job_id: str, worker_id: str, stage: str, next_stage: str | None, attempt: int
) -> bool:
    """A stage finished: note it and move the job on (its lease stays ours)."""
    history = await _history(session, job_id) + [
        {"stage": stage, "attempt": attempt, "outcome": "succeeded", "at": datetime.now(UTC).isoformat()}
    ]
    result = await session.execute(
        update(JOBS)
        .where(_owned(job_id, worker_id, attempt))
        .values(stage=next_stage, history=history, updated_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def hand_off(session: AsyncSession, *, job_id: str, worker_id: str, attempt: int) -> bool:
    """Release a job whose next stage this worker does not run, for a worker that does; at once, with fresh
    attempts (the stages so far succeeded)."""
    now = datetime.now(UTC)
    result = await session.execute(
        update(JOBS)
        .where(_owned(job_id, worker_id, attempt))
        .values(
            status=JobStatus.QUEUED, run_after=now, attempts=0, lease_expires_at=None, locked_by=None, updated_at=now
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def finish(session: AsyncSession, *, job_id: str, worker_id: str, attempt: int) -> bool:
    result = await session.execute(
        update(JOBS)
        .where(_owned(job_id, worker_id, attempt))
        .values(status=JobStatus.SUCCEEDED, lease_expires_at=None, locked_by=None, updated_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def retry_later(
    session: AsyncSession, *, job_id: str, worker_id: str, stage: str, attempt: int, error: str, delay_seconds: float
) -> bool:
    now = datetime.now(UTC)
    history = await _history(session, job_id) + [
        {"stage": stage, "attempt": attempt, "outcome": "retrying", "error": error, "at": now.isoformat()}
    ]
    result = await session.execute(
        update(JOBS)
        .where(_owned(job_id, worker_id, attempt))
        .values(
            status=JobStatus.QUEUED,
            run_after=now + timedelta(seconds=delay_seconds),
            lease_expires_at=None,
            locked_by=None,
            last_error=error,
            history=history,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def fail(session: AsyncSession, *, job_id: str, worker_id: str, stage: str, attempt: int, error: str) -> bool:
    now = datetime.now(UTC)
    history = await _history(session, job_id) + [
        {"stage": stage, "attempt": attempt, "outcome": "failed", "error": error, "at": now.isoformat()}
    ]
    result = await session.execute(
        update(JOBS)
        .where(_owned(job_id, worker_id, attempt))
        .values(
            status=JobStatus.FAILED,
            lease_expires_at=None,
            locked_by=None,
            last_error=error,
            history=history,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def requeue_failed(session: AsyncSession, *, call_id: str) -> int:
    """Put a call's failed jobs back in the queue from the stage they failed at, with fresh attempts."""
    now = datetime.now(UTC)
    result = await session.execute(
        update(JOBS)
        .where(JOBS.c.call_id == call_id, JOBS.c.status == JobStatus.FAILED)
        .values(status=JobStatus.QUEUED, attempts=0, run_after=now, last_error=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


NOT_STARTED = "not_started"  # the stage of a job no run has begun (its stage column is still empty)


async def counts_by_state(session: AsyncSession) -> list[tuple[str, str, str, int]]:
    """(kind, stage, status, jobs) for queued, running and failed jobs: the queue as the database holds it, every
    process's work at once (the /metrics backlog). Finished jobs are left out: they only grow."""
    stage = func.coalesce(JOBS.c.stage, NOT_STARTED)
    result = await session.execute(
        select(JOBS.c.kind, stage, JOBS.c.status, func.count())
        .where(JOBS.c.status.in_([JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED]))
        .group_by(JOBS.c.kind, stage, JOBS.c.status)
    )
    return [(kind, stage_name, status, int(count)) for kind, stage_name, status, count in result.all()]
