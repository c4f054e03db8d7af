"""A server with its in-process workers running, and a loopback file server with real audio."""

from __future__ import annotations

import functools
import http.server
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass
class Pipeline:
    server: RunningServer
    admin: Admin
    drop_dir: Path


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    data_dir = tmp_path_factory.mktemp(f"pipeline-{request.param}")
    drop_dir = data_dir / "drop"
    drop_dir.mkdir()
    overrides: dict[str, Any] = {
        "workers_enabled": True,
        "worker_poll_seconds": 0.05,
        "job_backoff_base_seconds": 0.05,
        "job_backoff_cap_seconds": 0.2,
        "recording_drop_dir": drop_dir,
        "delivery_poll_seconds": 0.05,
        "delivery_backoff_base_seconds": 0.05,
        "delivery_backoff_cap_seconds": 0.2,
        # One Whisper model directory per test process (assembled once), shared with tests/transcripts.
        "asr_models_dir": tmp_path_factory.getbasetemp() / "asr-models",
    }
    if request.param == "sqlite":
        with running_server(_settings(data_dir, None, **overrides)) as running:
            admin = Admin(running.base_url, ADMIN_TOKEN)
            yield Pipeline(running, admin, drop_dir)
            admin.client.close()
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url, running_server(_settings(data_dir, url, **overrides)) as running:
        admin = Admin(running.base_url, ADMIN_TOKEN)
        yield Pipeline(running, admin, drop_dir)
        admin.client.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class FileServer:
    root: Path
    base_url: str

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    root = tmp_path_factory.mktemp("recordings-origin")
    make_tone(root / "stereo.wav", left_hz=440, right_hz=1000)
    make_tone(root / "mono.wav", left_hz=440, right_hz=None)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def make_tone(path: Path, *, left_hz: int, right_hz: int | None, seconds: float = 3.0) -> None:
    """A real WAV file from ffmpeg: one sine per channel, so channel order can be checked afterwards."""
    inputs = ["-f", "lavfi", "-i", f"sine=frequency={left_hz}:sample_rate=16000:duration={seconds}"]
    if right_hz is None:
        command = ["ffmpeg", "-loglevel", "error", "-y", *inputs, "-ac", "1", str(path)]
    else:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency={right_hz}:sample_rate=16000:duration={seconds}"]
        command = [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            *inputs,
            "-filter_complex",
            "[0:a][1:a]join=inputs=2:channel_layout=stereo[a]",
            "-map",
            "[a]",
            str(path),
        ]
    subprocess.run(command, check=True)


def wait_for_outcome(client: httpx.Client, token: str, call_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        call: dict[str, Any] = client.get(f"/v1/calls/{call_id}", headers={"Authorization": f"Bearer {token}"}).json()
        # The call's outcome commits just before its job is marked finished: wait for both.
        if call["status"] in ("completed", "failed") and all(
            job["status"] in ("succeeded", "failed") for job in call["jobs"]
        ):
            return call
        if time.monotonic() > deadline:
            raise AssertionError(f"call stayed {call['status']}: {call['jobs']}")
        time.sleep(0.05)


def invoca_call(recording_url: str | None = None, **overrides: Any) -> dict[str, Any]:
    """An Invoca single call for campaign 86 with a fresh external id (fields set to None are left out)."""
    call = {
        "external_call_unique_id": secrets.token_hex(6),
        "start_time": 1460404800,
        "destination_phone_number": 9093900003,
        "calling_phone_number": 8779257384,
        "advertiser_campaign_id_from_network": 86,
        "call_direction": "inbound",
        "recording_url": recording_url,
    }
    return {k: v for k, v in (call | overrides).items() if v is not None}
