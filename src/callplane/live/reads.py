"""The Calls API's reads of voice history (calls, recordings, dialogs): what any process answers from the database,
with or without an engine (live/control.py's `VoiceService` is one, and adds the commands)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.recordings.voice_files import VoiceFileStore
from callplane.core.voice import queries
from callplane.core.voice.models import VoiceCall, VoiceDialog, VoiceRecording
from callplane.core.voice.queries import RECORDINGS_DIRECTORY, DialogRecordings
from callplane.core.voice.schemas import CallFilter


class VoiceReads:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], data_dir: Path) -> None:
        self.sessions = sessions
        self.data_dir = data_dir
        self.store = VoiceFileStore(data_dir)  # runtime attaches the shared store (core/recordings/voice_files.py)

    def recordings_dir(self) -> Path:
        return self.data_dir / RECORDINGS_DIRECTORY

    async def get_call(self, *, account_id: str, call_id: str, session: AsyncSession | None = None) -> VoiceCall:
        if session is None:
            async with self.sessions() as own:
                return await queries.get_call(own, account_id=account_id, call_id=call_id)
        return await queries.get_call(session, account_id=account_id, call_id=call_id)

    async def list_calls(
        self, *, account_id: str, filters: CallFilter, offset: int, limit: int
    ) -> tuple[list[VoiceCall], int]:
        async with self.sessions() as session:
            return await queries.list_calls(session, account_id=account_id, filters=filters, offset=offset, limit=limit)

    async def list_recordings(
        self,
        *,
        account_id: str,
        call_id: str | None = None,
        configuration_id: str | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[tuple[VoiceCall, list[VoiceRecording]]], int]:
        """Calls that have ready recordings, newest first, each with its files."""
        async with self.sessions() as session:
            return await queries.list_recordings(
                session,
                account_id=account_id,
                call_id=call_id,
                configuration_id=configuration_id,
                offset=offset,
                limit=limit,
            )

    async def call_recordings(self, *, account_id: str, call_id: str) -> tuple[VoiceCall, list[VoiceRecording]]:
        async with self.sessions() as session:
            return await queries.call_recordings(session, account_id=account_id, call_id=call_id)

    async def delete_call_recordings(self, *, account_id: str, call_id: str) -> tuple[VoiceCall, list[VoiceRecording]]:
        async with self.sessions() as session, session.begin():
            call, recordings = await queries.call_recordings(session, account_id=account_id, call_id=call_id)
            await queries.mark_call_recordings_deleted(session, account_id=account_id, call_id=call_id)
            await self.recordings_deleted(session, call, recordings)
        await self.store.delete_all([queries.recording_key(recording) for recording in recordings])
        return call, recordings

    async def recordings_deleted(
        self, session: AsyncSession, call: VoiceCall, recordings: list[VoiceRecording]
    ) -> None:
        """Told, in the deleting transaction, which of a call's recordings were deleted (the voice service writes
        the event)."""

    async def recording_file(self, *, account_id: str, file_id: str) -> tuple[VoiceRecording, Path]:
        """The row and a local path holding its bytes (fetched from the shared store when there is one)."""
        async with self.sessions() as session:
            recording = await queries.ready_recording(session, account_id=account_id, file_id=file_id)
        try:
            return recording, await self.store.fetch(queries.recording_key(recording))
        except FileNotFoundError as error:
            raise queries.RecordingNotFound("Recording file not found.") from error

    async def delete_recording_file(self, *, account_id: str, file_id: str) -> VoiceRecording:
        async with self.sessions() as session, session.begin():
            recording = await queries.ready_recording(session, account_id=account_id, file_id=file_id)
            await queries.mark_recording_deleted(session, file_id=file_id)
            call = await session.get(VoiceCall, recording.call_id) if recording.dialog_id is None else None
            if call is not None:
                await self.recordings_deleted(session, call, [recording])
        await self.store.delete_all([queries.recording_key(recording)])
        return recording

    async def get_dialog(self, *, account_id: str, dialog_id: str) -> VoiceDialog:
        async with self.sessions() as session:
            return await queries.get_dialog(session, account_id=account_id, dialog_id=dialog_id)

    async def dialog_calls(self, dialog: VoiceDialog) -> tuple[VoiceCall | None, VoiceCall | None]:
        async with self.sessions() as session:
            return await queries.dialog_calls(session, dialog)

    async def list_dialogs(
        self,
        *,
        account_id: str,
        live: bool,
        configuration_id: str | None = None,
        state: str | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[VoiceDialog], int]:
        async with self.sessions() as session:
            return await queries.list_dialogs(
                session,
                account_id=account_id,
                live=live,
                configuration_id=configuration_id,
                state=state,
                offset=offset,
                limit=limit,
            )

    async def list_dialog_recordings(
        self,
        *,
        account_id: str,
        dialog_id: str | None = None,
        configuration_id: str | None = None,
        call_id: str | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[DialogRecordings], int]:
        """Dialogs that have ready recording files, newest first, each with its files and calls."""
        async with self.sessions() as session:
            return await queries.list_dialog_recordings(
                session,
                account_id=account_id,
                dialog_id=dialog_id,
                configuration_id=configuration_id,
                call_id=call_id,
                offset=offset,
                limit=limit,
            )

    async def dialog_recordings(self, *, account_id: str, dialog_id: str) -> DialogRecordings:
        async with self.sessions() as session:
            return await queries.dialog_recordings(session, account_id=account_id, dialog_id=dialog_id)

    async def delete_dialog_recordings(self, *, account_id: str, dialog_id: str) -> DialogRecordings:
        """Remove the files; the metadata stays (as for calls). Answers what was deleted."""
        async with self.sessions() as session, session.begin():
            found = await queries.dialog_recordings(session, account_id=account_id, dialog_id=dialog_id)
            await queries.mark_dialog_recordings_deleted(session, account_id=account_id, dialog_id=dialog_id)
        await self.store.delete_all([queries.recording_key(recording) for recording in found.files])
        return found
