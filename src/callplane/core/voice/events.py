"""Call events into the durable webhook outbox, one delivery per subscription of the call's configuration.

The core decides *what* happened (`VoiceEvent`, typed by the neutral `VoiceEventType`); the surface that owns the
configuration decides how it looks on the wire and what its subscribers call it (`VoiceEventRenderer`, picked
once when the app is built). Vendor event names (Infobip's CALL_ESTABLISHED, ...) live only in that surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.transcripts.capture import CapturedSpeech
from callplane.core.transcripts.streaming import LiveTranscript
from callplane.core.voice.conference_models import VoiceConferenceParticipant
from callplane.core.voice.conferences import ConferenceView
from callplane.core.voice.configurations import subscribers
from callplane.core.voice.models import VoiceCall, VoiceDialog, VoiceRecording
from callplane.core.voice.schemas import RecordingRequest
from callplane.core.webhooks.models import Delivery, DeliveryKind, DeliveryStatus
from callplane.core.webhooks.outbox import deliveries_written
from callplane.core.webhooks.service import WEBHOOK_MAX_ATTEMPTS
from callplane.db.base import utcnow


class VoiceEventType(StrEnum):
    """What a voice event says happened: the type a delivery row records (docs/decisions.md "LegEvent inside").

    The `voice.` prefix keeps these apart from the account-wide pipeline events (`core/events/types.py`), which
    share the deliveries table.
    """

    CALL_RECEIVED = "voice.call.received"  # an inbound call arrived for the configuration
    CALL_STARTED = "voice.call.started"  # an outbound call's INVITE is on its way (before any answer)
    CALL_RINGING = "voice.call.ringing"
    CALL_EARLY_MEDIA = "voice.call.early_media"  # 183: media before the answer
    CALL_ESTABLISHED = "voice.call.established"
    CALL_FINISHED = "voice.call.finished"  # terminal: ended after a normal course
    CALL_FAILED = "voice.call.failed"  # terminal: busy, no answer, cancelled, failed
    CALL_RECORDING_READY = "voice.call.recording_ready"
    CALL_RECORDING_STARTED = "voice.call.recording_started"  # a call recording's file is being written
    CALL_RECORDING_STOPPED = "voice.call.recording_stopped"  # ... and is complete (CALL_RECORDING_READY follows)
    CALL_RECORDING_FAILED = "voice.call.recording_failed"  # a recording asked for could not start
    CALL_RECORDING_DELETED = "voice.call.recording_deleted"  # a call's recordings (or one file) were deleted
    SAY_FINISHED = "voice.say.finished"  # a call's or a dialog's text-to-speech prompt ended
    PLAY_FINISHED = "voice.play.finished"  # a call's or a dialog's audio prompt ended
    DIGITS_CAPTURED = "voice.digits.captured"  # a DTMF capture ended (digits or a timeout), or a key nothing took
    ACTION_FAILED = "voice.action.failed"  # an accepted action failed later (a prompt that cannot be played)
    DIALOG_CREATED = "voice.dialog.created"
    DIALOG_ESTABLISHED = "voice.dialog.established"
    DIALOG_FINISHED = "voice.dialog.finished"
    DIALOG_FAILED = "voice.dialog.failed"
    DIALOG_RECORDING_READY = "voice.dialog.recording_ready"
    DIALOG_RECORDING_FAILED = "voice.dialog.recording_failed"
    DIALOG_COMPOSITION_FINISHED = "voice.dialog.composition_finished"
    DIALOG_COMPOSITION_FAILED = "voice.dialog.composition_failed"
    CONFERENCE_CREATED = "voice.conference.created"
    CONFERENCE_FINISHED = "voice.conference.finished"  # its last participant left, or it was hung up
    PARTICIPANT_JOINING = "voice.conference.participant_joining"
    PARTICIPANT_JOINED = "voice.conference.participant_joined"
    PARTICIPANT_JOIN_FAILED = "voice.conference.participant_join_failed"  # the call ended before it got in
    PARTICIPANT_REMOVED = "voice.conference.participant_removed"  # removed, or its call ended
    PARTICIPANT_MEDIA_CHANGED = "voice.conference.participant_media_changed"  # muted / deaf changed
    PARTICIPANT_ROLE_CHANGED = "voice.conference.participant_role_changed"
    CONFERENCE_RECORDING_READY = "voice.conference.recording_ready"
    CONFERENCE_RECORDING_FAILED = "voice.conference.recording_failed"
    CONFERENCE_COMPOSITION_FINISHED = "voice.conference.composition_finished"
    CONFERENCE_COMPOSITION_FAILED = "voice.conference.composition_failed"
    # Application transfer: a call's owner (configuration) asks another to take it; that one accepts or rejects.
    CALL_TRANSFER_REQUESTED = "voice.call.transfer_requested"  # to the destination configuration
    CALL_TRANSFER_FINISHED = "voice.call.transfer_finished"  # to the source: accepted, the call moved
    CALL_TRANSFER_FAILED = "voice.call.transfer_failed"  # to the source: rejected, timed out, or the call ended
    # A dialog's party asked (SIP REFER) to hand the other party over to someone else (a blind transfer).
    DIALOG_TRANSFER_REQUESTED = "voice.dialog.transfer_requested"
    DIALOG_TRANSFER_FINISHED = "voice.dialog.transfer_finished"  # the target answered: the other party is theirs
    DIALOG_TRANSFER_FAILED = "voice.dialog.transfer_failed"  # the target could not be reached
    MACHINE_DETECTION_FINISHED = "voice.machine_detection.finished"  # a verdict: HUMAN or MACHINE answered
    MACHINE_DETECTION_FAILED = "voice.machine_detection.failed"  # no verdict (no audio, the call ended first)
    MACHINE_MESSAGE_DETECTION_FINISHED = "voice.machine_detection.message_finished"  # the greeting ended
    MACHINE_MESSAGE_DETECTION_FAILED = "voice.machine_detection.message_failed"  # not found in time
    TRANSCRIPTION = "voice.transcription"  # a live transcript of a call leg: INTERIM or COMPLETE
    SPEECH_CAPTURED = "voice.speech.captured"  # a speech capture ended (key phrase, silence, timeout, hangup)
    MEDIA_STREAM_STARTED = "voice.media_stream.started"  # a call leg's audio streams to a WebSocket server
    MEDIA_STREAM_FINISHED = "voice.media_stream.finished"  # ... stopped (asked, or the call ended)
    MEDIA_STREAM_FAILED = "voice.media_stream.failed"  # could not connect, or the server closed or broke it


TERMINAL_EVENT_TYPES = (VoiceEventType.CALL_FINISHED, VoiceEventType.CALL_FAILED)
# What a subscription may name (in its subscriber's words, `VoiceEventRenderer.name`); dialog events always go.
SUBSCRIBABLE_EVENT_TYPES = (
    VoiceEventType.CALL_RECEIVED,
    VoiceEventType.CALL_STARTED,
    VoiceEventType.CALL_RINGING,
    VoiceEventType.CALL_EARLY_MEDIA,
    VoiceEventType.CALL_ESTABLISHED,
    VoiceEventType.CALL_FINISHED,
    VoiceEventType.CALL_FAILED,
    VoiceEventType.SAY_FINISHED,
    VoiceEventType.PLAY_FINISHED,
    VoiceEventType.DIGITS_CAPTURED,
    VoiceEventType.CALL_RECORDING_READY,
    VoiceEventType.CALL_RECORDING_STARTED,
    VoiceEventType.CALL_RECORDING_STOPPED,
    VoiceEventType.CALL_RECORDING_FAILED,
    VoiceEventType.CALL_RECORDING_DELETED,
    VoiceEventType.ACTION_FAILED,
    VoiceEventType.MACHINE_DETECTION_FINISHED,
    VoiceEventType.MACHINE_DETECTION_FAILED,
    VoiceEventType.MACHINE_MESSAGE_DETECTION_FINISHED,
    VoiceEventType.MACHINE_MESSAGE_DETECTION_FAILED,
    VoiceEventType.CALL_TRANSFER_REQUESTED,
    VoiceEventType.CALL_TRANSFER_FINISHED,
    VoiceEventType.CALL_TRANSFER_FAILED,
    VoiceEventType.TRANSCRIPTION,
    VoiceEventType.SPEECH_CAPTURED,
    VoiceEventType.MEDIA_STREAM_STARTED,
    VoiceEventType.MEDIA_STREAM_FINISHED,
    VoiceEventType.MEDIA_STREAM_FAILED,
)


@dataclass(frozen=True, slots=True)
class VoiceEvent:
    """One thing that happened to a call, with what its event type needs."""

    type: VoiceEventType
    call: VoiceCall
    at: datetime = field(default_factory=utcnow)
    recording: VoiceRecording | None = None
    recording_options: RecordingRequest | None = None  # CALL_RECORDING_STARTED: what the recording was asked to do
    digits: str | None = None  # DIGITS_CAPTURED, SAY_FINISHED and PLAY_FINISHED (the keys that stopped it)
    timed_out: bool = False  # DIGITS_CAPTURED
    played_completely: bool | None = None  # SAY_FINISHED, PLAY_FINISHED
    duration_ms: int | None = None  # how long the prompt played
    action: str | None = None  # ACTION_FAILED: the action that failed
    detail: str | None = None  # ACTION_FAILED, DIALOG_*_FAILED: why
    custom_data: dict[str, str] = field(default_factory=dict)
    # CALL_TRANSFER_*: the transfer, its two configurations, and whose subscribers get the event (else the call's)
    transfer_id: str | None = None
    source_configuration_id: str | None = None
    destination_configuration_id: str | None = None
    to_configuration_id: str | None = None
    error_code: int | None = None  # DIALOG_TRANSFER_FAILED: why the target was not reached (an ErrorCode)
    dialog: VoiceDialog | None = None  # a dialog's event (then `call` is the parent)
    child: VoiceCall | None = None  # a dialog's event: the child call, when there is one
    recordings: list[VoiceRecording] = field(default_factory=list)  # DIALOG_RECORDING_READY, ..._COMPOSITION_FINISHED
    # A conference's event: the room (then `call` is the participant's call, or a stand-in that carries the
    # conference's account and configuration when no call is concerned) and, for a participant event, its session.
    conference: ConferenceView | None = None
    participant: VoiceConferenceParticipant | None = None
    detection_result: str | None = None  # MACHINE_DETECTION_FINISHED, MACHINE_MESSAGE_*: HUMAN | MACHINE
    confidence: dict[str, float] = field(default_factory=dict)  # MACHINE_DETECTION_FINISHED: per class, 0..1
    transcript: LiveTranscript | None = None  # TRANSCRIPTION
    speech: CapturedSpeech | None = None  # SPEECH_CAPTURED
    media_stream_config_id: str | None = None  # MEDIA_STREAM_*: the configuration streamed to (`detail`: why it ended)


class VoiceEventRenderer(Protocol):
    def name(self, event_type: VoiceEventType) -> str:
        """What the subscribers call this event type: the names their subscriptions filter on."""
        ...

    def render(self, event: VoiceEvent) -> dict[str, Any]:
        """The JSON body delivered for this event."""
        ...


def subscribable_names(renderer: VoiceEventRenderer) -> tuple[str, ...]:
    """The event names a subscription may list, in the renderer's words."""
    return tuple(renderer.name(event_type) for event_type in SUBSCRIBABLE_EVENT_TYPES)


async def publish(*, session: AsyncSession, renderer: VoiceEventRenderer, event: VoiceEvent) -> list[Delivery]:
    """Write the event's deliveries in the caller's transaction (sent if and only if it commits)."""
    targets = await subscribers(
        session=session,
        configuration_id=event.to_configuration_id or event.call.configuration_id,
        event_name=renderer.name(event.type),
    )
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
            event_type=event.type.value,  # neutral: the subscriber's name is in the payload
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
