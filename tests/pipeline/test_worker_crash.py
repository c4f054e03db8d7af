"""A standalone worker killed with SIGKILL mid-job: its lease lapses, another worker takes over, and the call
completes exactly once."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callplane.core.calls.models import Call, CallRecording
from callplane.core.jobs import queue
from callplane.core.jobs.models import JobKind
from callplane.core.recordings.storage import LocalRecordingStorage
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.webhooks.models import Delivery
from callplane.db.engine import create_engine, create_session_factory
from callplane.runtime import build_pipeline_worker
from callplane.testing.factories import Admin
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)
from callplane.workers import processing
from tests.conftest import ADMIN_TOKEN, _settings
from tests.pipeline.conftest import FileServer, invoca_call, make_tone, wait_for_outcome


class SlowOrigin:
    """Serves one recording; holds the first request until released, so a worker can be killed mid-fetch."""

    def __init__(self, payload: bytes) -> None:
        self.first_request = threading.Event()
        self.release = threading.Event()
        self.requests = 0
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                origin.requests += 1
                if origin.requests == 1:
                    origin.first_request.set()
                    origin.release.wait(timeout=30)
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
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/call.wav"


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


def _worker(server: RunningServer, log: Path, *, lease_seconds: float) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")} | {
        "CALLPLANE_DATA_DIR": str(server.settings.data_dir),
        "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "CALLPLANE_JOB_LEASE_SECONDS": str(lease_seconds),
        "CALLPLANE_WORKER_POLL_SECONDS": "0.05",
        "CALLPLANE_LOG_LEVEL": "WARNING",
    }
    if server.settings.database_url:
        env["CALLPLANE_DATABASE_URL"] = server.settings.database_url
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "callplane", "worker"], env=env, stdout=out, stderr=out)


def test_killed_worker_is_replaced_and_the_call_completes_once(quiet_server: RunningServer, tmp_path: Path) -> None:
    make_tone(tmp_path / "call.wav", left_hz=440, right_hz=1000)
    origin = SlowOrigin((tmp_path / "call.wav").read_bytes())
    threading.Thread(target=origin.server.serve_forever, daemon=True).start()
    admin = Admin(quiet_server.base_url, ADMIN_TOKEN)
    network = admin.network()
    first = second = None
    try:
        with httpx.Client(base_url=quiet_server.base_url, timeout=30) as client:
            response = client.post(
                "/api/2022-03-01/calls.json",
                headers={"Authorization": network.token},
                json={"call": invoca_call(origin.url)},
            )
            call_id = response.json()["cuid"]
            first = _worker(quiet_server, tmp_path / "worker1.log", lease_seconds=1)  # lapses soon after the kill
            assert origin.first_request.wait(timeout=60), (tmp_path / "worker1.log").read_text()
            first.send_signal(signal.SIGKILL)  # mid-fetch: no cleanup, no goodbye
            first.wait()
            origin.release.set()
            # A longer lease: on a loaded machine a 1 s one lapsed under the second worker too (a third attempt).
            second = _worker(quiet_server, tmp_path / "worker2.log", lease_seconds=10)
            call = wait_for_outcome(client, network.token, call_id, timeout=60)
            assert call["status"] == "completed", call
            [job] = call["jobs"]
            assert job["attempts"] == 2  # the killed attempt counted, the second finished it
            assert [(h["stage"], h["outcome"]) for h in job["history"]] == [
                ("recording", "succeeded"),
                ("transcribe", "succeeded"),
                ("finalize", "succeeded"),
            ]
            assert call["recording"]["channels"] == 2
            time.sleep(0.5)
            assert origin.requests == 2  # fetched once by each worker, never again after completion
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        origin.release.set()
        origin.server.shutdown()
        origin.server.server_close()
        admin.client.close()


@pytest.mark.parametrize("died", ["after claiming the job", "after announcing the call"])
def test_a_run_that_died_early_announces_the_call_exactly_once(
    quiet_server: RunningServer, files: FileServer, died: str
) -> None:
    """`call.received` is queued by the run that moves the job to its first stage, in the same transaction: a run
    killed between its claim and that commit left the announcement to the next run (the fault soak found calls
    without one: the next run was attempt 2, and only attempt 1 announced), and one killed after it must not
    announce twice."""
    admin = Admin(quiet_server.base_url, ADMIN_TOKEN)
    network = admin.network()
    admin.client.close()
    with httpx.Client(base_url=quiet_server.base_url, timeout=30) as client:
        created = client.post(
            "/v1/webhook-endpoints",
            headers={"Authorization": f"Bearer {network.token}"},
            json={"url": "https://127.0.0.3/hook"},  # only queued here: no delivery worker runs
        )
        assert created.status_code == 201, created.text
        response = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token},
            json={"call": invoca_call(files.url("stereo.wav"))},
        )
        call_id = response.json()["cuid"]
    settings = quiet_server.settings.model_copy(update={"transcription_enabled": False})

    async def run() -> list[str]:
        engine = create_engine(settings)
        sessions = create_session_factory(engine)
        worker = build_pipeline_worker(
            settings,
            sessions,
            SecretBox(settings.effective_secret_key()),
            LocalRecordingStorage(settings.data_dir / "recordings"),
        )
        try:
            async with sessions() as session, session.begin():
                [job] = await queue.claim(
                    session, worker_id="dead", kinds=[JobKind.PROCESS_CALL], limit=1, lease_seconds=0.2
                )
            if died == "after announcing the call":
                await processing.mark_processing(worker.env, call_id, job=job, worker_id="dead")
            await asyncio.sleep(0.3)  # the dead run's lease lapses
            assert await worker.run_once() == 1
            async with sessions() as session:
                found = await session.scalars(select(Delivery.event_type).where(Delivery.call_id == call_id))
                return sorted(found)
        finally:
            worker.close()
            await engine.dispose()

    assert asyncio.run(run()) == ["call.processed", "call.received"]


def test_two_runs_of_one_call_at_once_keep_their_scratch_files_apart(
    quiet_server: RunningServer, tmp_path: Path
) -> None:
    """A run whose lease lapsed can still be going when the job's next run starts (under load the worker crash test
    above saw it: the same worker claimed its own job again). Their scratch directories were one per call id, so the
    run that finished first deleted the other's files mid-fetch and a good call failed as "cannot be converted"."""
    make_tone(tmp_path / "call.wav", left_hz=440, right_hz=1000)
    origin = SlowOrigin((tmp_path / "call.wav").read_bytes())
    threading.Thread(target=origin.server.serve_forever, daemon=True).start()
    admin = Admin(quiet_server.base_url, ADMIN_TOKEN)
    network = admin.network()
    admin.client.close()
    with httpx.Client(base_url=quiet_server.base_url, timeout=30) as client:
        call_id = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token},
            json={"call": invoca_call(origin.url)},
        ).json()["cuid"]
    settings = quiet_server.settings

    async def run() -> int:
        engine = create_engine(settings)
        sessions = create_session_factory(engine)
        worker = build_pipeline_worker(
            settings,
            sessions,
            SecretBox(settings.effective_secret_key()),
            LocalRecordingStorage(settings.data_dir / "recordings"),
        )
        try:
            async with sessions() as session:
                call = await session.get(Call, call_id)
            assert call is not None
            held = asyncio.create_task(processing.stage_recording(worker.env, call))  # its fetch waits
            assert await asyncio.to_thread(origin.first_request.wait, 30)
            await processing.stage_recording(worker.env, call)  # the other run, start to end
            # Its cleanup left the waiting run's scratch directory alone (it removed it when both were one).
            assert [p.name.startswith(f"{call_id}-") for p in worker.env.work_dir.iterdir()] == [True]
            origin.release.set()
            await held  # its files were its own: it finds the recording stored and stops
            async with sessions() as session:
                return len((await session.scalars(select(CallRecording).where(CallRecording.call_id == call_id))).all())
        finally:
            origin.release.set()
            worker.close()
            await engine.dispose()

    try:
        assert asyncio.run(run()) == 1
    finally:
        origin.server.shutdown()
        origin.server.server_close()
