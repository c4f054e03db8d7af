"""The local-directory recording store: atomic puts, byte ranges, safe keys."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from callplane.core.recordings.errors import InvalidStorageKey, RangeNotSatisfiable, StoredObjectNotFound
from callplane.core.recordings.storage import LocalRecordingStorage, RecordingStorage, validate_key


async def read_all(storage: RecordingStorage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.open_read(key, start=start, end=end)])


@pytest.fixture
def store(tmp_path: Path) -> LocalRecordingStorage:
    return LocalRecordingStorage(tmp_path / "store")


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "blob.mp3"
    path.write_bytes(os.urandom(600_000))
    return path


def test_put_read_size_exists_delete(store: LocalRecordingStorage, blob: Path) -> None:
    assert isinstance(store, RecordingStorage)
    data = blob.read_bytes()

    async def scenario() -> None:
        stored = await store.put_file("acct-1/2024/call-9.mp3", blob)
        assert stored.size_bytes == len(data)
        assert await store.exists("acct-1/2024/call-9.mp3")
        assert await store.size("acct-1/2024/call-9.mp3") == len(data)
        assert await read_all(store, "acct-1/2024/call-9.mp3") == data
        assert await read_all(store, "acct-1/2024/call-9.mp3", 100, 300_100) == data[100:300_100]
        assert await read_all(store, "acct-1/2024/call-9.mp3", 599_990) == data[599_990:]
        assert await read_all(store, "acct-1/2024/call-9.mp3", 10, 10**9) == data[10:]
        with pytest.raises(RangeNotSatisfiable):
            await read_all(store, "acct-1/2024/call-9.mp3", len(data))
        with pytest.raises(RangeNotSatisfiable):
            await read_all(store, "acct-1/2024/call-9.mp3", 10, 5)
        assert await store.delete("acct-1/2024/call-9.mp3")
        assert not await store.delete("acct-1/2024/call-9.mp3")
        assert not await store.exists("acct-1/2024/call-9.mp3")
        with pytest.raises(StoredObjectNotFound):
            await store.size("acct-1/2024/call-9.mp3")
        with pytest.raises(StoredObjectNotFound):
            await read_all(store, "acct-1/2024/call-9.mp3")

    asyncio.run(scenario())


def test_put_replaces_atomically_and_leaves_no_temp_files(
    store: LocalRecordingStorage, blob: Path, tmp_path: Path
) -> None:
    small = tmp_path / "small.mp3"
    small.write_bytes(b"v2")
    asyncio.run(store.put_file("k.mp3", blob))
    asyncio.run(store.put_file("k.mp3", small))
    assert asyncio.run(read_all(store, "k.mp3")) == b"v2"
    assert sorted(p.name for p in store.root.iterdir()) == ["k.mp3"]
    with pytest.raises(FileNotFoundError):
        asyncio.run(store.put_file("k.mp3", tmp_path / "missing"))
    assert sorted(p.name for p in store.root.iterdir()) == ["k.mp3"]


@pytest.mark.parametrize(
    "key", ["", "../x.mp3", "a/../../x", "/etc/passwd", "a//b", ".hidden", "a/.part", "a\\b", "a/b/", "x" * 600, "-rf"]
)
def test_unsafe_keys_are_refused(store: LocalRecordingStorage, key: str) -> None:
    with pytest.raises(InvalidStorageKey):
        validate_key(key)
    with pytest.raises(InvalidStorageKey):
        asyncio.run(store.exists(key))


def test_symlink_out_of_the_root_is_refused(store: LocalRecordingStorage, tmp_path: Path, blob: Path) -> None:
    (store.root / "evil").symlink_to(tmp_path)
    with pytest.raises(InvalidStorageKey, match="outside the storage root"):
        asyncio.run(store.put_file("evil/blob.mp3", blob))
