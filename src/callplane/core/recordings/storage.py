"""Where normalized recordings live: a Protocol, and the local-directory store the embedded setup uses (S3: s3.py).

Keys are ours (e.g. ``<account>/<call>.mp3``) but still validated, because a key that escapes the root is
a file overwrite waiting to happen. Writes go to a dot-prefixed temp file and are renamed into place, so a
reader never sees half a recording and a crash leaves nothing under a real key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from callplane.core.recordings.errors import InvalidStorageKey, RangeNotSatisfiable, StoredObjectNotFound

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_MAX_KEY = 512
_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size_bytes: int


@runtime_checkable
class RecordingStorage(Protocol):
    """A blob store for recordings; S3-compatible and local-directory implementations share it."""

    async def put_file(self, key: str, source: Path) -> StoredObject:
        """Store a copy of ``source`` under ``key``, replacing what was there, all or nothing."""
        ...

    def open_read(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` (Python slice semantics; ``end`` beyond the size is clamped)."""
        ...

    async def size(self, key: str) -> int: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if something was removed (deleting twice is not an error)."""
        ...

    async def download_url(
        self, key: str, *, expires_s: int, content_type: str | None = None, filename: str | None = None
    ) -> str | None:
        """A URL a client may fetch ``key`` from directly for ``expires_s`` seconds; None: serve it through us."""
        ...


def validate_key(key: str) -> str:
    """Accept ``a/b/c.mp3``-style keys of plain segments; refuse traversal, absolute paths and dotfiles."""
    if not key or len(key) > _MAX_KEY:
        raise InvalidStorageKey(f"storage keys must be 1 to {_MAX_KEY} characters")
    segments = key.split("/")
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            raise InvalidStorageKey(
                f"storage key {key!r} has an unsafe segment {segment!r}; "
                "use letters, digits, '.', '_', '-' and not starting with '.' or '-'"
            )
    return key


class LocalRecordingStorage:
    """Recordings as files under one root directory (the embedded default, and tests)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        """The file for ``key``; also refuses keys that would pass through a symlink out of the root."""
        path = self.root.joinpath(*validate_key(key).split("/"))
        if not Path(os.path.realpath(path)).is_relative_to(self.root):
            raise InvalidStorageKey(f"storage key {key!r} leads outside the storage root")
        return path

    async def put_file(self, key: str, source: Path) -> StoredObject:
        path = self.path_for(key)
        size = await asyncio.to_thread(self._put, path, source)
        return StoredObject(key=key, size_bytes=size)

    @staticmethod
    def _put(path: Path, source: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
        try:
            with open(source, "rb") as src, open(tmp, "xb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
                dst.flush()
                os.fsync(dst.fileno())
                size = dst.tell()
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return size

    async def open_read(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise StoredObjectNotFound(f"no stored recording {key!r}") from exc
        try:
            size = os.fstat(handle.fileno()).st_size
            stop = size if end is None else min(end, size)
            empty_read_of_empty_file = start == 0 and size == 0
            if start < 0 or (end is not None and end < start) or (start >= size and not empty_read_of_empty_file):
                raise RangeNotSatisfiable(f"range {start}-{end} is outside {key!r} ({size} bytes)")
            handle.seek(start)
            remaining = stop - start
            while remaining > 0:
                chunk = await asyncio.to_thread(handle.read, min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def size(self, key: str) -> int:
        try:
            return self.path_for(key).stat().st_size
        except FileNotFoundError as exc:
            raise StoredObjectNotFound(f"no stored recording {key!r}") from exc

    async def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    async def delete(self, key: str) -> bool:
        try:
            self.path_for(key).unlink()
        except FileNotFoundError:
            return False
        return True

    async def download_url(
        self, key: str, *, expires_s: int, content_type: str | None = None, filename: str | None = None
    ) -> str | None:
        return None  # files on this machine: only the API can hand them out
