"""Read calls back, always inside the caller's tenant scope."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls.errors import CallNotFound
from callplane.core.calls.models import Call, CallCustomData, CallRecording, CallSignal, CallStatus
from callplane.core.events.models import Event
from callplane.core.events.types import CALL_RETRY_REQUESTED
from callplane.core.jobs import queue
from callplane.core.jobs.models import Job, JobKind
from callplane.core.tenancy.models import Campaign
from callplane.core.tenancy.schemas import Principal
from callplane.core.transcripts import service as transcripts
from callplane.errors import Conflict, InvalidInput


@dataclass
class CallFilters:
    started_after: datetime | None = None
    started_before: datetime | None = None
    received_after: datetime | None = None
    received_before: datetime | None = None
    phone_e164: str | None = None
    campaign: str | None = None  # our id or the campaign's external id
    status: str | None = None
    external_id: str | None = None
    origin: str | None = None


def _scoped(principal: Principal) -> Select[Call]:
    statement = select(Call).where(Call.account_id == principal.account.id)
    if principal.organization_scope is not None:
        statement = statement.where(Call.organization_id.in_(principal.organization_scope))
    return statement


async def get_call(*, session: AsyncSession, principal: Principal, call_id: str) -> Call:
    call = await session.scalar(_scoped(principal).where(Call.id == call_id))
    if call is None:
        raise CallNotFound()
    return call


async def call_details(*, session: AsyncSession, call: Call) -> dict[str, Any]:
    """Everything stored about a call: signals, custom data and its processing jobs."""
    signals = await session.scalars(
        select(CallSignal).where(CallSignal.call_id == call.id).order_by(CallSignal.created_at, CallSignal.id)
    )
    custom = await session.scalars(select(CallCustomData).where(CallCustomData.call_id == call.id))
    jobs = await session.scalars(select(Job).where(Job.call_id == call.id).order_by(Job.created_at))
    campaign = await session.get(Campaign, call.campaign_id) if call.campaign_id else None
    recording = await recording_of(session=session, call=call)
    transcript = await transcripts.transcript_row(session, call.id)
    return {
        "transcript": transcripts.availability(call, transcript),
        "recording": {
            "content_type": recording.content_type,
            "size_bytes": recording.size_bytes,
            "duration_ms": recording.duration_ms,
            "sample_rate": recording.sample_rate,
            "channels": recording.channels,
            "original": recording.original,
            "levels": recording.levels,
            "download_path": f"/v1/calls/{call.id}/recording",
        }
        if recording
        else None,
        "signals": [signal_detail(s) for s in signals],
        "custom_data": [{"name": c.name, "value": c.value, "source": c.source} for c in custom],
        "jobs": [
            {
                "id": j.id,
                "kind": j.kind,
                "stage": j.stage,
                "status": j.status,
                "attempts": j.attempts,
                "max_attempts": j.max_attempts,
                "last_error": j.last_error,
                "history": j.history,
                "run_after": j.run_after,
                "updated_at": j.updated_at,
            }
            for j in jobs
        ],
        "campaign": {"id": campaign.id, "external_id": campaign.external_id, "name": campaign.name}
        if campaign
        else None,
    }


def signal_detail(signal: CallSignal) -> dict[str, Any]:
    """A signal as the native API shows it: submitted (with its partner id) or detected (with its evidence)."""
    return {
        "id": signal.id,
        "name": signal.name,
        "value": signal.value,
        "source": signal.source,
        "partner_unique_id": signal.partner_unique_id,
        "occurred_at": signal.occurred_at,
        "revenue": signal.revenue,
        "evidence": signal.evidence,
        "created_at": signal.created_at,
        "updated_at": signal.updated_at,
    }


def encode_cursor(call: Call) -> str:
    return base64.urlsafe_b64encode(f"{call.received_at.isoformat()}|{call.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        received, call_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(received), call_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not valid") from exc


def filter_calls(statement: Select[Call], *, account_id: str, filters: CallFilters) -> Select[Call]:
    """``statement`` narrowed by the filters (the list's, and search's on top of its own condition)."""
    if filters.started_after:
        statement = statement.where(Call.started_at >= filters.started_after)
    if filters.started_before:
        statement = statement.where(Call.started_at < filters.started_before)
    if filters.received_after:
        statement = statement.where(Call.received_at >= filters.received_after)
    if filters.received_before:
        statement = statement.where(Call.received_at < filters.received_before)
    if filters.phone_e164:
        number = filters.phone_e164
        statement = statement.where(or_(Call.from_e164 == number, Call.to_e164 == number, Call.contact_e164 == number))
    if filters.status:
        statement = statement.where(Call.status == filters.status)
    if filters.external_id:
        statement = statement.where(Call.external_id == filters.external_id)
    if filters.origin:
        statement = statement.where(Call.origin == filters.origin)
    if filters.campaign:
        campaign_ids = select(Campaign.id).where(
            Campaign.account_id == account_id,
            or_(Campaign.id == filters.campaign, Campaign.external_id == filters.campaign),
        )
        statement = statement.where(Call.campaign_id.in_(campaign_ids))
    return statement


async def list_calls(
    *,
    session: AsyncSession,
    principal: Principal,
    filters: CallFilters,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Call], str | None]:
    """Newest first, keyset-paged on (received_at, id) so pages stay stable while calls keep arriving."""
    if not 1 <= limit <= 500:
        raise InvalidInput("limit must be between 1 and 500")
    statement = filter_calls(_scoped(principal), account_id=principal.account.id, filters=filters)
    if cursor:
        received_at, call_id = decode_cursor(cursor)
        statement = statement.where(
            or_(Call.received_at < received_at, and_(Call.received_at == received_at, Call.id < call_id))
        )
    statement = statement.order_by(Call.received_at.desc(), Call.id.desc()).limit(limit + 1)
    calls = list(await session.scalars(statement))
    next_cursor = encode_cursor(calls[limit - 1]) if len(calls) > limit else None
    return calls[:limit], next_cursor


class CallNotRetryable(Conflict):
    """Only a failed call can be retried."""


async def retry_call(*, session: AsyncSession, principal: Principal | None, call_id: str) -> Call:
    """Re-run a failed call from the stage it failed at (an operator passes principal=None)."""
    call = await (
        get_call(session=session, principal=principal, call_id=call_id) if principal else _get_any(session, call_id)
    )
    if call.status != CallStatus.FAILED:
        raise CallNotRetryable(f"only a failed call can be retried; this one is {call.status}")
    await queue.requeue_failed(session, call_id=call.id)
    call.status = CallStatus.QUEUED
    call.status_reason = None
    call.updated_at = datetime.now(UTC)
    session.add(
        Event(
            account_id=call.account_id,
            call_id=call.id,
            type=CALL_RETRY_REQUESTED,
            payload={"call_id": call.id, "external_id": call.external_id},
        )
    )
    await session.flush()
    return call


async def queue_for_processing(
    session: AsyncSession, call: Call, recording_key: str, *, max_attempts: int | None = None
) -> str:
    """Send a call with a stored recording (a key in the recording storage) through post-call processing, in the
    caller's transaction: the call goes back to queued and gets a processing job; the job's id."""
    call.recording_filename = recording_key
    call.status = CallStatus.QUEUED
    call.status_reason = None
    call.updated_at = datetime.now(UTC)
    return await queue.enqueue(
        session, kind=JobKind.PROCESS_CALL, account_id=call.account_id, call_id=call.id, max_attempts=max_attempts
    )


async def _get_any(session: AsyncSession, call_id: str) -> Call:
    call = await session.get(Call, call_id)
    if call is None:
        raise CallNotFound()
    return call


async def recording_of(*, session: AsyncSession, call: Call) -> CallRecording | None:
    return await session.scalar(select(CallRecording).where(CallRecording.call_id == call.id))
