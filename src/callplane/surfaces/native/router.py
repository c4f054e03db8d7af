"""The native read API: what was stored, with its processing status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from callplane.core.calls import service as calls
from callplane.core.calls.errors import CallNotFound
from callplane.core.calls.models import Call
from callplane.core.ingestion.phones import PhoneNumberError, normalize_phone
from callplane.errors import InvalidInput
from callplane.surfaces.context import SessionDep
from callplane.surfaces.native.auth import PrincipalDep

router = APIRouter(prefix="/v1", tags=["Calls"])


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
) -> dict[str, Any]:
    """Calls newest first; pass `next_cursor` back as `cursor` for the next page."""
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
