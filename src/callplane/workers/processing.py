"""What happens to an accepted call: its stages, each idempotent, so a job run twice has the effect of once.

Stages run in order and the job remembers the next one, so a retry (or a worker that takes over a lapsed
lease) resumes where the last one stopped: `recording`, `transcribe` (speech-to-text and signals), `finalize`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.calls.models import Call, CallOrigin, CallRecording, CallStatus
from callplane.core.events.models import Event
from callplane.core.events.types import CALL_PROCESSED, CALL_PROCESSING_FAILED, CALL_RECEIVED
from callplane.core.jobs import queue
from callplane.core.jobs.queue import ClaimedJob
from callplane.core.recordings.audio import normalize_recording_async
from callplane.core.recordings.bucket_access import (
    azure_blob_access_of,
    get_azure_blob_access,
    get_s3_access,
    s3_access_of,
)
from callplane.core.recordings.errors import InvalidStorageKey
from callplane.core.recordings.fetch import (
    DropFolder,
    FetchLimits,
    HttpAuth,
    HttpAuthMethod,
    SftpAccess,
    fetch_drop_folder,
    fetch_http,
    fetch_sftp,
)
from callplane.core.recordings.storage import RecordingStorage
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.recordings.voice_files import VoiceFileStore
from callplane.core.signals import detection
from callplane.core.signals import service as signals
from callplane.core.tenancy.models import Account, Campaign, RecordingAuthConfig, SftpAccessConfig
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.tenancy.service import TenancyLookups
from callplane.core.transcripts import service as transcripts
from callplane.core.transcripts.errors import UnsupportedLanguage
from callplane.core.transcripts.runtime import TranscriptionRuntime
from callplane.core.voice.queries import RECORDINGS_DIRECTORY
from callplane.db.base import new_id
from callplane.errors import CallplaneError
from callplane.observability.metrics import observe_transcription

if TYPE_CHECKING:
    from callplane.core.recordings.fetch_azure import AzureBlobAccess
    from callplane.core.recordings.fetch_s3 import S3Access

log = logging.getLogger("callplane.pipeline")
CALLS = cast(Table, Call.__table__)
EVENTS = cast(Table, Event.__table__)


class NoRecordingAccess(CallplaneError):
    """The call names a recording file, but no direct recording access is configured for this account."""


class CallVanished(CallplaneError):
    """The call of this job no longer exists."""


class RecordingMissing(CallplaneError):
    """The call has no stored recording to transcribe."""


@dataclass
class ProcessingEnvironment:
    """Everything stages need; built once per worker."""

    sessions: async_sessionmaker[AsyncSession]
    storage: RecordingStorage
    policy: TargetPolicy
    secret_box: SecretBox
    work_dir: Path
    limits: FetchLimits
    drop_folder: DropFolder | None = None
    # Where live (voice) calls' recordings are written; their `recording_filename` is relative to it.
    voice_recordings: DropFolder | None = None
    # With a shared store, the voice recordings are there: fetched into `voice_recordings` first.
    voice_files: VoiceFileStore | None = None
    # Called inside the transaction that records a call's outcome (webhooks, callbacks).
    on_outcome: Callable[[AsyncSession, Call, str, dict[str, Any]], Awaitable[None]] | None = None
    # Speech-to-text and signal detection; None means transcription is off on this server.
    transcription: TranscriptionRuntime | None = None
    # Signal matching in transcripts; unset: one with the transcription's embedder.
    signal_detector: detection.SignalDetector | None = None

    def __post_init__(self) -> None:
        if self.signal_detector is None and self.transcription is not None:
            self.signal_detector = detection.SignalDetector(self.transcription.embedder_kind)


Stage = Callable[[ProcessingEnvironment, Call], Awaitable[None]]


async def _load_call(env: ProcessingEnvironment, call_id: str) -> Call:
    async with env.sessions() as session:
        call = await session.get(Call, call_id)
        if call is None:
            raise CallVanished()
        return call


async def _http_auth(env: ProcessingEnvironment, call: Call) -> HttpAuth | None:
    if not call.recording_auth_config_id:
        return None
    async with env.sessions() as session:
        config = await session.get(RecordingAuthConfig, call.recording_auth_config_id)
    if config is None or config.account_id != call.account_id:
        raise NoRecordingAccess("the call's recording auth configuration no longer exists")
    return HttpAuth(
        method=HttpAuthMethod(config.method),
        secret=env.secret_box.decrypt(config.secret_ciphertext),
        name=config.parameter_name,
    )


async def _sftp_access(env: ProcessingEnvironment, call: Call) -> SftpAccess | None:
    async with env.sessions() as session:
        config = await session.scalar(select(SftpAccessConfig).where(SftpAccessConfig.account_id == call.account_id))
    if config is None:
        return None
    decrypt = env.secret_box.decrypt
    return SftpAccess(
        host=config.host,
        port=config.port,
        username=config.username,
        known_host_key=config.known_host_key,
        base_dir=config.base_dir,
        password=decrypt(config.password_ciphertext) if config.password_ciphertext else None,
        private_key=decrypt(config.private_key_ciphertext) if config.private_key_ciphertext else None,
    )


async def _s3_access(env: ProcessingEnvironment, call: Call) -> S3Access | None:
    async with env.sessions() as session:
        config = await get_s3_access(session=session, account_id=call.account_id)
    return None if config is None else s3_access_of(config, env.secret_box)


async def _azure_blob_access(env: ProcessingEnvironment, call: Call) -> AzureBlobAccess | None:
    async with env.sessions() as session:
        config = await get_azure_blob_access(session=session, account_id=call.account_id)
    return None if config is None else azure_blob_access_of(config, env.secret_box)


def _work_dir(env: ProcessingEnvironment, prefix: str) -> Path:
    """A scratch directory of this run alone: a run whose lease lapsed may still be going when the job's next run
    starts, and a directory shared by call id let one run's cleanup delete the other's files mid-conversion (a good
    call failed as "cannot be converted")."""
    env.work_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=env.work_dir))


async def stage_recording(env: ProcessingEnvironment, call: Call) -> None:
    """Fetch the recording, check and normalize it to an 8 kHz MP3, store it. Skipped once stored."""
    async with env.sessions() as session:
        if await session.scalar(select(CallRecording.id).where(CallRecording.call_id == call.id)):
            return
    work = _work_dir(env, call.id)
    try:
        source = work / "source"
        if call.recording_url:
            await fetch_http(
                call.recording_url, dest=source, policy=env.policy, limits=env.limits, auth=await _http_auth(env, call)
            )
        elif (
            call.origin in (CallOrigin.VOICE, CallOrigin.CONTACT_CENTER)  # both record through the voice engine
            and call.recording_filename
            and env.voice_recordings is not None
        ):
            if env.voice_files is not None:  # a missing one is reported by the drop folder's fetch below
                with contextlib.suppress(FileNotFoundError, InvalidStorageKey):
                    await env.voice_files.fetch(f"{RECORDINGS_DIRECTORY}/{call.recording_filename}")
            await fetch_drop_folder(env.voice_recordings, call.recording_filename, dest=source, limits=env.limits)
        elif call.recording_filename:
            # The account's direct access: its own S3 bucket, Azure container or SFTP server (in that order), else
            # the operator's drop folder.
            s3 = await _s3_access(env, call)
            azure = None if s3 is not None else await _azure_blob_access(env, call)
            sftp = None if s3 is not None or azure is not None else await _sftp_access(env, call)
            if s3 is not None:
                from callplane.core.recordings.fetch_s3 import fetch_s3  # boto3 loads on an account's first S3 fetch

                await fetch_s3(s3, call.recording_filename, dest=source, policy=env.policy, limits=env.limits)
            elif azure is not None:
                from callplane.core.recordings.fetch_azure import fetch_azure_blob

                await fetch_azure_blob(
                    azure, call.recording_filename, dest=source, policy=env.policy, limits=env.limits
                )
            elif sftp is not None:
                await fetch_sftp(sftp, call.recording_filename, dest=source, policy=env.policy, limits=env.limits)
            elif env.drop_folder is not None:
                await fetch_drop_folder(env.drop_folder, call.recording_filename, dest=source, limits=env.limits)
            else:
                raise NoRecordingAccess()
        else:
            raise NoRecordingAccess("the call has neither a recording URL nor a recording filename")
        normalized = await normalize_recording_async(
            source,
            work / "normalized.mp3",
            swap_channels=call.direction == "outbound",
            require_stereo=call.origin == CallOrigin.SINGLE_INGEST,
        )
        key = f"{call.account_id}/{call.id}.mp3"
        stored = await env.storage.put_file(key, normalized.path)
        async with env.sessions() as session, session.begin():
            if await session.scalar(select(CallRecording.id).where(CallRecording.call_id == call.id)):
                return  # another worker got here first; the same file was stored under the same key
            await session.execute(
                insert(CallRecording).values(
                    id=new_id(),
                    call_id=call.id,
                    account_id=call.account_id,
                    storage_key=key,
                    content_type="audio/mpeg",
                    size_bytes=stored.size_bytes,
                    duration_ms=normalized.duration_ms,
                    sample_rate=normalized.output_sample_rate_hz,
                    channels=normalized.output_channels,
                    original={
                        "format": str(normalized.original_format),
                        "codec": normalized.original_codec,
                        "sample_rate": normalized.original_sample_rate_hz,
                        "channels": normalized.original_channels,
                        "swapped": normalized.swapped,
                        "single_channel": normalized.single_channel,
                        "warnings": list(normalized.warnings),
                    },
                    levels=[
                        {"role": level.role, "rms_dbfs": level.rms_dbfs, "silence_ratio": level.silence_ratio}
                        for level in normalized.channels
                    ],
                    created_at=datetime.now(UTC),
                )
            )
            if call.duration_ms is None:
                await session.execute(
                    update(CALLS).where(CALLS.c.id == call.id).values(duration_ms=normalized.duration_ms)
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _skip_reason(env: ProcessingEnvironment, campaign: Campaign | None) -> str | None:
    if campaign is not None and not campaign.transcription_enabled:
        return f"transcription is turned off for campaign {campaign.external_id!r}"
    if env.transcription is None:
        return "transcription is turned off on this server (CALLPLANE_TRANSCRIPTION_ENABLED)"
    return None


async def _download(env: ProcessingEnvironment, key: str, dest: Path) -> None:
    with dest.open("wb") as sink:
        async for chunk in env.storage.open_read(key):
            sink.write(chunk)


async def stage_transcribe(env: ProcessingEnvironment, call: Call) -> None:
    """Transcribe the stored recording per channel and detect the account's signals in it; store both at once.

    Skipped once a transcript (or the reason for not making one) is stored. Campaigns without transcription
    get their reason recorded and the call still completes.
    """
    async with env.sessions() as session:
        if await transcripts.transcript_row(session, call.id) is not None:
            return
        campaign = await session.get(Campaign, call.campaign_id) if call.campaign_id else None
        account = await session.get(Account, call.account_id)
        recording = await session.scalar(select(CallRecording).where(CallRecording.call_id == call.id))
        rules = await detection.detection_rules(session, call.account_id)
    if rules.invalid:
        log.warning(
            "signal definitions skipped: their phrases cannot be parsed", extra={"fields": {"names": rules.invalid}}
        )
    language = transcripts.call_language(call.language_code, account.default_language_code if account else None)
    reason = _skip_reason(env, campaign)
    if reason is not None or env.transcription is None or env.signal_detector is None:
        async with env.sessions() as session, session.begin():
            await transcripts.save_skipped(session, call=call, reason=reason or "", language_code=language)
        return
    if recording is None:
        raise RecordingMissing()
    work = _work_dir(env, f"{call.id}-asr")
    try:
        audio = work / "recording.mp3"
        await _download(env, recording.storage_key, audio)
        try:
            started = time.perf_counter()
            transcript = await env.transcription.transcribe(audio, language)
            observe_transcription(transcript.duration_s, time.perf_counter() - started)  # x real time
        except UnsupportedLanguage as error:
            async with env.sessions() as session, session.begin():
                await transcripts.save_skipped(session, call=call, reason=error.message, language_code=language)
            return
    finally:
        shutil.rmtree(work, ignore_errors=True)
    detector = env.signal_detector
    detections = await env.transcription.run_in_thread(lambda: detector.detect(rules.rules, transcript))
    async with env.sessions() as session, session.begin():
        if await transcripts.save_transcript(
            session, call=call, transcript=transcript, signals_evaluated=len(rules.rules)
        ):
            await detection.replace_detected(
                session,
                call_id=call.id,
                account_id=call.account_id,
                detections=detections,
                rules=rules,
                embedder=detector.embedder_kind,
            )


async def stage_finalize(env: ProcessingEnvironment, call: Call) -> None:
    """Mark the call completed and announce it; a call already completed is left alone."""
    async with env.sessions() as session, session.begin():
        result = await session.execute(
            update(CALLS)
            .where(CALLS.c.id == call.id, CALLS.c.status != CallStatus.COMPLETED)
            .values(status=CallStatus.COMPLETED, status_reason=None, updated_at=datetime.now(UTC))
        )
        if result.rowcount:  # type: ignore[attr-defined]
            results = transcripts.results_of(await transcripts.transcript_row(session, call.id))
            await announce(
                env, session, call, CALL_PROCESSED, {"status": "completed", "error": None, "results": results}
            )


STAGES: list[tuple[str, Stage]] = [
    ("recording", stage_recording),
    ("transcribe", stage_transcribe),
    ("finalize", stage_finalize),
]
STAGE_NAMES = tuple(name for name, _ in STAGES)


def next_stage(stage: str) -> str | None:
    names = [name for name, _ in STAGES]
    index = names.index(stage)
    return names[index + 1] if index + 1 < len(names) else None


async def announce(
    env: ProcessingEnvironment, session: AsyncSession, call: Call, event_type: str, details: dict[str, Any]
) -> None:
    """Write the event (and, through on_outcome, webhooks and callbacks) in the caller's transaction."""
    payload = {"call_id": call.id, "external_id": call.external_id, "origin": call.origin} | details
    await session.execute(
        insert(EVENTS).values(
            account_id=call.account_id, call_id=call.id, type=event_type, payload=payload, created_at=datetime.now(UTC)
        )
    )
    if env.on_outcome is not None:
        await env.on_outcome(session, call, event_type, payload)


