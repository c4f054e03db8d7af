"""moto's S3 server as a real process on a loopback port, and one store per driver for the contract suite."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from mypy_boto3_s3.client import S3Client

from callplane.core.recordings.s3 import S3RecordingStorage, S3StorageConfig
from callplane.core.recordings.storage import LocalRecordingStorage, RecordingStorage

ACCESS_KEY = "callplane-test-key"
SECRET_KEY = "callplane-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def new_bucket(self) -> str:
        name = f"callplane-{secrets.token_hex(6)}"
        with contextlib.closing(self.client()) as s3:
            s3.create_bucket(Bucket=name)
        return name

    def config(self, bucket: str, **overrides: object) -> S3StorageConfig:
        values: dict[str, object] = {
            "bucket": bucket,
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "addressing_style": "path",
        }
        return S3StorageConfig(**(values | overrides))  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """`python -m moto.server`: the S3 REST API over HTTP, in its own process (no in-process mocking)."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not start (see {log.name})") from None
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordingStorage]:
    if request.param == "local":
        yield LocalRecordingStorage(tmp_path / "store")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    s3 = S3RecordingStorage(server.config(server.new_bucket(), prefix="recordings/"))
    yield s3
    s3.close()
