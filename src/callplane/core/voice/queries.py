"""Reading voice history: calls, dialogs and their recordings, for any process (no engine needed).

Functions take the caller's session and never commit; the ones that mark recordings deleted leave removing the
files to the caller, after its commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.voice.models import VoiceCall, VoiceDialog, VoiceRecording
from callplane.core.voice.schemas import CallFilter
from callplane.core.voice.states import DIALOG_LIVE, DIALOG_TERMINAL, LIVE_STATES, TERMINAL_STATES
from callplane.db.base import utcnow
from callplane.errors import NotFound

RECORDINGS_DIRECTORY = "voice-recordings"


class VoiceCallNotFound(NotFound):
    """Call not found."""


class RecordingNotFound(NotFound):
    """Recording not found."""


class DialogNotFound(NotFound):
    """Dialog not found."""


@dataclass(frozen=True, slots=True)
class DialogRecordings:
    """A dialog's ready recording files (composed ones have `composed` set) and the calls they belong to."""

    dialog: VoiceDialog
    files: list[VoiceRecording]
    calls: dict[str, VoiceCall]


# ---- calls --------------------------------------------------------------------------------------


async def get_call(session: AsyncSession, *, account_id: str, call_id: str) -> VoiceCall:
    call = await session.get(VoiceCall, call_id)
    if call is None or call.account_id != account_id:
        raise VoiceCallNotFound()
    return call


