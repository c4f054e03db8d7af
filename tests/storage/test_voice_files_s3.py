"""Voice files on the shared bucket (CALLPLANE_STORAGE_BACKEND=s3, moto's server): uploaded media files, call
recordings, dialog recordings per leg and their composition go to the bucket under the store's prefix and leave no
file on the process's disk; downloads (also ranged), plays and compositions fetch them back; deletes remove them
from the bucket. The control plane runs on the in-memory engine (tests/live), on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import secrets
import wave
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from callplane.testing.engine import FakeCallEngine, FarEnd
from callplane.testing.factories import Admin
from callplane.testing.s3 import S3Server, local_voice_files
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from tests.live.support import CallsApp, LiveServer, Receiver, calls_app, eventually, live_settings, receiving, serving

PREFIX = "voice-shared"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def s3_live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server
) -> Iterator[tuple[LiveServer, str]]:
    data_dir = tmp_path_factory.mktemp(f"voice-s3-{request.param}")
    bucket = s3_server.new_bucket()
    with contextlib.ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
            url = stack.enter_context(scratch_postgres_database(admin_url))
        settings = live_settings(data_dir, url).model_copy(update=s3_server.settings(bucket, PREFIX))
        fake = FakeCallEngine()
        base_url = stack.enter_context(serving(settings, fake))
        admin = Admin(base_url, settings.admin_token or "")
        stack.callback(admin.client.close)
        yield LiveServer(base_url, fake, admin, settings), bucket


@pytest.fixture
def app(s3_live: tuple[LiveServer, str]) -> Iterator[tuple[CallsApp, Receiver]]:
    live, _ = s3_live
    with receiving() as receiver, calls_app(live, receiver, live.admin.network()) as application:
        yield application, receiver


def _keys(s3_server: S3Server, bucket: str) -> set[str]:
    return s3_server.keys(bucket, PREFIX)


def _local_files(live: LiveServer) -> list[Path]:
    return local_voice_files(live.settings.data_dir)


def _wav(seconds: float) -> bytes:
    buffer = BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.zeros(int(8000 * seconds), dtype=np.int16).tobytes())
    return buffer.getvalue()


def _wipe_working_copies(live: LiveServer) -> None:
    """What another process would see: nothing on its own disk (only the bucket has the files)."""
    for path in _local_files(live):
        path.unlink()


def test_call_recordings_and_uploaded_files_live_in_the_bucket(
    s3_live: tuple[LiveServer, str], app: tuple[CallsApp, Receiver], s3_server: S3Server
) -> None:
    live, bucket = s3_live
    calls, receiver = app
    uploaded = calls.http.post("/calls/1/files", files={"file": ("prompt.wav", _wav(0.2), "audio/wav")})
    assert uploaded.status_code == 200, uploaded.text
    file_id = uploaded.json()["id"]
    [file_key] = [key for key in _keys(s3_server, bucket) if key.endswith(f"/{file_id}.wav")]
    account_id = file_key.split("/")[2]
    assert file_key == f"{PREFIX}/voice-files/{account_id}/{file_id}.wav"
    assert _local_files(live) == []  # the upload went to the bucket, not to this disk

    callee = f"alice-{secrets.token_hex(3)}"
    live.fake.route(callee, FarEnd(ring_after_s=0.0, answer_after_s=0.05))
    call_id = calls.create_call(callee, endpoint={"type": "SIP", "username": callee, "host": "127.0.0.1:5999"})
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    recording = {"recording": {"recordingType": "AUDIO", "channels": "STEREO"}}
    assert calls.http.post(f"/calls/1/calls/{call_id}/start-recording", json=recording).status_code == 200
    played = calls.http.post(f"/calls/1/calls/{call_id}/play", json={"content": {"type": "FILE", "fileId": file_id}})
    assert played.status_code == 200, played.text  # the node fetched the file from the bucket to play it
    assert receiver.wait_type(call_id, "PLAY_FINISHED")["properties"]["playedCompletely"] is True
    assert calls.http.post(f"/calls/1/calls/{call_id}/stop-recording").status_code == 200
    [recorded] = receiver.wait_type(call_id, "CALL_RECORDING_READY")["properties"]["recording"]["files"]
    key = f"{PREFIX}/voice-recordings/{account_id}/{recorded['id']}.wav"
    assert key in _keys(s3_server, bucket)
    _wipe_working_copies(live)
    assert _local_files(live) == []  # READY means stored: the engine's file went to the bucket

    download = calls.http.get(f"/calls/1/recordings/files/{recorded['id']}")
    assert download.status_code == 200 and download.content[:4] == b"RIFF"
    with contextlib.closing(s3_server.client()) as s3:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == download.content
    with wave.open(BytesIO(download.content)) as wav:
        assert wav.getnchannels() == 2
    ranged = calls.http.get(f"/calls/1/recordings/files/{recorded['id']}", headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == b"RIFF"
    # a recording replayed into the call is fetched from the bucket too
    _wipe_working_copies(live)
    replay = {"content": {"type": "RECORDING", "fileId": recorded["id"]}}
    assert calls.http.post(f"/calls/1/calls/{call_id}/play", json=replay).status_code == 200
    eventually(lambda: len([e for e in receiver.events(call_id) if e["type"] == "PLAY_FINISHED"]) == 2, "replayed")

    assert calls.http.delete(f"/calls/1/recordings/files/{recorded['id']}").status_code == 200
    assert calls.http.delete(f"/calls/1/files/{file_id}").status_code == 200
    assert not {key, file_key} & _keys(s3_server, bucket)
    assert calls.http.get(f"/calls/1/recordings/files/{recorded['id']}").status_code == 404
    assert calls.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    assert receiver.single_terminal(call_id)["type"] == "CALL_FINISHED"


def test_dialog_recordings_and_their_composition_live_in_the_bucket(
    s3_live: tuple[LiveServer, str], app: tuple[CallsApp, Receiver], s3_server: S3Server
) -> None:
    live, bucket = s3_live
    calls, receiver = app
    called, agent = f"dialog-{secrets.token_hex(3)}", f"agent-{secrets.token_hex(3)}"
    calls.route(called)
    live.fake.route(agent, FarEnd())
    live.fake.incoming(called)
    parent_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    child = {"endpoint": {"type": "SIP", "username": agent, "host": "127.0.0.1:5999"}}
    created = calls.http.post("/calls/1/dialogs", json={"parentCallId": parent_id, "childCallRequest": child})
    assert created.status_code == 201, created.text
    dialog_id = created.json()["id"]
    receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_ESTABLISHED")

    per_leg = {"recordingType": "AUDIO"}
    assert calls.http.post(f"/calls/1/dialogs/{dialog_id}/start-recording", json=per_leg).status_code == 200
    assert calls.http.post(f"/calls/1/dialogs/{dialog_id}/stop-recording").status_code == 200
    ready = receiver.wait_for(
        lambda e: e.get("dialogId") == dialog_id and "callId" not in e and e["type"] == "DIALOG_RECORDING_READY"
    )
    legs = [file["id"] for entry in ready["properties"]["recording"]["callRecordings"] for file in entry["files"]]
    assert len(legs) == 2
    leg_keys = {key for key in _keys(s3_server, bucket) for leg in legs if key.endswith(f"/{leg}.wav")}
    assert len(leg_keys) == 2 and all(key.startswith(f"{PREFIX}/voice-recordings/") for key in leg_keys)
    _wipe_working_copies(live)  # the composition must fetch the legs from the bucket

    compose = {"deleteCallRecordings": True, "multiChannel": {"enabled": True}}
    assert calls.http.post(f"/calls/1/recordings/dialogs/{dialog_id}/compose", json=compose).status_code == 200
    finished = receiver.wait_for(
        lambda e: e.get("dialogId") == dialog_id and "callId" not in e and e["type"] == "DIALOG_COMPOSITION_FINISHED"
    )
    [stereo] = finished["properties"]["recording"]["composedFiles"]
    keys = _keys(s3_server, bucket)
    assert any(key.startswith(f"{PREFIX}/voice-recordings/") and key.endswith(f"/{stereo['id']}.wav") for key in keys)
    assert not leg_keys & keys  # deleteCallRecordings: the legs are gone from the bucket
    assert _local_files(live) == []
    download = calls.http.get(f"/calls/1/recordings/files/{stereo['id']}")
    assert download.status_code == 200
    with wave.open(BytesIO(download.content)) as wav:
        assert wav.getnchannels() == 2
    assert calls.http.post(f"/calls/1/dialogs/{dialog_id}/hangup").status_code == 200
    receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_FINISHED")
