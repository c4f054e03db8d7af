"""moto's S3 server as a real process on a loopback port (the S3 REST API over HTTP, no in-process mocking), and
what tests check against it: a bucket's keys, the settings of a server storing in it, the voice files left on disk."""

from __future__ import annotations

import contextlib
import secrets
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx

from callplane.core.recordings.s3 import S3StorageConfig
from callplane.core.voice.files import FILES_DIRECTORY
from callplane.core.voice.queries import RECORDINGS_DIRECTORY
from callplane.testing.processes import serving_process

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

ACCESS_KEY = "callplane-test-key"
SECRET_KEY = "callplane-test-secret"  # noqa: S105 - moto accepts any key
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

    def settings(self, bucket: str, prefix: str) -> dict[str, object]:
        """The Settings fields of a server storing recordings and files in the bucket, under the prefix."""
        return {
            "storage_backend": "s3",
            "storage_s3_bucket": bucket,
            "storage_s3_prefix": prefix,
            "storage_s3_endpoint_url": self.endpoint_url,
            "storage_s3_region": REGION,
            "storage_s3_access_key_id": ACCESS_KEY,
            "storage_s3_secret_access_key": SECRET_KEY,
            "storage_s3_addressing_style": "path",
        }

    def keys(self, bucket: str, prefix: str) -> set[str]:
        """Every key under `<prefix>/` (all pages of the listing)."""
        with contextlib.closing(self.client()) as s3:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
            return {item["Key"] for page in pages for item in page.get("Contents", [])}


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def moto_server(log_dir: Path) -> Iterator[S3Server]:
    """`python -m moto.server` in its own process, its output in `log_dir/moto.log`; stopped on exit."""
    port = free_tcp_port()
    endpoint = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=2)
        except httpx.TransportError:
            return False
        return True

    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with serving_process(args, log_dir / "moto.log", ready, "moto's server"):
        yield S3Server(endpoint)


def local_voice_files(data_dir: Path) -> list[Path]:
    """The voice files (recordings, uploaded files) a server keeps on its own disk under its data directory."""
    directories = (data_dir / RECORDINGS_DIRECTORY, data_dir / FILES_DIRECTORY)
    return [path for directory in directories for path in directory.rglob("*") if path.is_file()]
