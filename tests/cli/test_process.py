"""The real `callplane` command: serve on its defaults, demo-setup, and no accepted call lost to kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CALLPLANE = [sys.executable, "-m", "callplane"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")}
    env["CALLPLANE_DATA_DIR"] = str(data_dir)
    env["CALLPLANE_LOG_LEVEL"] = "WARNING"
    if database_url:
        env["CALLPLANE_DATABASE_URL"] = database_url
    return env


def _start(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    log = Path(env["CALLPLANE_DATA_DIR"]).parent / "serve.log"
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [*CALLPLANE, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("callplane serve did not become ready")


@pytest.fixture
def database_url(server: object, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The same backend as the session's server fixture: None for SQLite, a scratch database for PostgreSQL."""
    backend = request.node.callspec.params["server"]
    if backend == "sqlite":
        yield None
        return
    from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database

    with scratch_postgres_database(os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)) as url:
        yield url


def test_quick_start_and_kill_minus_nine(tmp_path: Path, database_url: str | None) -> None:
    env = _environment(tmp_path / "data", database_url)
    port = _free_port()
    process = _start(env, port)
    base = f"http://127.0.0.1:{port}"
    demo = json.loads(subprocess.run([*CALLPLANE, "demo-setup"], env=env, check=True, capture_output=True).stdout)
    token = demo["invoca"]["oauth_token"]
    campaign = demo["invoca"]["advertiser_campaign_id_from_network"]
    accepted: set[str] = set()
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            assert client.get("/docs").status_code == 200
            assert "/api/{version}/calls.json" in client.get("/openapi.json").json()["paths"]
            for index in range(40):
                response = client.post(
                    "/api/2022-03-01/calls.json",
                    headers={"Authorization": token},
                    json={
                        "call": {
                            "external_call_unique_id": f"k{index}",
                            "start_time": "2022-03-25 09:31:29",
                            "destination_phone_number": 9093900003,
                            "calling_phone_number": 8779257384,
                            "advertiser_campaign_id_from_network": campaign,
                            "call_direction": "inbound",
                            "recording_url": "https://127.0.0.3/r.wav",
                        }
                    },
                )
                assert response.status_code == 201
                accepted.add(response.json()["cuid"])
            batch = client.post(
                "/partner/ingest/batch-call",
                headers=demo["batch"]["headers"],
                json={
                    "data": [
                        {
                            "call": {
                                "id": "b1",
                                "recording_url": "https://127.0.0.3/b1.mp3",
                                "start_time": "2023-01-01T10:00:00Z",
                                "end_time": "2023-01-01T10:30:00Z",
                                "contact_number": "+1234567890",
                            },
                            "agent": {"id": "a1"},
                            "customer": {"id": "c1"},
                        }
                    ]
                },
            )
            assert batch.json() == {"success": True}
    finally:
        process.send_signal(signal.SIGKILL)  # no clean shutdown: what was answered must already be on disk
        process.wait()
    process = _start(env, port)
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            stored = client.get(
                "/v1/calls", params={"limit": 500}, headers={"Authorization": f"Bearer {token}"}
            ).json()["calls"]
            assert {c["id"] for c in stored} == accepted
            partner_calls = client.get(
                "/v1/calls", headers={"Authorization": demo["batch"]["headers"]["Authorization"]}
            )
            assert [c["external_id"] for c in partner_calls.json()["calls"]] == ["b1"]
    finally:
        process.terminate()
        process.wait(timeout=30)
