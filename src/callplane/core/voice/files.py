"""Uploaded audio files that calls play (`/calls/1/files`): checked with PyAV, stored under the data directory.

`resolve_file_path()` is what a play action uses to turn an account's file id into a path the engine plays.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import av
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.recordings.audio import RecordingFormat, sniff_format
from callplane.core.voice.trunk_models import MediaFile
from callplane.db.base import new_id, utcnow
from callplane.errors import InvalidInput, NotFound

FILES_DIRECTORY = "voice-files"
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
RETENTION_UNUSED = timedelta(days=90)  # Infobip removes a file 90 days after its last use
_FORMATS = {RecordingFormat.WAV: "WAV", RecordingFormat.MP3: "MP3"}
_SNIFF_BYTES = 64 * 1024


class MediaFileNotFound(NotFound):
    """File not found."""


class MediaFileRejected(InvalidInput):
    """The file is not a playable WAV or MP3 audio file."""


class MediaFileTooLarge(InvalidInput):
    """The file is larger than the upload limit."""


@dataclass(frozen=True, slots=True)
class ProbedAudio:
    file_format: str  # "WAV" | "MP3"
    duration_ms: int


def files_dir(data_dir: Path) -> Path:
    """Where uploaded files live: `<data_dir>/voice-files/<account id>/<file id>.<ext>`."""
    return data_dir / FILES_DIRECTORY


def probe_audio(path: Path) -> ProbedAudio:
    """The format and duration of a WAV or MP3 with at least one decodable audio frame."""
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    kind = sniff_format(head)
    if kind not in _FORMATS:
        raise MediaFileRejected("the file is not WAV or MP3 audio (the supported formats)")
    try:
        with av.open(str(path), format=kind.value, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise MediaFileRejected("the file has no audio stream")
            stream = container.streams.audio[0]
            samples = 0
            rate = stream.codec_context.sample_rate or 8000
            for frame in container.decode(stream):
                samples += frame.samples
                rate = frame.sample_rate or rate
    except (av.FFmpegError, ValueError) as exc:
        raise MediaFileRejected(f"the {_FORMATS[kind]} file cannot be decoded: {exc}") from exc
    if samples == 0:
        raise MediaFileRejected("the file holds no audio")
    return ProbedAudio(_FORMATS[kind], round(samples * 1000 / rate))


async def store_media_file(
    *,
    session: AsyncSession,
    account_id: str,
    name: str,
    upload: Path,
    data_dir: Path,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> MediaFile:
    """Check an uploaded file and move it into the account's store; the row is flushed, not committed.

    If the caller's transaction fails, the stored file is an orphan nobody references (harmless); the
    opposite order could leave a row without its file.
    """
    file_id = new_id()
    probed, size, storage_key = await asyncio.to_thread(
        _check_and_place, upload, files_dir(data_dir), f"{account_id}/{file_id}", max_bytes
    )
    created_at = utcnow()
    media_file = MediaFile(
        id=file_id,
        account_id=account_id,
        name=(name or f"{file_id}.{probed.file_format.lower()}")[:255],
        file_format=probed.file_format,
        size_bytes=size,
        duration_ms=probed.duration_ms,
        storage_key=storage_key,
        created_at=created_at,
        expires_at=created_at + RETENTION_UNUSED,
    )
    session.add(media_file)
    await session.flush()
    return media_file


def _check_and_place(upload: Path, root: Path, stem: str, max_bytes: int) -> tuple[ProbedAudio, int, str]:
    """Size and content checks, then a copy into the store; returns the probe, the size and the storage key."""
    size = upload.stat().st_size
    if size > max_bytes:
        raise MediaFileTooLarge(f"the file is {size} bytes; the limit is {max_bytes}")
    if size == 0:
        raise MediaFileRejected("the file is empty")
    probed = probe_audio(upload)
    storage_key = f"{stem}.{probed.file_format.lower()}"
    _move_into_place(upload, root / storage_key)
    return probed, size, storage_key


def _move_into_place(upload: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    shutil.copyfile(upload, partial)
    os.replace(partial, target)


async def get_media_file(*, session: AsyncSession, account_id: str, file_id: str) -> MediaFile:
    media_file = await session.get(MediaFile, file_id)
    if media_file is None or media_file.account_id != account_id:
        raise MediaFileNotFound()
    return media_file


async def list_media_files(
    *, session: AsyncSession, account_id: str, offset: int = 0, limit: int = 20
) -> tuple[list[MediaFile], int]:
    condition = MediaFile.account_id == account_id
    total = await session.scalar(select(func.count()).select_from(MediaFile).where(condition)) or 0
    rows = await session.scalars(
        select(MediaFile).where(condition).order_by(MediaFile.created_at, MediaFile.id).offset(offset).limit(limit)
    )
    return list(rows), total


async def delete_media_file(*, session: AsyncSession, account_id: str, file_id: str) -> MediaFile:
    """Delete the row; the caller removes the bytes with `discard_stored_file` once the delete is committed."""
    media_file = await get_media_file(session=session, account_id=account_id, file_id=file_id)
    await session.delete(media_file)
    await session.flush()
    return media_file


def discard_stored_file(media_file: MediaFile, data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (files_dir(data_dir) / media_file.storage_key).unlink()


def media_file_key(media_file: MediaFile) -> str:
    """The file's key in the voice file store (core/recordings/voice_files.py), relative to the data dir."""
    return f"{FILES_DIRECTORY}/{media_file.storage_key}"


async def use_media_file(*, session: AsyncSession, account_id: str, file_id: str) -> MediaFile:
    """An account's file, for a play action (MediaFileNotFound otherwise); its bytes are fetched from the voice
    file store by `media_file_key`. A play is a use: the 90-day unused expiry starts again (the caller commits)."""
    media_file = await get_media_file(session=session, account_id=account_id, file_id=file_id)
    media_file.expires_at = utcnow() + RETENTION_UNUSED
    return media_file


async def resolve_file_path(*, session: AsyncSession, account_id: str, file_id: str, data_dir: Path) -> Path:
    """The stored audio of an account's file, for a play action (MediaFileNotFound otherwise).

    A play is a use: the file's 90-day unused expiry starts again (the caller commits)."""
    media_file = await get_media_file(session=session, account_id=account_id, file_id=file_id)
    path = files_dir(data_dir) / media_file.storage_key
    if not path.is_file():
        raise MediaFileNotFound("the file's audio is missing from storage")
    media_file.expires_at = utcnow() + RETENTION_UNUSED
    return path
