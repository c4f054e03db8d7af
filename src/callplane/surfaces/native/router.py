"""The native read API: what was stored, with its processing status."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from callplane.core import search
from callplane.core.calls import service as calls
from callplane.core.calls.errors import CallNotFound
from callplane.core.calls.models import Call
from callplane.core.ingestion.phones import PhoneNumberError, normalize_phone
from callplane.core.transcripts import service as transcripts
from callplane.errors import InvalidInput
from callplane.surfaces.context import ContextDep, SessionDep
from callplane.surfaces.http import JsonRoute
from callplane.surfaces.native.auth import PrincipalDep

router = APIRouter(route_class=JsonRoute, prefix="/v1", tags=["Calls"])


def call_summary(call: Call) -> dict[str, Any]:
    return {
        "id": call.id,
        "external_id": call.external_id,
        "origin": call.origin,
        "status": call.status,
        "status_reason": call.status_reason,
        "direction": call.direction,
        "from": call.from_e164,
        "to": call.to_e164,
        "contact_number": call.contact_e164,
        "campaign_id": call.campaign_id,
        "organization_id": call.organization_id,
        "started_at": call.started_at,
        "ended_at": call.ended_at,
        "duration_ms": call.duration_ms,
        "language_code": call.language_code,
        "recording_url": call.recording_url,
        "recording_filename": call.recording_filename,
        "recording_auth_config_id": call.recording_auth_config_id,
        "callback_url": call.callback_url,
        "agent": call.agent,
        "customer": call.customer,
        "metadata": call.call_metadata,
        "extras": call.extras,
        "received_at": call.received_at,
        "updated_at": call.updated_at,
    }


@router.get("/calls")
async def list_calls(
    principal: PrincipalDep,
    session: SessionDep,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
    received_after: datetime | None = None,
    received_before: datetime | None = None,
    phone_number: Annotated[str | None, Query(description="matches the calling, called or contact number")] = None,
    campaign: Annotated[str | None, Query(description="campaign id or its id from network")] = None,
    status: str | None = None,
    external_id: str | None = None,
    origin: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    q: Annotated[str | None, Query(max_length=search.MAX_QUERY_CHARS, description=search.QUERY_SYNTAX)] = None,
) -> dict[str, Any]:
    """Calls newest first; pass `next_cursor` back as `cursor` for the next page.

    With `q`, only the calls whose transcript or details match it (the other filters still apply, same order and
    paging), each with a `search` object: `match_count` and up to 5 `matches`, each `{source: "transcript" |
    "details", start_s, end_s, speaker, snippet}`. `start_s` is the second into the recording where the match was
    said (null for a details match); `snippet` is HTML-escaped text with each match inside `<mark>…</mark>`.
    """
    phone = None
    if phone_number:
        try:
            phone = normalize_phone(phone_number)
        except PhoneNumberError:
            phone = phone_number.strip()
    for value in (started_after, started_before, received_after, received_before):
        if value is not None and value.tzinfo is None:
            raise HTTPException(422, "times must carry a UTC offset or Z")
    filters = calls.CallFilters(
        started_after=started_after,
        started_before=started_before,
        received_after=received_after,
        received_before=received_before,
        phone_e164=phone,
        campaign=campaign,
        status=status,
        external_id=external_id,
        origin=origin,
    )
    try:
        if q is not None and q.strip():
            page = await search.search_calls(
                session,
                account_id=principal.account.id,
                organization_scope=principal.organization_scope,
                query=q,
                filters=filters,
                limit=limit,
                cursor=cursor,
            )
            return {
                "calls": [call_summary(hit.call) | {"search": hit.to_dict()} for hit in page.hits],
                "next_cursor": page.next_cursor,
            }
        found, next_cursor = await calls.list_calls(
            session=session, principal=principal, filters=filters, limit=limit, cursor=cursor
        )
    except InvalidInput as error:
        raise HTTPException(422, error.message) from error
    return {"calls": [call_summary(call) for call in found], "next_cursor": next_cursor}


@router.get("/calls/{call_id}")
async def get_call(call_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    """One call with its signals, custom data and processing jobs (stages and attempts)."""
    try:
        call = await calls.get_call(session=session, principal=principal, call_id=call_id)
    except CallNotFound as error:
        raise HTTPException(404, error.message) from error
    return call_summary(call) | await calls.call_details(session=session, call=call)


@router.post("/calls/{call_id}/retry")
async def retry_call(call_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    """Re-run a failed call from the stage it failed at."""
    try:
        async with session.begin():
            call = await calls.retry_call(session=session, principal=principal, call_id=call_id)
    except CallNotFound as error:
        raise HTTPException(404, error.message) from error
    except calls.CallNotRetryable as error:
        raise HTTPException(409, error.message) from error
    return call_summary(call)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@router.get("/calls/{call_id}/recording", response_model=None)
async def get_recording(
    call_id: str, request: Request, principal: PrincipalDep, session: SessionDep, context: ContextDep
) -> Response:
    """The normalized recording (8 kHz MP3); honours a single `Range: bytes=a-b` request."""
    try:
        call = await calls.get_call(session=session, principal=principal, call_id=call_id)
    except CallNotFound as error:
        raise HTTPException(404, error.message) from error
    recording = await calls.recording_of(session=session, call=call)
    if recording is None:
        raise HTTPException(404, "the call has no processed recording yet")
    # Object storage: the client downloads from the bucket itself (Range included); local disk has no such URL.
    expires_s = context.settings.storage_presigned_download_seconds
    if expires_s:
        url = await context.storage.download_url(
            recording.storage_key, expires_s=expires_s, content_type=recording.content_type
        )
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "private, no-store"})
    size = recording.size_bytes
    headers = {"Accept-Ranges": "bytes", "Content-Type": recording.content_type}
    start, end, status = 0, size, 200
    wanted = request.headers.get("range")
    if wanted:
        match = _RANGE.match(wanted.strip())
        if match is None or (not match[1] and not match[2]):
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        if match[1]:
            start = int(match[1])
            end = min(size, int(match[2]) + 1) if match[2] else size
        else:  # a suffix: the last N bytes
            start = max(0, size - int(match[2]))
        if start >= size or end <= start:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    body = context.storage.open_read(recording.storage_key, start=start, end=end)
    return StreamingResponse(body, status_code=status, headers=headers)


@router.get("/calls/{call_id}/transcript", response_model=None)
async def get_transcript(
    call_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    output_format: Annotated[str, Query(alias="format", description="json, or text for one line per turn")] = "json",
    transcript_format: Annotated[
        str | None, Query(description="caller, agent, caller_agent_block or caller_agent_conversation (plain text)")
    ] = None,
) -> Response | dict[str, Any]:
    """The call's transcript: JSON (segments with speaker, times, words), or plain text in a named format.

    404 says why there is none: not processed yet, processing failed, or transcription skipped.
    """
    try:
        call = await calls.get_call(session=session, principal=principal, call_id=call_id)
        row = transcripts.require_transcript(call, await transcripts.transcript_row(session, call.id))
        wanted = transcript_format or (None if output_format == "json" else output_format)
        if wanted is None:
            return transcripts.transcript_document(call, row)
        return PlainTextResponse(transcripts.transcript_text(row, wanted))
    except (CallNotFound, transcripts.TranscriptNotAvailable) as error:
        raise HTTPException(404, error.message) from error
    except InvalidInput as error:
        raise HTTPException(422, error.message) from error
