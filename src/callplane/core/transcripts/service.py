"""Stored transcripts: write one per call, read it back for the call's views.

Transcripts sit below calls and signals: this module reads a call through `CallView` (what it needs of
`core.calls.models.Call`) and the pipeline stores the signals detected in a transcript next to it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.transcripts.merge import (
    TranscriptFormat,
    render,
    render_text,
    transcript_from_dict,
    transcript_to_dict,
)
from callplane.core.transcripts.models import CallTranscript, TranscriptStatus
from callplane.core.transcripts.schemas import Transcript
from callplane.db.base import new_id
from callplane.errors import InvalidInput, NotFound

DEFAULT_LANGUAGE = "en-US"


class CallView(Protocol):
    """What a transcript needs to know of its call (a `core.calls.models.Call`)."""

    @property
    def id(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def status_reason(self) -> str | None: ...


class TranscriptNotAvailable(NotFound):
    """The call has no transcript."""


def call_language(call_language_code: str | None, account_default: str | None) -> str:
    """The call's own language, else the account's default, else en-US."""
    return (call_language_code or "").strip() or (account_default or "").strip() or DEFAULT_LANGUAGE


async def transcript_row(session: AsyncSession, call_id: str) -> CallTranscript | None:
    return await session.scalar(select(CallTranscript).where(CallTranscript.call_id == call_id))


async def save_transcript(
    session: AsyncSession, *, call: CallView, transcript: Transcript, signals_evaluated: int
) -> bool:
    """Store the transcript, in the caller's transaction (where the pipeline stores its detected signals too).

    ``signals_evaluated``: how many signal definitions were matched against it (0: no analytics). Returns False
    (and writes nothing) when another worker stored a transcript first.
    """
    if await transcript_row(session, call.id) is not None:
        return False
    now = datetime.now(UTC)
    await session.execute(
        insert(CallTranscript).values(
            id=new_id(),
            call_id=call.id,
            account_id=call.account_id,
            status=TranscriptStatus.COMPLETED,
            skipped_reason=None,
            language_code=transcript.language,
            model=transcript.model,
            transcript=transcript_to_dict(transcript),
            audio_duration_ms=round(transcript.duration_s * 1000),
            elapsed_ms=round(transcript.elapsed_s * 1000),
            complete=transcript.complete,
            dropped_segments=sum(channel.dropped_segments for channel in transcript.channels),
            signals_evaluated=signals_evaluated,
            created_at=now,
        )
    )
    return True


async def save_skipped(session: AsyncSession, *, call: CallView, reason: str, language_code: str | None = None) -> None:
    """Record that the call is not transcribed, and why (shown by the transcript endpoint)."""
    if await transcript_row(session, call.id) is not None:
        return
    await session.execute(
        insert(CallTranscript).values(
            id=new_id(),
            call_id=call.id,
            account_id=call.account_id,
            status=TranscriptStatus.SKIPPED,
            skipped_reason=reason,
            language_code=language_code,
            model="",
            transcript={},
            complete=True,
            dropped_segments=0,
            signals_evaluated=0,
            created_at=datetime.now(UTC),
        )
    )


def results_of(row: CallTranscript | None) -> dict[str, bool]:
    """What a finished call has to offer: the `results` of call.processed webhooks and batch callbacks."""
    if row is None or row.status != TranscriptStatus.COMPLETED:
        return {"transcription_available": False, "analytics_available": False}
    return {"transcription_available": True, "analytics_available": row.signals_evaluated > 0}


def availability(call: CallView, row: CallTranscript | None) -> dict[str, Any]:
    """The call detail's `transcript` block: whether there is one, where, and if not, why."""
    if row is None:
        return {"available": False, "status": "pending", "reason": "the call has not been transcribed yet"}
    if row.status != TranscriptStatus.COMPLETED:
        return {"available": False, "status": row.status, "reason": row.skipped_reason}
    return {
        "available": True,
        "status": row.status,
        "language_code": row.language_code,
        "model": row.model,
        "complete": row.complete,
        "audio_duration_ms": row.audio_duration_ms,
        "elapsed_ms": row.elapsed_ms,
        "path": f"/v1/calls/{call.id}/transcript",
    }


def require_transcript(call: CallView, row: CallTranscript | None) -> CallTranscript:
    """The stored transcript, or TranscriptNotAvailable saying why there is none."""
    if row is not None and row.status == TranscriptStatus.COMPLETED:
        return row
    if row is None:
        if call.status == "failed":
            raise TranscriptNotAvailable(f"the call has no transcript: processing failed ({call.status_reason})")
        raise TranscriptNotAvailable("the call has not been transcribed yet")
    raise TranscriptNotAvailable(f"the call was not transcribed: {row.skipped_reason}")


TEXT_FORMATS = ("text", *(fmt.value for fmt in TranscriptFormat))


class UnknownTranscriptFormat(InvalidInput):
    """The transcript format is not one of text, caller, agent, caller_agent_block, caller_agent_conversation."""


def transcript_document(call: CallView, row: CallTranscript) -> dict[str, Any]:
    """The JSON view: per-channel segments, every segment in time order with its speaker, and the turns."""
    stored = row.transcript
    merged = sorted(
        (
            {"speaker": channel["speaker"], "channel": channel["channel"]} | segment
            for channel in stored.get("channels", [])
            for segment in channel.get("segments", [])
        ),
        key=lambda segment: (segment["start_s"], segment["channel"]),
    )
    return {
        "call_id": call.id,
        "external_id": call.external_id,
        "language_code": row.language_code,
        "model": row.model,
        "complete": row.complete,
        "duration_s": stored.get("duration_s"),
        "elapsed_s": stored.get("elapsed_s"),
        "dropped_segments": row.dropped_segments,
        "created_at": row.created_at,
        "channels": [
            {key: value for key, value in channel.items() if key != "segments"}
            for channel in stored.get("channels", [])
        ],
        "segments": merged,
        "turns": stored.get("turns", []),
    }


def transcript_text(row: CallTranscript, fmt: str) -> str:
    """``text`` (``[m:ss] Caller: …`` per turn) or one of Invoca's four transcript formats."""
    if fmt not in TEXT_FORMATS:
        raise UnknownTranscriptFormat(f"transcript format {fmt!r} must be one of {', '.join(TEXT_FORMATS)}")
    transcript = transcript_from_dict(row.transcript)
    return render_text(transcript) if fmt == "text" else render(transcript, TranscriptFormat(fmt))
