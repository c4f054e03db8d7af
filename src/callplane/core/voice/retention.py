"""How long programmable-voice data is kept, and the sweep that enforces it (docs/voice.md "Retention").

- Recordings (call and dialog files) go `recording_days` after they ended: the file is removed and the
  metadata is kept marked deleted, as a DELETE through the API does.
- Finished calls, dialogs and conferences (the history) go `history_days` after they ended, rows and all, once none of
  their recordings is still stored. The core `Call` of a voice call stays (it is the platform's record,
  with its transcript); so does a recording file the post-call pipeline took for it.
- Uploaded files (`/calls/1/files`) go when unused for 90 days: `expires_at` moves on each play.

The caller owns the transaction; files are removed only after it commits (`SweepResult.paths`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls.models import Call
from callplane.core.voice.conference_models import ConferenceState, VoiceConference, VoiceConferenceParticipant
from callplane.core.voice.files import files_dir
from callplane.core.voice.models import DialogState, VoiceCall, VoiceDialog, VoiceRecording
from callplane.core.voice.queries import RECORDINGS_DIRECTORY
from callplane.core.voice.states import TERMINAL_STATES
from callplane.core.voice.trunk_models import MediaFile
from callplane.db.base import utcnow

log = logging.getLogger("callplane.voice.retention")

DEFAULT_HISTORY_DAYS = 5  # what Infobip keeps of call, conference and dialog history
DEFAULT_RECORDING_DAYS = 90
_BATCH = 500  # rows per statement: a large backlog is swept over several runs, each transaction stays short


@dataclass
class SweepResult:
    recordings: int = 0  # recording files removed
    calls: int = 0  # history rows deleted
    dialogs: int = 0
    conferences: int = 0
    media_files: int = 0  # expired uploads
    paths: list[Path] = field(default_factory=list)  # to unlink once the transaction has committed

    def unlink(self) -> None:
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


async def sweep(
    *, session: AsyncSession, data_dir: Path, now: datetime, history_days: int, recording_days: int
) -> SweepResult:
    """One pass of every rule (a rule with 0 days is off). Flushes; the caller commits, then `result.unlink()`."""
    result = SweepResult()
    if recording_days > 0:
        await _expire_recordings(session, data_dir, now - timedelta(days=recording_days), result)
    if history_days > 0:
        cutoff = now - timedelta(days=history_days)
        await _delete_history(session, cutoff, result)
    await _expire_media_files(session, data_dir, now, result)
    return result


async def _expire_recordings(session: AsyncSession, data_dir: Path, cutoff: datetime, result: SweepResult) -> None:
    rows = list(
        await session.scalars(
            select(VoiceRecording).where(VoiceRecording.ready.is_(True), VoiceRecording.ended_at < cutoff).limit(_BATCH)
        )
    )
    if not rows:
        return
    keys = [row.storage_key for row in rows]
    kept = set(await session.scalars(select(Call.recording_filename).where(Call.recording_filename.in_(keys))))
    await session.execute(
        update(VoiceRecording)
        .where(VoiceRecording.id.in_([row.id for row in rows]))
        .values(ready=False, deleted_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    result.recordings += len(rows)
    result.paths += [data_dir / RECORDINGS_DIRECTORY / key for key in keys if key not in kept]


async def _delete_history(session: AsyncSession, cutoff: datetime, result: SweepResult) -> None:
    stored = exists().where(VoiceRecording.call_id == VoiceCall.id, VoiceRecording.ready.is_(True))
    call_ids = list(
        await session.scalars(
            select(VoiceCall.id)
            .where(VoiceCall.state.in_(TERMINAL_STATES), VoiceCall.ended_at < cutoff, ~stored)
            .limit(_BATCH)
        )
    )
    if call_ids:
        await session.execute(delete(VoiceRecording).where(VoiceRecording.call_id.in_(call_ids)))
        await session.execute(delete(VoiceCall).where(VoiceCall.id.in_(call_ids)))
        result.calls += len(call_ids)
    dialog_stored = exists().where(VoiceRecording.dialog_id == VoiceDialog.id, VoiceRecording.ready.is_(True))
    dialog_ids = list(
        await session.scalars(
            select(VoiceDialog.id)
            .where(
                VoiceDialog.state.in_([DialogState.FINISHED, DialogState.FAILED]),
                VoiceDialog.ended_at < cutoff,
                ~dialog_stored,
            )
            .limit(_BATCH)
        )
    )
    if dialog_ids:
        await session.execute(delete(VoiceDialog).where(VoiceDialog.id.in_(dialog_ids)))
        result.dialogs += len(dialog_ids)
    conference_stored = exists().where(
        VoiceRecording.conference_id == VoiceConference.id, VoiceRecording.ready.is_(True)
    )
    conference_ids = list(
        await session.scalars(
            select(VoiceConference.id)
            .where(
                VoiceConference.state == ConferenceState.FINISHED,
                VoiceConference.ended_at < cutoff,
                ~conference_stored,
            )
            .limit(_BATCH)
        )
    )
    if conference_ids:
        participants = VoiceConferenceParticipant.conference_id.in_(conference_ids)
        await session.execute(delete(VoiceConferenceParticipant).where(participants))
        await session.execute(delete(VoiceConference).where(VoiceConference.id.in_(conference_ids)))
        result.conferences += len(conference_ids)


async def _expire_media_files(session: AsyncSession, data_dir: Path, now: datetime, result: SweepResult) -> None:
    rows = list(await session.scalars(select(MediaFile).where(MediaFile.expires_at < now).limit(_BATCH)))
    if not rows:
        return
    await session.execute(delete(MediaFile).where(MediaFile.id.in_([row.id for row in rows])))
    result.media_files += len(rows)
    result.paths += [files_dir(data_dir) / row.storage_key for row in rows]
