"""CALLPLANE_STORAGE_* pick and configure the recording store; local disk stays the default."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callplane.core.recordings.s3 import S3RecordingStorage
from callplane.core.recordings.storage import LocalRecordingStorage
from callplane.runtime import build_recording_storage
from callplane.settings import Settings
from callplane.testing.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server


def test_local_disk_is_the_default(tmp_path: Path) -> None:
    storage = build_recording_storage(Settings(data_dir=tmp_path))
    assert isinstance(storage, LocalRecordingStorage) and storage.root == (tmp_path / "recordings").resolve()


def test_s3_needs_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="CALLPLANE_STORAGE_S3_BUCKET"):
        build_recording_storage(Settings(data_dir=tmp_path, storage_backend="s3"))


def test_s3_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, blob_file: Path
) -> None:
    bucket = s3_server.new_bucket()
    for name, value in {
        "STORAGE_BACKEND": "s3",
        "STORAGE_S3_BUCKET": bucket,
        "STORAGE_S3_PREFIX": "env-prefix",
        "STORAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "STORAGE_S3_REGION": REGION,
        "STORAGE_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "STORAGE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "STORAGE_S3_ADDRESSING_STYLE": "path",
        "STORAGE_S3_SERVER_SIDE_ENCRYPTION": "AES256",
    }.items():
        monkeypatch.setenv(f"CALLPLANE_{name}", value)
    settings = Settings(data_dir=tmp_path)
    assert SECRET_KEY not in repr(settings)
    storage = build_recording_storage(settings)
    assert isinstance(storage, S3RecordingStorage)
    assert SECRET_KEY not in repr(storage.config)
    try:
        asyncio.run(storage.put_file("a/b.mp3", blob_file))
        assert storage.client.head_object(Bucket=bucket, Key="env-prefix/a/b.mp3")["ServerSideEncryption"] == "AES256"
    finally:
        storage.close()


@pytest.fixture
def blob_file(tmp_path: Path) -> Path:
    path = tmp_path / "b.mp3"
    path.write_bytes(b"\xff\xfb" + bytes(1000))
    return path
