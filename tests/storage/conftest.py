"""One store per driver for the contract suite, and a server with its workers storing recordings in moto's S3 server
(tests/conftest.py's `s3_server`; SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callplane.core.recordings.s3 import S3RecordingStorage
from callplane.core.recordings.storage import LocalRecordingStorage, RecordingStorage
from callplane.testing.factories import Admin
from callplane.testing.processes import serving_process
from callplane.testing.s3 import S3Server, free_tcp_port
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)
from tests.conftest import ADMIN_TOKEN, _settings
from tests.pipeline.conftest import make_tone

PREFIX = "node-shared"  # where the pipeline servers below keep their recordings in the bucket


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordingStorage]:
    if request.param == "local":
        yield LocalRecordingStorage(tmp_path / "store")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    s3 = S3RecordingStorage(server.config(server.new_bucket(), prefix="recordings/"))
    yield s3
    s3.close()


@dataclass
class S3Pipeline:
    server: RunningServer
    admin: Admin
    bucket: str
    origin: str  # a loopback HTTP server with stereo.wav


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("s3-pipeline-origin")
    make_tone(root / "stereo.wav", left_hz=440, right_hz=1000)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def s3_pipeline(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, origin: str
) -> Iterator[S3Pipeline]:
    data_dir = tmp_path_factory.mktemp(f"s3-pipeline-{request.param}")
    bucket = s3_server.new_bucket()
    overrides: dict[str, Any] = {
        "workers_enabled": True,
        "worker_poll_seconds": 0.05,
        "job_backoff_base_seconds": 0.05,
        "job_backoff_cap_seconds": 0.2,
        "delivery_poll_seconds": 0.05,
        "transcription_enabled": False,  # the recording stage is what touches storage; ASR is tested elsewhere
        **s3_server.settings(bucket, PREFIX),
        "storage_s3_server_side_encryption": "AES256",
    }
    with contextlib.ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
            url = stack.enter_context(scratch_postgres_database(admin_url))
        running = stack.enter_context(running_server(_settings(data_dir, url, **overrides)))
        admin = Admin(running.base_url, ADMIN_TOKEN)
        stack.callback(admin.client.close)
        yield S3Pipeline(running, admin, bucket, origin)


# Azurite's documented development account (public, in Microsoft's docs): not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_BIN = Path(__file__).resolve().parents[2] / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"


@dataclass(frozen=True)
class Azurite:
    blob_endpoint: str  # http://127.0.0.1:<port>/devstoreaccount1


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Microsoft's Azure Storage emulator (npm package `azurite`, from scripts/install.sh), its blob service only."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"{AZURITE_BIN} is missing: run scripts/install.sh")
    port = free_tcp_port()
    workspace = tmp_path_factory.mktemp("azurite")
    args = [
        str(AZURITE_BIN),
        "--blobHost=127.0.0.1",
        f"--blobPort={port}",
        f"--location={workspace}",
        "--silent",
        "--skipApiVersionCheck",  # the Python SDK may speak a newer service version than this Azurite knows
    ]

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    with serving_process(args, workspace / "azurite.log", ready, "Azurite"):
        yield Azurite(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
