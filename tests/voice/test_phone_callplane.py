"""The softphone calling `callplane serve` itself: no carrier, no sipp, the way someone tries callplane out.

phone --dial → CALL_RECEIVED at the application's webhook → answer → capture DTMF → play a file uploaded through
/calls/1/files (with the official client) → the phone's digits arrive as DTMF_CAPTURED, the phone hears the file,
and the phone's hangup ends the call with one CALL_FINISHED.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from callplane.media.audio import read_wav, write_wav
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.infobip import calls_api
from callplane.testing.server import running_server
from callplane.testing.sipp import dominant_frequency, free_udp_port, tone
from tests.voice.support import Webhooks

ADMIN_TOKEN = "phone-e2e-admin"
PROMPT_HZ = 1200.0


@pytest.fixture
def webhooks() -> Iterator[Webhooks]:
    receiver = Webhooks()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_the_phone_calls_callplane_and_the_application_handles_the_call(tmp_path: Path, webhooks: Webhooks) -> None:
    sip_port = free_udp_port()
    low = random.randrange(20000, 38000, 2)
    settings = Settings(  # type: ignore[call-arg]
        environment="test", data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, log_level="WARNING",
        fetch_allowed_networks=["127.0.0.1/32"], workers_enabled=True, transcription_enabled=False,
        delivery_poll_seconds=0.1, voice_enabled=True, sip_port=sip_port, rtp_port_min=low, rtp_port_max=low + 200,
    )  # fmt: skip
    with running_server(settings) as server:
        admin = Admin(server.base_url, ADMIN_TOKEN)
        account = admin.network()
        headers = {"Authorization": f"App {account.token}"}
        native_headers = {"Authorization": f"Bearer {account.token}"}
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            configuration = http.post("/calls/1/configurations", json={"name": "try-it"}, headers=headers).json()
            subscribed = http.post(
                f"/v1/voice/configurations/{configuration['id']}/subscriptions",
                json={"url": webhooks.url},
                headers=native_headers,
            )
            assert subscribed.status_code == 201, subscribed.text
            routed = http.post(
                f"/v1/voice/configurations/{configuration['id']}/routes",
                json={"called_user": "try-callplane"},
                headers=native_headers,
            )
            assert routed.status_code == 201, routed.text
            write_wav(tmp_path / "prompt.wav", tone(PROMPT_HZ, 1.5))
            uploaded = calls_api(server.base_url, account.token).upload_calls_audio_file(
                file=str(tmp_path / "prompt.wav")
            )

            heard = tmp_path / "heard.wav"
            phone = _start_phone(tmp_path, sip_port, heard)
            try:
                received = webhooks.wait_for(lambda e: e["type"] == "CALL_RECEIVED")
                call_id = received["callId"]
                assert received["properties"]["call"]["to"] == "try-callplane"
                assert http.post(f"/calls/1/calls/{call_id}/answer", json={}, headers=headers).status_code == 200
                webhooks.wait_for(lambda e: e.get("callId") == call_id and e["type"] == "CALL_ESTABLISHED")
                capture = http.post(
                    f"/calls/1/calls/{call_id}/capture/dtmf",
                    json={"maxLength": 4, "timeout": 20000, "terminator": "#"},
                    headers=headers,
                )
                assert capture.status_code == 200, capture.text
                played = http.post(
                    f"/calls/1/calls/{call_id}/play",
                    json={"content": {"type": "FILE", "fileId": uploaded.id}},
                    headers=headers,
                )
                assert played.status_code == 200, played.text
                captured = webhooks.wait_for(lambda e: e.get("callId") == call_id and e["type"] == "DTMF_CAPTURED")
                assert captured["properties"]["dtmf"] == "42"
                finished = webhooks.wait_for(lambda e: e.get("callId") == call_id and e["type"] == "CALL_FINISHED")
                assert finished["properties"]["callLog"]["hangupSource"] == "ENDPOINT"
                events = _phone_events(phone)
            finally:
                if phone.poll() is None:
                    phone.kill()
                    phone.communicate()
        admin.client.close()
    kinds = [event["event"] for event in events]
    assert kinds.index("answered") < kinds.index("digits_sent") < kinds.index("hangup")
    samples, _ = read_wav(heard)
    left = samples[0::2]
    loud = np.flatnonzero(np.abs(left) > 2000)
    assert len(loud) > 8000, "the uploaded file was not heard by the phone"
    assert abs(dominant_frequency(left[loud[0] : loud[0] + 4000]) - PROMPT_HZ) < 10


def _start_phone(tmp_path: Path, sip_port: int, heard: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "callplane", "phone", "--dial", f"sip:try-callplane@127.0.0.1:{sip_port}",
         "--digits", "42#", "--digits-delay", "3", "--duration", "7", "--record", str(heard),
         "--rtp-ports", "39000-39200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "CALLPLANE_DATA_DIR": str(tmp_path / "phone-data")},
    )  # fmt: skip


def _phone_events(process: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()[-3000:]
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