async def list_calls(
    session: AsyncSession, *, account_id: str, filters: CallFilter, offset: int, limit: int
) -> tuple[list[VoiceCall], int]:
    states = LIVE_STATES if filters.live else TERMINAL_STATES
    conditions: list[Any] = [VoiceCall.account_id == account_id]
    if filters.state:
        if filters.state not in states:
            return [], 0
        conditions.append(VoiceCall.state == filters.state)
    else:
        conditions.append(VoiceCall.state.in_(states))
    for column, value in (
        (VoiceCall.endpoint_type, filters.endpoint_type),
        (VoiceCall.configuration_id, filters.configuration_id),
        (VoiceCall.from_user, filters.from_user),
        (VoiceCall.to_user, filters.to_user),
        (VoiceCall.direction, filters.direction),
        (VoiceCall.dialog_id, filters.dialog_id),
        (VoiceCall.conference_id, filters.conference_id),
    ):
        if value:
            conditions.append(column == value)
    if filters.start_time_after is not None:
        conditions.append(VoiceCall.created_at > filters.start_time_after)
    total = await session.scalar(select(func.count()).select_from(VoiceCall).where(*conditions)) or 0
    rows = await session.scalars(
        select(VoiceCall)
        .where(*conditions)
        .order_by(VoiceCall.created_at.desc(), VoiceCall.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows), total


# ---- call recordings ----------------------------------------------------------------------------


async def list_recordings(
    session: AsyncSession,
    *,
    account_id: str,
    call_id: str | None = None,
    configuration_id: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[tuple[VoiceCall, list[VoiceRecording]]], int]:
    """Calls that have ready recordings, newest first, each with its files."""
    conditions: list[Any] = [
        VoiceRecording.account_id == account_id,
        VoiceRecording.ready.is_(True),
        VoiceRecording.dialog_id.is_(None),  # a dialog's files are listed under /recordings/dialogs
        VoiceRecording.conference_id.is_(None),  # a conference's under /recordings/conferences
    ]
    if call_id:
        conditions.append(VoiceRecording.call_id == call_id)
    if configuration_id:
        conditions.append(VoiceRecording.configuration_id == configuration_id)
    call_ids = select(VoiceRecording.call_id).where(*conditions).distinct().subquery()
    total = await session.scalar(select(func.count()).select_from(call_ids)) or 0
    calls = list(
        await session.scalars(
            select(VoiceCall)
            .where(VoiceCall.id.in_(select(call_ids.c.call_id)))
            .order_by(VoiceCall.created_at.desc(), VoiceCall.id)
            .offset(offset)
            .limit(limit)
        )
    )
    files = list(
        await session.scalars(
            select(VoiceRecording)
            .where(*conditions, VoiceRecording.call_id.in_([call.id for call in calls]))
            .order_by(VoiceRecording.started_at)
        )
    )
    return [(call, [f for f in files if f.call_id == call.id]) for call in calls], total


async def call_recordings(
    session: AsyncSession, *, account_id: str, call_id: str
) -> tuple[VoiceCall, list[VoiceRecording]]:
    found, _ = await list_recordings(session, account_id=account_id, call_id=call_id, limit=1)
    if not found:
        raise RecordingNotFound()
    return found[0]


async def mark_call_recordings_deleted(session: AsyncSession, *, account_id: str, call_id: str) -> None:
    await session.execute(
        update(VoiceRecording)
        .where(VoiceRecording.call_id == call_id, VoiceRecording.account_id == account_id)
        .values(ready=False, deleted_at=utcnow())
    )


async def recording_file(
    session: AsyncSession, *, account_id: str, file_id: str, recordings_dir: Path
) -> tuple[VoiceRecording, Path]:
    recording = await session.get(VoiceRecording, file_id)
    if recording is None or recording.account_id != account_id or not recording.ready:
        raise RecordingNotFound("Recording file not found.")
    path = recordings_dir / recording.storage_key
    if not path.is_file():
        raise RecordingNotFound("Recording file not found.")
    return recording, path


async def ready_recording(session: AsyncSession, *, account_id: str, file_id: str) -> VoiceRecording:
    """An account's ready recording file row (RecordingNotFound otherwise); its bytes are in the voice file store
    under `recording_key` (live/reads.py fetches them)."""
    recording = await session.get(VoiceRecording, file_id)
    if recording is None or recording.account_id != account_id or not recording.ready:
        raise RecordingNotFound("Recording file not found.")
    return recording


def recording_key(recording: VoiceRecording) -> str:
    """The recording's key in the voice file store (core/recordings/voice_files.py), relative to the data dir."""
    return f"{RECORDINGS_DIRECTORY}/{recording.storage_key}"


async def mark_recording_deleted(session: AsyncSession, *, file_id: str) -> None:
    await session.execute(
        update(VoiceRecording).where(VoiceRecording.id == file_id).values(ready=False, deleted_at=utcnow())
    )


# ---- dialogs ------------------------------------------------------------------------------------


async def get_dialog(session: AsyncSession, *, account_id: str, dialog_id: str) -> VoiceDialog:
    dialog = await session.get(VoiceDialog, dialog_id)
    if dialog is None or dialog.account_id != account_id:
        raise DialogNotFound()
    return dialog


async def dialog_calls(session: AsyncSession, dialog: VoiceDialog) -> tuple[VoiceCall | None, VoiceCall | None]:
    parent = await session.get(VoiceCall, dialog.parent_call_id)
    child = await session.get(VoiceCall, dialog.child_call_id) if dialog.child_call_id else None
    return parent, child


async def list_dialogs(
    session: AsyncSession,
    *,
    account_id: str,
    live: bool,
    configuration_id: str | None = None,
    state: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[VoiceDialog], int]:
    states = DIALOG_LIVE if live else DIALOG_TERMINAL
    conditions: list[Any] = [VoiceDialog.account_id == account_id, VoiceDialog.state.in_(states)]
    if state:
        conditions.append(VoiceDialog.state == state)
    if configuration_id:
        conditions.append(VoiceDialog.configuration_id == configuration_id)
    total = await session.scalar(select(func.count()).select_from(VoiceDialog).where(*conditions)) or 0
    rows = await session.scalars(
        select(VoiceDialog)
        .where(*conditions)
        .order_by(VoiceDialog.created_at.desc(), VoiceDialog.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows), total


async def list_dialog_recordings(
    session: AsyncSession,
    *,
    account_id: str,
    dialog_id: str | None = None,
    configuration_id: str | None = None,
    call_id: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[DialogRecordings], int]:
    """Dialogs that have ready recording files, newest first, each with its files and calls."""
    conditions: list[Any] = [
        VoiceRecording.account_id == account_id,
        VoiceRecording.ready.is_(True),
        VoiceRecording.dialog_id.is_not(None),
    ]
    if dialog_id:
        conditions.append(VoiceRecording.dialog_id == dialog_id)
    if configuration_id:
        conditions.append(VoiceRecording.configuration_id == configuration_id)
    dialog_ids = select(VoiceRecording.dialog_id).where(*conditions).distinct().subquery()
    dialog_conditions: list[Any] = [VoiceDialog.id.in_(select(dialog_ids.c.dialog_id))]
    if call_id:
        dialog_conditions.append((VoiceDialog.parent_call_id == call_id) | (VoiceDialog.child_call_id == call_id))
    total = await session.scalar(select(func.count()).select_from(VoiceDialog).where(*dialog_conditions)) or 0
    dialogs = list(
        await session.scalars(
            select(VoiceDialog)
            .where(*dialog_conditions)
            .order_by(VoiceDialog.created_at.desc(), VoiceDialog.id)
            .offset(offset)
            .limit(limit)
        )
    )
    ids = [dialog.id for dialog in dialogs]
    files = list(
        await session.scalars(
            select(VoiceRecording)
            .where(*conditions, VoiceRecording.dialog_id.in_(ids))
            .order_by(VoiceRecording.started_at, VoiceRecording.id)
        )
    )
    call_ids = {f.call_id for f in files}
    rows = await session.scalars(select(VoiceCall).where(VoiceCall.id.in_(call_ids)))
    calls = {call.id: call for call in rows}
    found = [DialogRecordings(dialog, [f for f in files if f.dialog_id == dialog.id], calls) for dialog in dialogs]
    return found, total


async def dialog_recordings(session: AsyncSession, *, account_id: str, dialog_id: str) -> DialogRecordings:
    found, _ = await list_dialog_recordings(session, account_id=account_id, dialog_id=dialog_id, limit=1)
    if not found:
        raise RecordingNotFound()
    return found[0]


async def mark_dialog_recordings_deleted(session: AsyncSession, *, account_id: str, dialog_id: str) -> None:
    await session.execute(
        update(VoiceRecording)
        .where(VoiceRecording.dialog_id == dialog_id, VoiceRecording.account_id == account_id)
        .values(ready=False, deleted_at=utcnow())
    )
