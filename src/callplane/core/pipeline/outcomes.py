"""What a call's outcome sends out: webhook events for the tenant's endpoints and the batch API's callback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls.models import Call
from callplane.core.events.types import CALL_PROCESSED, CALL_PROCESSING_FAILED
from callplane.core.webhooks import service as webhooks


def callback_payload(
    call: Call, status: str, error: str | None, results: dict[str, bool] | None = None
) -> dict[str, Any]:
    """The batch document's callback body: {call_id, status, processing_time, error, results, metadata}.

    ``results`` (transcription_available, analytics_available) is set for a completed call only.
    """
    processing_time = round((datetime.now(UTC) - call.received_at).total_seconds(), 1)
    completed = status == "completed"
    return {
        "call_id": call.external_id,
        "status": status,
        "processing_time": processing_time,
        "error": error,
        "results": (results or {"transcription_available": False, "analytics_available": False}) if completed else None,
        "metadata": call.call_metadata or {},
    }


async def notify_outcome(session: AsyncSession, call: Call, event_type: str, payload: dict[str, Any]) -> None:
    """Queue the webhooks of an event and, for a finished call with a callback URL, its callback."""
    await webhooks.enqueue_event(
        session=session, account_id=call.account_id, event_type=event_type, payload=payload, call_id=call.id
    )
    if call.callback_url and event_type in (CALL_PROCESSED, CALL_PROCESSING_FAILED):
        status = "completed" if event_type == CALL_PROCESSED else "failed"
        await webhooks.enqueue_callback(
            session=session,
            account_id=call.account_id,
            call_id=call.id,
            url=call.callback_url,
            payload=callback_payload(call, status, payload.get("error"), payload.get("results")),
            event_type=event_type,
        )
