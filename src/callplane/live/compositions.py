"""Composing a dialog's or a conference's per-call recording files: one composed file per recording session (the
files of one start share its `started_at`), mono mixed or one channel per file, through the voice file store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update

from callplane.core.voice.models import VoiceRecording
from callplane.core.voice.queries import recording_key
from callplane.db.base import new_id, utcnow
from callplane.live.calls import LiveCalls
from callplane.media.engine import compose_tracks


@dataclass(frozen=True, slots=True)
class ComposedOwner:
    """What the composed rows belong to: a dialog (call_id = its parent) or a conference (call_id = None: the first
    file's call)."""

    account_id: str
    configuration_id: str
    call_id: str | None = None
    dialog_id: str | None = None
    conference_id: str | None = None


async def compose_sessions(
    calls: LiveCalls,
    files: Sequence[VoiceRecording],
    *,
    owner: ComposedOwner,
    order: Callable[[VoiceRecording], Any],
    multi_channel: bool,
    delete_sources: bool,
) -> list[VoiceRecording]:
    """Compose the uncomposed files session by session (tracks in `order`), store the results and commit their rows;
    the sources are then marked deleted and removed from the store when `delete_sources`. Raises OSError or ValueError
    when a session cannot be composed: nothing is committed then."""
    sessions: dict[datetime, list[VoiceRecording]] = {}
    for recording in files:
        if not recording.composed:
            sessions.setdefault(recording.started_at, []).append(recording)  # one start: same started_at
    composed: list[VoiceRecording] = []
    for started_at, session_files in sorted(sessions.items(), key=lambda item: item[0]):
        session_files.sort(key=order)
        file_id = new_id()
        storage_key = f"{owner.account_id}/{file_id}.wav"
        target = calls.recordings_dir() / storage_key
        tracks = [await calls.store.fetch(recording_key(f)) for f in session_files]
        duration_ms = await asyncio.to_thread(compose_tracks, tracks, target, multi_channel=multi_channel)
        size_bytes = await calls.store.publish_path(target)
        composed.append(
            VoiceRecording(
                id=file_id,
                account_id=owner.account_id,
                call_id=owner.call_id or session_files[0].call_id,
                configuration_id=owner.configuration_id,
                name=f"{file_id}.wav",
                storage_key=storage_key,
                channels="STEREO" if multi_channel and len(session_files) == 2 else "MONO",
                size_bytes=size_bytes,
                duration_ms=duration_ms,
                custom_data=dict(session_files[0].custom_data),
                started_at=started_at,
                ended_at=max((f.ended_at for f in session_files if f.ended_at), default=utcnow()),
                ready=True,
                dialog_id=owner.dialog_id,
                conference_id=owner.conference_id,
                composed=True,
            )
        )
    sources = [f for session_files in sessions.values() for f in session_files]
    async with calls.sessions() as session, session.begin():
        session.add_all(composed)
        if delete_sources:
            await session.execute(
                update(VoiceRecording)
                .where(VoiceRecording.id.in_([f.id for f in sources]))
                .values(ready=False, deleted_at=utcnow())
            )
    if delete_sources:
        await calls.store.delete_all([recording_key(recording) for recording in sources])
    return composed
