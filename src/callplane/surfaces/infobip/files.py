"""`/calls/1/files`: upload (multipart `file`), list, get and delete audio files that calls can play."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile as StarletteUploadFile

from callplane.core.voice import files as service
from callplane.surfaces.context import ContextDep
from callplane.surfaces.http import json_response
from callplane.surfaces.infobip.auth import VoicePrincipalDep
from callplane.surfaces.infobip.common import PageDep
from callplane.surfaces.infobip.common import paged as paged_body
from callplane.surfaces.infobip.errors import InfobipError, InfobipRoute, bad_request
from callplane.surfaces.infobip.files_mapping import file_out

router = APIRouter(route_class=InfobipRoute, prefix="/calls/1/files", tags=["Infobip Calls: files"])

MULTIPART_OVERHEAD_BYTES = 64 * 1024
COPY_CHUNK_BYTES = 256 * 1024


def _spool(source: BinaryIO, directory: Path, max_bytes: int) -> Path | None:
    """Copy the upload to a file of our own; None (and nothing left behind) once it passes the limit."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="upload-", dir=directory)
    size = 0
    with os.fdopen(handle, "wb") as target:
        while chunk := source.read(COPY_CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                break
            target.write(chunk)
    if size > max_bytes:
        Path(name).unlink()
        return None
    return Path(name)


def _too_large(max_bytes: int) -> InfobipError:
    return InfobipError(400, f"The file is larger than {max_bytes} bytes.", validation_errors={"file": ["too large"]})


@router.post("")
async def upload_calls_audio_file(request: Request, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    """Upload a WAV or MP3 as multipart field `file` (200 `CallsFile`).

    The form is parsed here, not by a declared `UploadFile`, so an over-long body is refused by its
    Content-Length before anything is spooled to disk.
    """
    max_bytes = service.DEFAULT_MAX_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD_BYTES:
        raise _too_large(max_bytes)
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, StarletteUploadFile):
            raise bad_request("multipart field 'file' with the audio is required", field="file")
        data_dir = context.settings.ensure_data_dir()
        spooled = await asyncio.to_thread(_spool, upload.file, data_dir / "work", max_bytes)
        filename = Path((upload.filename or "").replace("\x00", "")).name  # NUL: no PostgreSQL text holds one
    if spooled is None:
        raise _too_large(max_bytes)
    try:
        async with context.sessions() as session, session.begin():
            media_file = await service.store_media_file(
                session=session,
                account_id=principal.account.id,
                name=filename,
                upload=spooled,
                data_dir=data_dir,
                max_bytes=max_bytes,
            )
            if context.voice is not None:  # a shared store takes it before the row commits (voice_files.py)
                await context.voice.store.publish(service.media_file_key(media_file))
    except service.MediaFileRejected as error:
        raise bad_request(error.message, field="file") from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(spooled.unlink)
    return json_response(file_out(media_file))


@router.get("")
async def get_calls_files(principal: VoicePrincipalDep, context: ContextDep, page: PageDep) -> Response:
    async with context.sessions() as session:
        rows, total = await service.list_media_files(
            session=session, account_id=principal.account.id, offset=page.offset, limit=page.size
        )
    return json_response(paged_body([file_out(row) for row in rows], page=page, total=total))


@router.get("/{file_id}")
async def get_calls_file(file_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    async with context.sessions() as session:
        media_file = await service.get_media_file(session=session, account_id=principal.account.id, file_id=file_id)
    return json_response(file_out(media_file))


@router.delete("/{file_id}")
async def delete_calls_file(file_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    """Delete a file and return it (200 `CallsFile`); its bytes go once the delete is committed."""
    async with context.sessions() as session, session.begin():
        media_file = await service.delete_media_file(session=session, account_id=principal.account.id, file_id=file_id)
    if context.voice is not None:  # local disk and the shared store (core/recordings/voice_files.py)
        await context.voice.store.delete_all([service.media_file_key(media_file)])
    else:
        service.discard_stored_file(media_file, context.settings.data_dir)
    return json_response(file_out(media_file))