async def mark_processing(env: ProcessingEnvironment, call_id: str, *, job: ClaimedJob, worker_id: str) -> Call:
    """The call is being worked on. On its job's first run, the `call.received` webhooks go out too: queuing them
    here rather than in the ingestion request keeps a per-tenant endpoint lookup off the accept path.

    "First run" is the run whose transaction moves the job to its first stage (``queue.start``), not attempt 1:
    a server killed between claiming the job and this commit would otherwise never announce the call.
    """
    async with env.sessions() as session, session.begin():
        await session.execute(
            update(CALLS)
            .where(CALLS.c.id == call_id, CALLS.c.status.in_([CallStatus.QUEUED, CallStatus.FAILED]))
            .values(status=CallStatus.PROCESSING, status_reason=None, updated_at=datetime.now(UTC))
        )
        if job.stage is None and await queue.start(
            session, job_id=job.id, worker_id=worker_id, attempt=job.attempts, stage=STAGE_NAMES[0]
        ):
            call = await session.get(Call, call_id)
            if call is None:
                raise CallVanished()
            # Signal API submissions sent (call_in_progress) before this call existed apply now.
            await signals.resolve_pending_submissions(
                session=session, lookups=TenancyLookups(ttl_seconds=0), account_id=call.account_id
            )
            if env.on_outcome is not None:
                payload = {
                    "call_id": call.id,
                    "external_id": call.external_id,
                    "origin": call.origin,
                    "received_at": call.received_at.isoformat(),
                }
                await env.on_outcome(session, call, CALL_RECEIVED, payload)
    return await _load_call(env, call_id)


async def mark_failed(env: ProcessingEnvironment, session: AsyncSession, call: Call, reason: str) -> None:
    await session.execute(
        update(CALLS)
        .where(CALLS.c.id == call.id)
        .values(status=CallStatus.FAILED, status_reason=reason, updated_at=datetime.now(UTC))
    )
    await announce(env, session, call, CALL_PROCESSING_FAILED, {"status": "failed", "error": reason})
