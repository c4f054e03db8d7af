"""The voice retention sweeper: runs core/voice/retention.py's `sweep` on an interval, one short transaction each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.recordings.voice_files import VoiceFileStore
from callplane.core.voice.retention import DEFAULT_HISTORY_DAYS, DEFAULT_RECORDING_DAYS, SweepResult, sweep
from callplane.db.base import utcnow

log = logging.getLogger("callplane.voice.retention")


class RetentionSweeper:
    """Runs `sweep` every `interval_s` in the process's workers (each run is one short transaction)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        data_dir: Path,
        history_days: int = DEFAULT_HISTORY_DAYS,
        recording_days: int = DEFAULT_RECORDING_DAYS,
        interval_s: float = 3600.0,
        store: VoiceFileStore | None = None,
    ) -> None:
        self.sessions = sessions
        self.data_dir = data_dir
        self.store = store  # a shared store: the files go there too (core/recordings/voice_files.py)
        self.history_days = history_days
        self.recording_days = recording_days
        self.interval_s = interval_s

    async def run_once(self, now: datetime | None = None) -> SweepResult:
        async with self.sessions() as session, session.begin():
            result = await sweep(
                session=session,
                data_dir=self.data_dir,
                now=now or utcnow(),
                history_days=self.history_days,
                recording_days=self.recording_days,
            )
        if self.store is not None and self.store.shared is not None:
            await self.store.delete_all([path.relative_to(self.data_dir).as_posix() for path in result.paths])
        else:
            await asyncio.to_thread(result.unlink)
        if result.recordings or result.calls or result.dialogs or result.media_files:
            log.info(
                "voice retention sweep",
                extra={
                    "fields": {
                        "recordings": result.recordings,
                        "calls": result.calls,
                        "dialogs": result.dialogs,
                        "media_files": result.media_files,
                    }
                },
            )
        return result

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # a failed sweep (database away) is retried next interval; logged with its cause
                log.exception("voice retention sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
