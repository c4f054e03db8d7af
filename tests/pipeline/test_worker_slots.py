"""A standalone worker with two slots keeps claiming while one job is stuck: short calls posted after a slow one
complete while the slow one is still running, then the slow one completes too."""

from __future__ import annotations

import http.server
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from callplane.testing.factories import Admin
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)
from tests.conftest import ADMIN_TOKEN, _settings
from tests.pipeline.conftest import make_tone, wait_for_outcome


class Origin:
    """Serves /slow.wav only once released (the stuck job) and /quick.wav at once."""

    def __init__(self, payload: bytes) -> None:
        self.slow_requested = threading.Event()
        self.release = threading.Event()
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/slow.wav":
                    origin.slow_requested.set()
                    origin.release.wait(timeout=300)
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(params=["sqlite", "postgresql"])
def quiet_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    """A fresh database with no other test's jobs in it, served by an API process without workers."""
    if request.param == "sqlite":
        with running_server(_settings(tmp_path, None)) as running:
            yield running
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url, running_server(_settings(tmp_path, url)) as running:
        yield running


def _worker(server: RunningServer, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")} | {
        "CALLPLANE_DATA_DIR": str(server.settings.data_dir),
        "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "CALLPLANE_WORKER_CONCURRENCY": "2",
        "CALLPLANE_WORKER_POLL_SECONDS": "0.05",
        "CALLPLANE_TRANSCRIPTION_ENABLED": "false",  # recording -> finalize: the slots are what is tested
        "CALLPLANE_LOG_LEVEL": "WARNING",
    }
    if server.settings.database_url:
        env["CALLPLANE_DATABASE_URL"] = server.settings.database_url
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "callplane", "worker"], env=env, stdout=out, stderr=out)


def _post(client: httpx.Client, token: str, recording_url: str) -> str:
    response = client.post(
        "/api/2022-03-01/calls.json",
        headers={"Authorization": token},
        json={
            "call": {
                "external_call_unique_id": secrets.token_hex(4),
                "start_time": 1460404800,
                "destination_phone_number": 9093900003,
                "calling_phone_number": 8779257384,
                "advertiser_campaign_id_from_network": 86,
                "call_direction": "inbound",
                "recording_url": recording_url,
            }
        },
    )
    assert response.status_code in (200, 201), response.text
    call_id: str = response.json()["cuid"]
    return call_id


def test_short_calls_do_not_wait_behind_a_stuck_one(quiet_server: RunningServer, tmp_path: Path) -> None:
    make_tone(tmp_path / "call.wav", left_hz=440, right_hz=1000)
    origin = Origin((tmp_path / "call.wav").read_bytes())
    threading.Thread(target=origin.server.serve_forever, daemon=True).start()
    admin = Admin(quiet_server.base_url, ADMIN_TOKEN)
    network = admin.network()
    log = tmp_path / "worker.log"
    worker = None
    try:
        with httpx.Client(base_url=quiet_server.base_url, timeout=30) as client:
            slow = _post(client, network.token, f"{origin.base_url}/slow.wav")
            worker = _worker(quiet_server, log)
            assert origin.slow_requested.wait(timeout=120), log.read_text()
            # The slow job holds one of the two slots; the other keeps taking new calls one after another.
            quick = [_post(client, network.token, f"{origin.base_url}/quick.wav") for _ in range(3)]
            for call_id in quick:
                call = wait_for_outcome(client, network.token, call_id, timeout=120)
                assert call["status"] == "completed", (call, log.read_text())
            assert not origin.release.is_set()
            call = client.get(f"/v1/calls/{slow}", headers={"Authorization": f"Bearer {network.token}"}).json()
            assert call["status"] == "processing", call  # still stuck in its recording stage
            origin.release.set()
            call = wait_for_outcome(client, network.token, slow, timeout=120)
            assert call["status"] == "completed", (call, log.read_text())
            [job] = call["jobs"]
            assert job["attempts"] == 1  # never abandoned or claimed twice
    finally:
        origin.release.set()
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)
        origin.server.shutdown()
        origin.server.server_close()
        admin.client.close()
