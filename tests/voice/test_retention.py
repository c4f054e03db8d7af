"""Voice retention: a real server's workers sweep finished calls, dialogs, recordings and unused uploads past
their retention (rows backdated in the database), and keep everything else; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callplane.core.calls.models import Call, CallOrigin, CallStatus
from callplane.core.voice.files import RETENTION_UNUSED, files_dir, resolve_file_path
from callplane.core.voice.models import (
    CallsConfiguration,
    DialogState,
    VoiceCall,
    VoiceCallState,
    VoiceDialog,
    VoiceRecording,
)
from callplane.core.voice.queries import RECORDINGS_DIRECTORY
from callplane.core.voice.trunk_models import MediaFile
from callplane.db.base import new_id, utcnow
from callplane.db.engine import create_engine, create_session_factory
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)

ADMIN_TOKEN = "retention-admin"


def _settings(data_dir: Path, database_url: str | None) -> Settings:
    return Settings(
        environment="test",
        data_dir=data_dir,
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        log_level="WARNING",
        workers_enabled=True,
        transcription_enabled=False,
        voice_history_retention_days=1,
        voice_recording_retention_days=2,
        voice_retention_sweep_seconds=0.2,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RunningServer, Settings]]:
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        settings = _settings(data_dir, None)
        with running_server(settings) as running:
            yield running, settings
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url:
        settings = _settings(data_dir, url)
        with running_server(settings) as running:
            yield running, settings


def _call(account_id: str, state: VoiceCallState, *, ended_days_ago: float | None) -> list[Any]:
    now = utcnow()
    ended = None if ended_days_ago is None else now - timedelta(days=ended_days_ago)
    created = (ended or now) - timedelta(minutes=5)
    call_id = new_id()
    core = Call(
        id=call_id,
        account_id=account_id,
        origin=CallOrigin.VOICE,
        direction="inbound",
        started_at=created,
        ended_at=ended,
        status=CallStatus.COMPLETED if ended else CallStatus.PROCESSING,
    )
    voice = VoiceCall(
        id=call_id,
        account_id=account_id,
        configuration_id="retention",
        direction="INBOUND",
        state=state,
        endpoint_user="caller",
        node_id="elsewhere",  # not this process's: nothing recovers it
        max_duration_s=60,
        created_at=created,
        ended_at=ended,
    )
    return [core, voice]


def _recording(
    data_dir: Path, call: VoiceCall, *, ended_days_ago: float, dialog_id: str | None = None
) -> VoiceRecording:
    file_id = new_id()
    key = f"{call.account_id}/{file_id}.wav"
    path = data_dir / RECORDINGS_DIRECTORY / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    ended = utcnow() - timedelta(days=ended_days_ago)
    return VoiceRecording(
        id=file_id,
        account_id=call.account_id,
        call_id=call.id,
        configuration_id="retention",
        name=f"{file_id}.wav",
        storage_key=key,
        started_at=ended - timedelta(minutes=1),
        ended_at=ended,
        ready=True,
        dialog_id=dialog_id,
    )


def _upload(data_dir: Path, account_id: str, *, expires_in: timedelta) -> MediaFile:
    file_id = new_id()
    key = f"{account_id}/{file_id}.wav"
    path = files_dir(data_dir) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    now = utcnow()
    return MediaFile(
        id=file_id,
        account_id=account_id,
        name="prompt.wav",
        file_format="WAV",
        size_bytes=4,
        duration_ms=1000,
        storage_key=key,
        created_at=now - timedelta(days=100),
        expires_at=now + expires_in,
    )


def test_the_sweep_deletes_what_is_past_retention_and_keeps_the_rest(
    served: tuple[RunningServer, Settings],
) -> None:
    running, settings = served
    admin = Admin(running.base_url, ADMIN_TOKEN)
    try:
        account = admin.network()
    finally:
        admin.client.close()
    asyncio.run(_scenario(running, settings, account.account_id, account.token))


async def _scenario(running: RunningServer, settings: Settings, account_id: str, token: str) -> None:
    data_dir = settings.data_dir
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            session.add(CallsConfiguration(id="retention", account_id=account_id, name="retention"))
            old_recorded = _call(account_id, VoiceCallState.FINISHED, ended_days_ago=3)  # recording expired too
            kept_recorded = _call(account_id, VoiceCallState.FINISHED, ended_days_ago=1.5)  # its recording is young
            recent = _call(account_id, VoiceCallState.FINISHED, ended_days_ago=0.1)
            live = _call(account_id, VoiceCallState.ESTABLISHED, ended_days_ago=None)
            old_failed = _call(account_id, VoiceCallState.FAILED, ended_days_ago=3)
            for rows in (old_recorded, kept_recorded, recent, live, old_failed):
                session.add_all(rows)
            await session.flush()
            live[1].created_at = utcnow() - timedelta(days=10)
            old_dialog = VoiceDialog(
                account_id=account_id,
                configuration_id="retention",
                state=DialogState.FINISHED,
                parent_call_id=old_failed[0].id,
                created_at=utcnow() - timedelta(days=3, minutes=5),
                ended_at=utcnow() - timedelta(days=3),
            )
            live_dialog = VoiceDialog(
                account_id=account_id,
                configuration_id="retention",
                state=DialogState.ESTABLISHED,
                parent_call_id=live[0].id,
                created_at=utcnow() - timedelta(days=10),
            )
            session.add_all([old_dialog, live_dialog])
            expired_recording = _recording(data_dir, old_recorded[1], ended_days_ago=3)
            young_recording = _recording(data_dir, kept_recorded[1], ended_days_ago=1.5)
            pipeline_recording = _recording(data_dir, recent[1], ended_days_ago=3)  # the core call took it
            recent[0].recording_filename = pipeline_recording.storage_key
            session.add_all([expired_recording, young_recording, pipeline_recording])
            unused = _upload(data_dir, account_id, expires_in=-timedelta(hours=1))
            used = _upload(data_dir, account_id, expires_in=timedelta(days=1))
            session.add_all([unused, used])
        ids = {
            name: rows[1].id
            for name, rows in (
                ("old", old_recorded),
                ("kept", kept_recorded),
                ("recent", recent),
                ("live", live),
                ("failed", old_failed),
            )
        }

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            async with sessions() as session:
                if await session.get(VoiceCall, ids["old"]) is None and await session.get(MediaFile, unused.id) is None:
                    break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # another sweep or two: what is kept stays kept

        async with sessions() as session:
            remaining = set(await session.scalars(select(VoiceCall.id).where(VoiceCall.account_id == account_id)))
            assert remaining == {ids["kept"], ids["recent"], ids["live"]}
            assert await session.get(Call, ids["old"]) is not None  # the platform's record of the call stays
            dialogs = set(await session.scalars(select(VoiceDialog.id).where(VoiceDialog.account_id == account_id)))
            assert dialogs == {live_dialog.id}
            assert await session.get(VoiceRecording, expired_recording.id) is None  # went with its call
            young = await session.get(VoiceRecording, young_recording.id)
            assert young is not None and young.ready
            taken = await session.get(VoiceRecording, pipeline_recording.id)
            assert taken is not None and not taken.ready and taken.deleted_at is not None
            assert await session.get(MediaFile, unused.id) is None
            assert await session.get(MediaFile, used.id) is not None
        recordings = data_dir / RECORDINGS_DIRECTORY
        assert not (recordings / expired_recording.storage_key).exists()
        assert (recordings / young_recording.storage_key).exists()
        assert (recordings / pipeline_recording.storage_key).exists()  # the core call's recording
        assert not (files_dir(data_dir) / unused.storage_key).exists()
        assert (files_dir(data_dir) / used.storage_key).exists()

        # the uploads API agrees, and a play is a use: the expiry starts again
        async with httpx.AsyncClient(base_url=running.base_url, headers={"Authorization": f"App {token}"}) as http:
            listed = (await http.get("/calls/1/files")).json()
            assert [f["id"] for f in listed["results"]] == [used.id]
        async with sessions() as session, session.begin():
            await resolve_file_path(session=session, account_id=account_id, file_id=used.id, data_dir=data_dir)
        async with sessions() as session:
            touched = await session.get(MediaFile, used.id)
            assert touched is not None and touched.expires_at is not None
            assert touched.expires_at > utcnow() + RETENTION_UNUSED - timedelta(hours=1)
    finally:
        await engine.dispose()
