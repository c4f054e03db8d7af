"""Voice files on the shared store: call, dialog and conference recordings, compositions, uploaded media files.

The media engine reads and writes plain files, so each process keeps a working copy under its data directory at the
key's path (`<data_dir>/voice-recordings/<account>/<file>.wav`, `<data_dir>/voice-files/<account>/<file>.<ext>`).
With local disk (the default) that copy IS the stored file and nothing else happens. With a shared store
(`CALLPLANE_STORAGE_BACKEND=s3`) the store holds the file under the same key: the process that wrote a file
`publish`es it (uploads, then drops its copy), a process that needs one `fetch`es it (downloads into its working
copy, kept as a cache), and `delete` removes both. Then media nodes and API processes share nothing but
PostgreSQL and the bucket (docs/storage.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from pathlib import Path

from callplane.core.recordings.errors import StoredObjectNotFound
from callplane.core.recordings.storage import RecordingStorage, validate_key

log = logging.getLogger("callplane.recordings.voice_files")


class VoiceFileStore:
    def __init__(self, data_dir: Path, shared: RecordingStorage | None = None) -> None:
        self.data_dir = data_dir
        self.shared = shared  # None: local disk only (the working copy is the file)
        self._fetching: dict[str, asyncio.Future[Path]] = {}

    def local_path(self, key: str) -> Path:
        """The working copy's path for a key (`voice-recordings/<account>/<file>.wav`)."""
        return self.data_dir.joinpath(*validate_key(key).split("/"))

    async def publish(self, key: str) -> int | None:
        """The file at `local_path(key)` is complete: store it (shared store: upload, then drop the local copy).
        Returns its size (None: there is no such file)."""
        path = self.local_path(key)
        size = _size_of(path)
        if size is None:
            return None
        if self.shared is not None:
            await self.shared.put_file(key, path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return size

    async def publish_path(self, path: Path) -> int | None:
        """`publish` for a file the engine wrote under the data directory (None: no such file). A file elsewhere is
        left where it is (its size is still returned)."""
        try:
            key = path.relative_to(self.data_dir).as_posix()
        except ValueError:
            return _size_of(path)
        return await self.publish(key)

    async def fetch(self, key: str) -> Path:
        """A local path holding the file (shared store: downloaded into the working copy unless already there).
        Raises FileNotFoundError when it is stored nowhere."""
        path = self.local_path(key)
        if self.shared is None or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(key)
            return path
        running = self._fetching.get(key)
        if running is not None:  # one download per key at a time: the others wait for it
            return await asyncio.shield(running)
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._fetching[key] = future
        try:
            await self._download(key, path)
            future.set_result(path)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: nobody may be waiting
            raise
        finally:
            del self._fetching[key]
        return path

    async def _download(self, key: str, path: Path) -> None:
        assert self.shared is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
        try:
            with partial.open("xb") as out:
                async for chunk in self.shared.open_read(key):
                    await asyncio.to_thread(out.write, chunk)
            os.replace(partial, path)
        except StoredObjectNotFound as error:
            raise FileNotFoundError(key) from error
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

    async def exists(self, key: str) -> bool:
        if self.local_path(key).is_file():
            return True
        return self.shared is not None and await self.shared.exists(key)

    async def delete(self, key: str) -> bool:
        """Remove the file everywhere; True when something was removed."""
        removed = False
        with contextlib.suppress(FileNotFoundError):
            self.local_path(key).unlink()
            removed = True
        if self.shared is not None:
            removed = await self.shared.delete(key) or removed
        return removed

    async def delete_all(self, keys: list[str]) -> int:
        removed = 0
        for key in keys:
            try:
                removed += await self.delete(key)
            except Exception as error:  # noqa: BLE001 - the store is away: the row says deleted, the bytes stay (logged)
                log.warning("could not delete a voice file", extra={"fields": {"key": key, "error": repr(error)}})
        return removed


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None
