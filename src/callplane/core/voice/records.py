"""The rows a voice call writes beside its own: the core Call it shares its id with (what the native API,
search and the post-call pipeline see), kept in step with the voice call's state, and its post-call job.

Functions take the caller's session and never commit (the live plane's unit of work does).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls.models import Call, CallOrigin, CallStatus
from callplane.core.calls.service import queue_for_processing
from callplane.core.voice.models import CallsConfiguration, VoiceCall, VoiceRecording
from callplane.db.base import utcnow


def call_rows(call: VoiceCall) -> list[Any]:
    """The core Call (same id) first, so it is inserted before the voice row that references it."""
    contact = call.endpoint_user
    core = Call(
        id=call.id,
        account_id=call.account_id,
        origin=CallOrigin.VOICE,
        external_id=call.external_id,
        direction=call.direction.lower(),
        from_e164=_e164(call.from_user),
        to_e164=_e164(call.to_user),
        contact_e164=_e164(contact),
        started_at=call.created_at,
        status=CallStatus.PROCESSING,
        extras={"voice_state": call.state, "voice_configuration_id": call.configuration_id},
    )
    return [core, call]


async def touch_core(session: AsyncSession, call: VoiceCall, *, ended: bool = False) -> None:
    """The core Call follows the voice call's state (and closes with it)."""
    core = await session.get(Call, call.id)
    if core is None:
        return
    core.extras = {**core.extras, "voice_state": call.state}
    core.updated_at = utcnow()
    if ended:
        core.ended_at = call.ended_at
        core.status = CallStatus.COMPLETED
        core.status_reason = call.state
        start = call.answered_at or call.created_at
        if call.ended_at is not None and call.answered_at is not None:
            core.duration_ms = max(0, round((call.ended_at - start).total_seconds() * 1000))


async def queue_post_call(session: AsyncSession, call: VoiceCall, *, max_attempts: int | None = None) -> None:
    """When the configuration asks, the call's last recording goes through the post-call pipeline."""
    configuration = await session.get(CallsConfiguration, call.configuration_id)
    if configuration is None or not configuration.post_call_processing:
        return
    recording = await session.scalar(
        select(VoiceRecording)
        .where(VoiceRecording.call_id == call.id, VoiceRecording.ready.is_(True))
        .order_by(VoiceRecording.started_at.desc())
        .limit(1)
    )
    core = await session.get(Call, call.id)
    if recording is None or core is None:
        return
    await queue_for_processing(session, core, recording.storage_key, max_attempts=max_attempts)


def _e164(value: str | None) -> str | None:
    """A number that fits the core's E.164 columns, else nothing (a SIP user stays on the voice row)."""
    if value and value.startswith("+") and value[1:].isdigit() and len(value) <= 20:
        return value
    return None
