"""Call events into the durable webhook outbox, one delivery per subscription of the call's configuration.

The core decides *what* happened (`VoiceEvent`); the surface that owns the configuration decides how it
looks on the wire (`VoiceEventRenderer`, given to `VoiceService` when the app is built).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.voice.configurations import subscribers
from callplane.core.voice.models import VoiceCall, VoiceDialog, VoiceRecording
from callplane.core.webhooks.models import Delivery, DeliveryKind, DeliveryStatus
from callplane.core.webhooks.outbox import deliveries_written
from callplane.core.webhooks.service import WEBHOOK_MAX_ATTEMPTS
from callplane.db.base import utcnow

TERMINAL_EVENT_TYPES = ("CALL_FINISHED", "CALL_FAILED")


@dataclass(frozen=True, slots=True)
class VoiceEvent:
    """One thing that happened to a call, with what its event type needs."""

    type: str
    call: VoiceCall
    at: datetime = field(default_factory=utcnow)
    recording: VoiceRecording | None = None
    digits: str | None = None  # DTMF_CAPTURED, PLAY_FINISHED (capturedDtmf)
    timed_out: bool = False  # DTMF_CAPTURED
    played_completely: bool | None = None  # SAY_FINISHED, PLAY_FINISHED
    duration_ms: int | None = None  # how long the prompt played
    action: str | None = None  # ERROR: the action that failed
    detail: str | None = None  # ERROR: why
    custom_data: dict[str, str] = field(default_factory=dict)
    dialog: VoiceDialog | None = None  # DIALOG_* (then `call` is the parent)
    child: VoiceCall | None = None  # DIALOG_*: the child call, when there is one
    recordings: list[VoiceRecording] = field(default_factory=list)  # DIALOG_RECORDING_READY: the files


class VoiceEventRenderer(Protocol):
    def render(self, event: VoiceEvent) -> dict[str, Any]:
        """The JSON body delivered for this event."""
        ...


async def publish(*, session: AsyncSession, renderer: VoiceEventRenderer, event: VoiceEvent) -> list[Delivery]:
    """Write the event's deliveries in the caller's transaction (sent if and only if it commits)."""
    targets = await subscribers(session=session, configuration_id=event.call.configuration_id, event_type=event.type)
    if not targets:
        return []
    body = renderer.render(event)
    now = utcnow()
    deliveries = [
        Delivery(
            account_id=event.call.account_id,
            kind=DeliveryKind.WEBHOOK,
            endpoint_id=endpoint.id,
            call_id=event.call.id,
            url=endpoint.url,
            event_type=event.type,
            payload=body,
            status=DeliveryStatus.PENDING,
            attempts=0,
            max_attempts=WEBHOOK_MAX_ATTEMPTS,
            next_attempt_at=now,
        )
        for _subscription, endpoint in targets
    ]
    session.add_all(deliveries)
    await session.flush()
    deliveries_written(session)
    return deliveries
