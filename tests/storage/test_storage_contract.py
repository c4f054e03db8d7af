"""One contract for every RecordingStorage driver: local disk and S3 (moto's server over loopback HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import httpx
import pytest

from callplane.core.recordings.errors import InvalidStorageKey, RangeNotSatisfiable, StoredObjectNotFound
from callplane.core.recordings.s3 import S3RecordingStorage
from callplane.core.recordings.storage import LocalRecordingStorage, RecordingStorage
from callplane.testing.s3 import S3Server

KEY = "acct-1/2024/call-9.mp3"


async def read_all(storage: RecordingStorage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.open_read(key, start=start, end=end)])


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "blob.mp3"
    path.write_bytes(os.urandom(600_000))
    return path


def test_put_read_size_exists_delete(storage: RecordingStorage, blob: Path) -> None:
    assert isinstance(storage, RecordingStorage)
    data = blob.read_bytes()

    async def scenario() -> None:
        stored = await storage.put_file(KEY, blob)
        assert stored.size_bytes == len(data) and stored.key == KEY
        assert await storage.exists(KEY)
        assert await storage.size(KEY) == len(data)
        assert await read_all(storage, KEY) == data
        assert await storage.delete(KEY)
        assert not await storage.delete(KEY)
        assert not await storage.exists(KEY)
        with pytest.raises(StoredObjectNotFound):
            await storage.size(KEY)
        with pytest.raises(StoredObjectNotFound):
            await read_all(storage, KEY)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("start", "end"), [(0, None), (100, 300_100), (599_990, None), (10, 10**9), (0, 1), (599_999, 600_000), (7, 7)]
)
def test_ranges_are_python_slices(storage: RecordingStorage, blob: Path, start: int, end: int | None) -> None:
    data = blob.read_bytes()
    asyncio.run(storage.put_file(KEY, blob))
    assert asyncio.run(read_all(storage, KEY, start, end)) == data[start:end]


@pytest.mark.parametrize(
    ("start", "end"), [(600_000, None), (600_000, 600_010), (10, 5), (-1, None), (700_000, 700_000)]
)
def test_ranges_outside_the_object_are_refused(
    storage: RecordingStorage, blob: Path, start: int, end: int | None
) -> None:
    asyncio.run(storage.put_file(KEY, blob))
    with pytest.raises(RangeNotSatisfiable):
        asyncio.run(read_all(storage, KEY, start, end))


def test_empty_objects_read_as_nothing(storage: RecordingStorage, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    assert asyncio.run(storage.put_file("e.mp3", empty)).size_bytes == 0
    assert asyncio.run(read_all(storage, "e.mp3")) == b""
    assert asyncio.run(read_all(storage, "e.mp3", 0, 10)) == b""
    assert asyncio.run(storage.size("e.mp3")) == 0
    with pytest.raises(RangeNotSatisfiable):
        asyncio.run(read_all(storage, "e.mp3", 1))


def test_put_replaces_and_a_failed_put_leaves_the_old_object(
    storage: RecordingStorage, blob: Path, tmp_path: Path
) -> None:
    small = tmp_path / "small.mp3"
    small.write_bytes(b"v2")
    asyncio.run(storage.put_file("k.mp3", blob))
    asyncio.run(storage.put_file("k.mp3", small))
    assert asyncio.run(read_all(storage, "k.mp3")) == b"v2"
    with pytest.raises(FileNotFoundError):
        asyncio.run(storage.put_file("k.mp3", tmp_path / "missing"))
    assert asyncio.run(read_all(storage, "k.mp3")) == b"v2"


def test_a_multipart_sized_object_round_trips(storage: RecordingStorage, tmp_path: Path) -> None:
    big = tmp_path / "big.mp3"
    data = os.urandom(9 * 1024 * 1024)  # above boto3's 8 MiB multipart threshold
    big.write_bytes(data)
    assert asyncio.run(storage.put_file("big.mp3", big)).size_bytes == len(data)
    assert asyncio.run(read_all(storage, "big.mp3")) == data
    assert (
        asyncio.run(read_all(storage, "big.mp3", 8 * 1024 * 1024 - 5, 8 * 1024 * 1024 + 5))
        == data[8 * 1024 * 1024 - 5 : 8 * 1024 * 1024 + 5]
    )


@pytest.mark.parametrize("key", ["", "../x.mp3", "a/../../x", "/etc/passwd", "a//b", ".hidden", "a\\b", "x" * 600])
def test_unsafe_keys_are_refused_by_every_operation(storage: RecordingStorage, blob: Path, key: str) -> None:
    async def scenario() -> None:
        with pytest.raises(InvalidStorageKey):
            await storage.put_file(key, blob)
        with pytest.raises(InvalidStorageKey):
            await storage.exists(key)
        with pytest.raises(InvalidStorageKey):
            await read_all(storage, key)
        with pytest.raises(InvalidStorageKey):
            await storage.delete(key)

    asyncio.run(scenario())


def test_download_urls(storage: RecordingStorage, blob: Path) -> None:
    """Local disk has none (the API streams); S3 presigns a GET that carries no credentials and honours Range."""
    asyncio.run(storage.put_file(KEY, blob))
    url = asyncio.run(storage.download_url(KEY, expires_s=60, content_type="audio/mpeg"))
    if isinstance(storage, LocalRecordingStorage):
        assert url is None
        return
    assert url is not None and "X-Amz-Signature=" in url
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == blob.read_bytes()
    assert whole.headers["content-type"] == "audio/mpeg"
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == blob.read_bytes()[10:20]
    # moto does not check signatures, so a tampered URL is not tested here (AWS and MinIO refuse one with 403).


def test_s3_prefix_and_server_side_encryption(s3_server: S3Server, blob: Path) -> None:
    bucket = s3_server.new_bucket()
    storage = S3RecordingStorage(s3_server.config(bucket, prefix="/tenant-a/rec/", server_side_encryption="AES256"))
    try:
        asyncio.run(storage.put_file(KEY, blob))
        with contextlib.closing(s3_server.client()) as s3:
            listed = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
            head = s3.head_object(Bucket=bucket, Key=f"tenant-a/rec/{KEY}")
        assert listed == [f"tenant-a/rec/{KEY}"]
        assert head["ServerSideEncryption"] == "AES256"
        assert head["ContentType"] == "audio/mpeg"
    finally:
        storage.close()
