"""A worker that claims process_call jobs and runs their stages, with a lease it keeps renewing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import UTC, datetime

from callplane.core.calls.models import Call
from callplane.core.jobs import queue
from callplane.core.jobs.models import JobKind
from callplane.errors import CallplaneError
from callplane.observability.metrics import JOB_FAILURES, timed_stage
from callplane.observability.tracing import continued
from callplane.workers import processing
from callplane.workers.processing import STAGES, ProcessingEnvironment

log = logging.getLogger("callplane.worker")


class PipelineWorker:
    def __init__(
        self,
        env: ProcessingEnvironment,
        *,
        concurrency: int = 2,
        poll_seconds: float = 0.5,
        lease_seconds: float = 60.0,
        backoff_base_seconds: float = 2.0,
        backoff_cap_seconds: float = 600.0,
        worker_id: str | None = None,
        stages: frozenset[str] | None = None,
    ) -> None:
        self.env = env
        # The stages this worker runs (None: all); a job moving on to another stage is handed off.
        self.stages = stages
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_cap_seconds = backoff_cap_seconds
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def run_once(self) -> int:
        """Claim what is due (up to the concurrency), run it to the end; returns how many jobs ran.

        One batch at a time, for tests and one-shot runs; ``run_forever`` claims as slots free instead.
        """
        jobs = await self._claim(self.concurrency)
        await asyncio.gather(*(self._run_job(job) for job in jobs))
        return len(jobs)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Keep up to ``concurrency`` jobs running: a slot that frees is refilled at once, so a short call never
        waits behind a long transcription claimed with it. On stop, no more claims; jobs in flight finish."""
        running: set[asyncio.Task[None]] = set()
        stopped = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                free = self.concurrency - len(running)
                if free > 0:
                    try:
                        jobs = await self._claim(free)
                    except Exception:
                        log.exception("worker loop failed; backing off")
                        jobs = []
                    for job in jobs:
                        task = asyncio.create_task(self._run_job(job))
                        running.add(task)
                        task.add_done_callback(self._job_done)
                        task.add_done_callback(running.discard)
                    free -= len(jobs)
                # Full: wait for a slot. Otherwise nothing more was due: poll again later (or when a slot frees).
                await asyncio.wait(
                    {stopped, *running},
                    timeout=self.poll_seconds if free > 0 else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
        except asyncio.CancelledError:
            for task in running:
                task.cancel()
            raise
        finally:
            stopped.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _claim(self, limit: int) -> list[queue.ClaimedJob]:
        async with self.env.sessions() as session, session.begin():
            return await queue.claim(
                session,
                worker_id=self.worker_id,
                kinds=[JobKind.PROCESS_CALL],
                limit=limit,
                lease_seconds=self.lease_seconds,
                stages=sorted(self.stages) if self.stages is not None else None,
                first_stage=STAGES[0][0],
            )

    @staticmethod
    def _job_done(task: asyncio.Task[None]) -> None:
        # _run_job records its own failures; this only sees errors while recording them (e.g. the database down).
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("job runner failed", exc_info=error)

    def close(self) -> None:
        """Stop the transcription threads (a decode in progress finishes first)."""
        if self.env.transcription is not None:
            self.env.transcription.close()

    async def _keep_lease(self, job: queue.ClaimedJob) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            async with self.env.sessions() as session, session.begin():
                if not await queue.heartbeat(
                    session,
                    job_id=job.id,
                    worker_id=self.worker_id,
                    attempt=job.attempts,
                    lease_seconds=self.lease_seconds,
                ):
                    return

    async def _run_job(self, job: queue.ClaimedJob) -> None:
        # The run continues the trace of the request that queued the job (a no-op unless tracing is on).
        with continued(f"job {job.kind}", job.trace_context) as span:
            span.set_attribute("callplane.attempt", job.attempts)
            await self._run_stages(job)

    async def _run_stages(self, job: queue.ClaimedJob) -> None:
        assert job.call_id is not None
        heartbeat = asyncio.create_task(self._keep_lease(job))
        stage: str | None = job.stage or STAGES[0][0]
        try:
            call = await processing.mark_processing(self.env, job.call_id, job=job, worker_id=self.worker_id)
            stages = dict(STAGES)
            while stage is not None:
                with timed_stage(stage):
                    await stages[stage](self.env, call)
                following = processing.next_stage(stage)
                async with self.env.sessions() as session, session.begin():
                    if not await queue.record_stage(
                        session,
                        job_id=job.id,
                        worker_id=self.worker_id,
                        stage=stage,
                        next_stage=following,
                        attempt=job.attempts,
                    ):
                        # The lease lapsed and the job was claimed again (perhaps by this worker): that run goes on.
                        log.warning(
                            "job lease lost; leaving the job to its new run",
                            extra={"fields": {"job_id": job.id, "stage": stage, "attempt": job.attempts}},
                        )
                        return
                    if following is None:
                        await queue.finish(session, job_id=job.id, worker_id=self.worker_id, attempt=job.attempts)
                    elif self.stages is not None and following not in self.stages:
                        await queue.hand_off(session, job_id=job.id, worker_id=self.worker_id, attempt=job.attempts)
                        following = None
                stage = following
        except CallplaneError as error:
            await self._failed(job, stage or "", error.message, permanent=error.permanent)
        except Exception as error:
            log.exception("stage crashed", extra={"fields": {"job_id": job.id, "stage": stage}})
            await self._failed(
                job, stage or "", f"internal error in stage {stage}: {type(error).__name__}", permanent=False
            )
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _failed(self, job: queue.ClaimedJob, stage: str, reason: str, *, permanent: bool) -> None:
        give_up = permanent or job.attempts >= job.max_attempts
        JOB_FAILURES.labels(stage, "failed" if give_up else "retry").inc()
        async with self.env.sessions() as session, session.begin():
            if not give_up:
                delay = queue.backoff_seconds(
                    job.attempts, base=self.backoff_base_seconds, cap=self.backoff_cap_seconds
                )
                await queue.retry_later(
                    session,
                    job_id=job.id,
                    worker_id=self.worker_id,
                    stage=stage,
                    attempt=job.attempts,
                    error=reason,
                    delay_seconds=delay,
                )
                log.warning(
                    "stage failed; will retry",
                    extra={
                        "fields": {
                            "job_id": job.id,
                            "stage": stage,
                            "attempt": job.attempts,
                            "retry_in_s": round(delay, 2),
                            "reason": reason,
                        }
                    },
                )
                return
            owned = await queue.fail(
                session, job_id=job.id, worker_id=self.worker_id, stage=stage, attempt=job.attempts, error=reason
            )
            if owned and job.call_id is not None:
                call = await session.get(Call, job.call_id)
                if call is not None:
                    await processing.mark_failed(self.env, session, call, reason)
        log.warning(
            "call processing failed",
            extra={
                "fields": {
                    "job_id": job.id,
                    "call_id": job.call_id,
                    "stage": stage,
                    "reason": reason,
                    "at": datetime.now(UTC).isoformat(),
                }
            },
        )
