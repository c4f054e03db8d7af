"""Core voice rows -> the official client's JSON (`Call`, `CallLog`, `CallRecording`, events of §1.7).

Pure functions; the event renderer is what `VoiceService` is given to write webhook bodies.
"""

from __future__ import annotations

from typing import Any

from callplane.core.transcripts.capture import CapturedSpeech
from callplane.core.transcripts.streaming import LiveTranscript
from callplane.core.voice.events import VoiceEvent, VoiceEventType
from callplane.core.voice.models import CallsConfiguration, EndpointType, VoiceCall, VoiceDialog, VoiceRecording
from callplane.core.voice.states import ERROR_DESCRIPTIONS, ErrorCode
from callplane.surfaces.infobip.common import infobip_time


def endpoint_json(call: VoiceCall) -> dict[str, Any]:
    """The far end. A SIP endpoint without a trunk (an inbound caller, or a `host` we dialed) has sipTrunkId ""."""
    if call.endpoint_type == EndpointType.PHONE:
        return {"type": "PHONE", "phoneNumber": call.endpoint_user}
    endpoint: dict[str, Any] = {"type": "SIP", "username": call.endpoint_user, "sipTrunkId": call.trunk_id or ""}
    if call.endpoint_host:
        endpoint["host"] = call.endpoint_host
    return endpoint


def _ring_duration_s(call: VoiceCall) -> int | None:
    if call.ringing_at is None:
        return None
    until = call.answered_at or call.ended_at
    return None if until is None else max(0, round((until - call.ringing_at).total_seconds()))


def configuration_json(configuration: CallsConfiguration) -> dict[str, Any]:
    return {
        "id": configuration.id,
        "name": configuration.name,
        "postCallProcessing": configuration.post_call_processing,
    }


def call_json(call: VoiceCall) -> dict[str, Any]:
    """`Call`."""
    return {
        "id": call.id,
        "endpoint": endpoint_json(call),
        "from": call.from_user,
        "to": call.to_user,
        "direction": call.direction,
        "state": call.state,
        "media": {
            "audio": {"muted": False, "userMuted": False, "deaf": False},
            "video": {"camera": False, "screenShare": False, "blind": False},
        },
        "startTime": infobip_time(call.created_at),
        "answerTime": infobip_time(call.answered_at),
        "endTime": infobip_time(call.ended_at),
        "parentCallId": call.parent_call_id,
        "ringDuration": _ring_duration_s(call),
        "callsConfigurationId": call.configuration_id,
        "customData": call.custom_data or {},
        "dialogId": call.dialog_id,
        "externalId": call.external_id,
        "conferenceId": call.conference_id,
    }


def error_code_json(code: int | None) -> dict[str, Any] | None:
    if code is None:
        return None
    known = ErrorCode(code) if code in ErrorCode._value2member_map_ else None
    if known is None:
        return {"id": code, "name": "UNKNOWN", "description": "Unknown error"}
    return {"id": code, "name": known.name, "description": ERROR_DESCRIPTIONS[known]}


def call_log_json(call: VoiceCall) -> dict[str, Any]:
    """`CallLog` (history and CALL_FINISHED / CALL_FAILED)."""
    duration = None
    if call.answered_at is not None and call.ended_at is not None:
        duration = max(0, round((call.ended_at - call.answered_at).total_seconds()))
    return {
        "callId": call.id,
        "endpoint": endpoint_json(call),
        "from": call.from_user,
        "to": call.to_user,
        "direction": call.direction,
        "state": call.state,
        "startTime": infobip_time(call.created_at),
        "answerTime": infobip_time(call.answered_at),
        "endTime": infobip_time(call.ended_at),
        "parentCallId": call.parent_call_id,
        "ringDuration": _ring_duration_s(call),
        "callsConfigurationIds": [call.configuration_id],
        "conferenceIds": [call.conference_id] if call.conference_id else [],
        "duration": duration,
        "hasCameraVideo": False,
        "hasScreenshareVideo": False,
        "errorCode": error_code_json(call.error_code),
        "customData": call.custom_data or {},
        "dialogId": call.dialog_id,
        "hangupSource": call.hangup_source,
        "externalId": call.external_id,
    }


def recording_file_json(recording: VoiceRecording) -> dict[str, Any]:
    """`CallsRecordingFile`."""
    return {
        "id": recording.id,
        "name": recording.name,
        "fileFormat": "WAV",
        "size": recording.size_bytes,
        "creationTime": infobip_time(recording.ended_at or recording.started_at),
        "duration": None if recording.duration_ms is None else round(recording.duration_ms / 1000),
        "startTime": infobip_time(recording.started_at),
        "endTime": infobip_time(recording.ended_at),
        "location": "HOSTED",
        "customData": recording.custom_data or {},
    }


def call_recording_json(call: VoiceCall, recordings: list[VoiceRecording]) -> dict[str, Any]:
    """`CallRecording`."""
    return {
        "callId": call.id,
        "endpoint": endpoint_json(call),
        "direction": call.direction,
        "files": [recording_file_json(recording) for recording in recordings],
        "status": "SUCCESSFUL",
        "callsConfigurationId": call.configuration_id,
        "startTime": infobip_time(min((r.started_at for r in recordings), default=call.created_at)),
        "endTime": infobip_time(max((r.ended_at for r in recordings if r.ended_at), default=call.ended_at)),
    }


def dialog_json(dialog: VoiceDialog, parent: VoiceCall | None, child: VoiceCall | None) -> dict[str, Any]:
    """`CallsDialogResponse`."""
    return {
        "id": dialog.id,
        "callsConfigurationId": dialog.configuration_id,
        "state": dialog.state,
        "startTime": infobip_time(dialog.created_at),
        "establishTime": infobip_time(dialog.established_at),
        "endTime": infobip_time(dialog.ended_at),
        "parentCall": call_json(parent) if parent is not None else None,
        "childCall": call_json(child) if child is not None else None,
    }


def dialog_recording_json(
    dialog: VoiceDialog, recordings: list[VoiceRecording], calls: dict[str, VoiceCall]
) -> dict[str, Any]:
    """`CallsDialogRecordingResponse`: composed files (both parties mixed) and per-call files (`CallRecording`)."""
    per_call: dict[str, list[VoiceRecording]] = {}
    for recording in recordings:
        if not recording.composed:
            per_call.setdefault(recording.call_id, []).append(recording)
    return {
        "dialogId": dialog.id,
        "callsConfigurationId": dialog.configuration_id,
        "composedFiles": [recording_file_json(r) for r in recordings if r.composed],
        "callRecordings": [
            call_recording_json(calls[call_id], files) for call_id, files in per_call.items() if call_id in calls
        ],
        "startTime": infobip_time(min((r.started_at for r in recordings), default=dialog.created_at)),
        "endTime": infobip_time(max((r.ended_at for r in recordings if r.ended_at), default=dialog.ended_at)),
    }


def dialog_log_json(dialog: VoiceDialog) -> dict[str, Any]:
    """`CallsDialogLogResponse`."""
    duration = None
    if dialog.established_at is not None and dialog.ended_at is not None:
        duration = max(0, round((dialog.ended_at - dialog.established_at).total_seconds()))
    return {
        "dialogId": dialog.id,
        "callsConfigurationId": dialog.configuration_id,
        "state": dialog.state,
        "startTime": infobip_time(dialog.created_at),
        "establishTime": infobip_time(dialog.established_at),
        "endTime": infobip_time(dialog.ended_at),
        "parentCallId": dialog.parent_call_id,
        "childCallId": dialog.child_call_id,
        "duration": duration,
        "errorCode": error_code_json(dialog.error_code),
        "hangupSource": dialog.hangup_source,
    }


def transcription_json(transcript: LiveTranscript) -> dict[str, Any]:
    """TRANSCRIPTION's properties: one result, INTERIM or COMPLETE."""
    return {
        "results": [
            {
                "type": transcript.kind.value,
                "startTime": infobip_time(transcript.start),
                "endTime": infobip_time(transcript.end),
                "text": transcript.text,
                "confidence": transcript.confidence,
            }
        ]
    }


def speech_captured_json(speech: CapturedSpeech) -> dict[str, Any]:
    """SPEECH_CAPTURED's properties."""
    return {
        "fullText": speech.text,
        "matchedKeyPhrase": speech.matched_key_phrase,
        "confidence": speech.confidence,
        "terminationReason": speech.reason.value,
    }


# Infobip's name for each of callplane's voice event types (§1.7): the body's `type` and what subscriptions list.
EVENT_NAMES = {
    VoiceEventType.CALL_RECEIVED: "CALL_RECEIVED",
    VoiceEventType.CALL_STARTED: "CALL_STARTED",
    VoiceEventType.CALL_RINGING: "CALL_RINGING",
    VoiceEventType.CALL_EARLY_MEDIA: "CALL_PRE_ESTABLISHED",
    VoiceEventType.CALL_ESTABLISHED: "CALL_ESTABLISHED",
    VoiceEventType.CALL_FINISHED: "CALL_FINISHED",
    VoiceEventType.CALL_FAILED: "CALL_FAILED",
    VoiceEventType.CALL_RECORDING_READY: "CALL_RECORDING_READY",
    VoiceEventType.CALL_RECORDING_STARTED: "CALL_RECORDING_STARTED",
    VoiceEventType.CALL_RECORDING_STOPPED: "CALL_RECORDING_STOPPED",
    VoiceEventType.CALL_RECORDING_FAILED: "CALL_RECORDING_FAILED",
    VoiceEventType.CALL_RECORDING_DELETED: "CALL_RECORDING_DELETED",
    VoiceEventType.SAY_FINISHED: "SAY_FINISHED",
    VoiceEventType.PLAY_FINISHED: "PLAY_FINISHED",
    VoiceEventType.DIGITS_CAPTURED: "DTMF_CAPTURED",
    VoiceEventType.ACTION_FAILED: "ERROR",
    VoiceEventType.DIALOG_CREATED: "DIALOG_CREATED",
    VoiceEventType.DIALOG_ESTABLISHED: "DIALOG_ESTABLISHED",
    VoiceEventType.DIALOG_FINISHED: "DIALOG_FINISHED",
    VoiceEventType.DIALOG_FAILED: "DIALOG_FAILED",
    VoiceEventType.DIALOG_RECORDING_READY: "DIALOG_RECORDING_READY",
    VoiceEventType.DIALOG_RECORDING_FAILED: "DIALOG_RECORDING_FAILED",
    VoiceEventType.DIALOG_COMPOSITION_FINISHED: "DIALOG_COMPOSITION_FINISHED",
    VoiceEventType.DIALOG_COMPOSITION_FAILED: "DIALOG_COMPOSITION_FAILED",
    VoiceEventType.TRANSCRIPTION: "TRANSCRIPTION",
    VoiceEventType.SPEECH_CAPTURED: "SPEECH_CAPTURED",
    VoiceEventType.CONFERENCE_CREATED: "CONFERENCE_CREATED",
    VoiceEventType.CONFERENCE_FINISHED: "CONFERENCE_FINISHED",
    VoiceEventType.PARTICIPANT_JOINING: "PARTICIPANT_JOINING",
    VoiceEventType.PARTICIPANT_JOINED: "PARTICIPANT_JOINED",
    VoiceEventType.PARTICIPANT_JOIN_FAILED: "PARTICIPANT_JOIN_FAILED",  # the guide spells PARTICIPANT_JOINED_FAILED
    VoiceEventType.PARTICIPANT_REMOVED: "PARTICIPANT_REMOVED",
    VoiceEventType.PARTICIPANT_MEDIA_CHANGED: "PARTICIPANT_MEDIA_CHANGED",  # the guide: PARTICIPANT_MEDIA_CHANGE
    VoiceEventType.PARTICIPANT_ROLE_CHANGED: "PARTICIPANT_ROLE_CHANGED",
    VoiceEventType.CONFERENCE_RECORDING_READY: "CONFERENCE_RECORDING_READY",
    VoiceEventType.CONFERENCE_RECORDING_FAILED: "CONFERENCE_RECORDING_FAILED",
    VoiceEventType.CONFERENCE_COMPOSITION_FINISHED: "CONFERENCE_COMPOSITION_FINISHED",
    VoiceEventType.CONFERENCE_COMPOSITION_FAILED: "CONFERENCE_COMPOSITION_FAILED",
    VoiceEventType.CALL_TRANSFER_REQUESTED: "APPLICATION_TRANSFER_REQUESTED",
    VoiceEventType.CALL_TRANSFER_FINISHED: "APPLICATION_TRANSFER_FINISHED",
    VoiceEventType.CALL_TRANSFER_FAILED: "APPLICATION_TRANSFER_FAILED",
    VoiceEventType.DIALOG_TRANSFER_REQUESTED: "DIALOG_TRANSFER_REQUESTED",
    VoiceEventType.DIALOG_TRANSFER_FINISHED: "DIALOG_TRANSFER_FINISHED",
    VoiceEventType.DIALOG_TRANSFER_FAILED: "DIALOG_TRANSFER_FAILED",
    VoiceEventType.MACHINE_DETECTION_FINISHED: "MACHINE_DETECTION_FINISHED",
    VoiceEventType.MACHINE_DETECTION_FAILED: "MACHINE_DETECTION_FAILED",
    VoiceEventType.MACHINE_MESSAGE_DETECTION_FINISHED: "MACHINE_MESSAGE_DETECTION_FINISHED",
    VoiceEventType.MACHINE_MESSAGE_DETECTION_FAILED: "MACHINE_MESSAGE_DETECTION_FAILED",
    VoiceEventType.MEDIA_STREAM_STARTED: "MEDIA_STREAM_STARTED",
    VoiceEventType.MEDIA_STREAM_FINISHED: "MEDIA_STREAM_FINISHED",
    VoiceEventType.MEDIA_STREAM_FAILED: "MEDIA_STREAM_FAILED",
}
_DIALOG_EVENTS = frozenset(kind for kind in VoiceEventType if kind.name.startswith("DIALOG_"))
_DIALOG_FILES = (VoiceEventType.DIALOG_RECORDING_READY, VoiceEventType.DIALOG_COMPOSITION_FINISHED)
_DIALOG_ENDS = (VoiceEventType.DIALOG_FINISHED, VoiceEventType.DIALOG_FAILED)
_DIALOG_FILE_FAILURES = (VoiceEventType.DIALOG_RECORDING_FAILED, VoiceEventType.DIALOG_COMPOSITION_FAILED)
_CALL_ENDS = (VoiceEventType.CALL_FINISHED, VoiceEventType.CALL_FAILED)
_CALL_LIFECYCLE = (
    VoiceEventType.CALL_RECEIVED,
    VoiceEventType.CALL_STARTED,
    VoiceEventType.CALL_RINGING,
    VoiceEventType.CALL_EARLY_MEDIA,
    VoiceEventType.CALL_ESTABLISHED,
)

_MACHINE_DETECTION_RESULTS = (
    VoiceEventType.MACHINE_DETECTION_FINISHED,
    VoiceEventType.MACHINE_MESSAGE_DETECTION_FINISHED,
)
_MACHINE_DETECTION_FAILURES = (
    VoiceEventType.MACHINE_DETECTION_FAILED,
    VoiceEventType.MACHINE_MESSAGE_DETECTION_FAILED,
)


_CALL_RECORDING_STEPS = (
    VoiceEventType.CALL_RECORDING_STARTED,
    VoiceEventType.CALL_RECORDING_STOPPED,
    VoiceEventType.CALL_RECORDING_FAILED,
    VoiceEventType.CALL_RECORDING_DELETED,
)


def _recording_step(event: VoiceEvent) -> dict[str, Any]:
    """The client's `CallRecordingStarted/Stopped/Failed/DeletedProperties`."""
    file_id = event.recording.id if event.recording is not None else None
    if event.type == VoiceEventType.CALL_RECORDING_STARTED:
        options = event.recording_options
        return {
            "recordingType": "AUDIO",
            "fileId": file_id,
            "maxDuration": options.max_duration_s if options else None,
            "maxSilence": options.max_silence_s if options else None,
            "beep": options.beep if options else False,
            "filePrefix": options.file_prefix if options else None,
        }
    if event.type == VoiceEventType.CALL_RECORDING_STOPPED:
        recording = event.recording
        return {
            "startTime": infobip_time(recording.started_at if recording else None),
            "endTime": infobip_time(recording.ended_at if recording else None),
            "fileId": file_id,
        }
    if event.type == VoiceEventType.CALL_RECORDING_FAILED:
        return {"reason": event.detail, "fileId": file_id}
    return {}


def application_transfer_json(event: VoiceEvent) -> dict[str, Any]:
    """APPLICATION_TRANSFER_REQUESTED `{sourceCallsConfigurationId, sourceApplicationId, transferId, call,
    locationId}`; _FINISHED adds the destination's ids; _FAILED has the ids and `transferId` only. An application
    here is its calls configuration (the same id); `locationId` (Infobip's data centre) is null."""
    source = {
        "sourceCallsConfigurationId": event.source_configuration_id,
        "sourceApplicationId": event.source_configuration_id,
    }
    destination = {
        "destinationCallsConfigurationId": event.destination_configuration_id,
        "destinationApplicationId": event.destination_configuration_id,
    }
    if event.type == VoiceEventType.CALL_TRANSFER_REQUESTED:
        return source | {"transferId": event.transfer_id, "call": call_json(event.call), "locationId": None}
    if event.type == VoiceEventType.CALL_TRANSFER_FINISHED:
        return (
            source | destination | {"transferId": event.transfer_id, "call": call_json(event.call), "locationId": None}
        )
    return source | destination | {"transferId": event.transfer_id}


_DIALOG_TRANSFER_EVENTS = (
    VoiceEventType.DIALOG_TRANSFER_REQUESTED,
    VoiceEventType.DIALOG_TRANSFER_FINISHED,
    VoiceEventType.DIALOG_TRANSFER_FAILED,
)
_TRANSFER_EVENTS = (
    VoiceEventType.CALL_TRANSFER_REQUESTED,
    VoiceEventType.CALL_TRANSFER_FINISHED,
    VoiceEventType.CALL_TRANSFER_FAILED,
)


def _properties(event: VoiceEvent) -> dict[str, Any]:
    call = event.call
    kind = event.type
    if kind in _TRANSFER_EVENTS:
        return application_transfer_json(event)
    if kind in _DIALOG_TRANSFER_EVENTS:  # `{transferorCall, referTo}` (the reference's body); failures say why
        transfer: dict[str, Any] = {"transferorCall": call_json(call), "referTo": event.detail}
        if kind == VoiceEventType.DIALOG_TRANSFER_FAILED:
            transfer["errorCode"] = error_code_json(event.error_code)
        return transfer
    if event.dialog is not None and kind in _DIALOG_FILES:
        calls = {c.id: c for c in (call, event.child) if c is not None}
        return {"recording": dialog_recording_json(event.dialog, event.recordings, calls)}
    if event.dialog is not None and kind in _DIALOG_EVENTS:
        properties: dict[str, Any] = {"dialog": dialog_json(event.dialog, call, event.child)}
        if kind in _DIALOG_ENDS:
            properties["errorCode"] = error_code_json(event.dialog.error_code)
            properties["hangupSource"] = event.dialog.hangup_source
        if kind in _DIALOG_FILE_FAILURES:
            properties = {"reason": event.detail}
        return properties
    if kind in _CALL_ENDS:
        return {"callLog": call_log_json(call)}
    if kind in _CALL_LIFECYCLE:
        return {"call": call_json(call)}
    if kind == VoiceEventType.CALL_RECORDING_READY:
        recordings = [event.recording] if event.recording is not None else []
        return {"recording": call_recording_json(call, recordings)}
    if kind in _CALL_RECORDING_STEPS:
        return _recording_step(event)
    if kind in _MACHINE_DETECTION_RESULTS:  # `CallsMachineDetectionProperties`
        return {"detectionResult": event.detection_result, "confidenceRating": event.confidence or None}
    if kind in _MACHINE_DETECTION_FAILURES:
        return {"reason": event.detail}
    if kind == VoiceEventType.MEDIA_STREAM_STARTED:  # the Java client's MediaStreamStartedProperties
        return {"configId": event.media_stream_config_id}
    if kind in (VoiceEventType.MEDIA_STREAM_FINISHED, VoiceEventType.MEDIA_STREAM_FAILED):
        return {"configId": event.media_stream_config_id, "reason": event.detail}
    if kind == VoiceEventType.TRANSCRIPTION and event.transcript is not None:
        return transcription_json(event.transcript)
    if kind == VoiceEventType.SPEECH_CAPTURED and event.speech is not None:
        return speech_captured_json(event.speech)
    played = {"duration": event.duration_ms, "playedCompletely": event.played_completely}
    if kind in (VoiceEventType.SAY_FINISHED, VoiceEventType.PLAY_FINISHED):  # the guide: both carry the key
        return played | {"capturedDtmf": event.digits}
    if kind == VoiceEventType.DIGITS_CAPTURED:
        return {"dtmf": event.digits, "timeout": event.timed_out}
    if kind == VoiceEventType.ACTION_FAILED:
        return {"actionType": event.action, "errorCode": "GENERAL_ERROR", "errorDetails": event.detail}
    return {}


class InfobipEventRenderer:
    """The §1.7 envelope: `{type, callId, callsConfigurationId, timestamp, properties}`, with Infobip's names."""

    def name(self, event_type: VoiceEventType) -> str:
        return EVENT_NAMES[event_type]

    def render(self, event: VoiceEvent) -> dict[str, Any]:
        if event.conference is not None:
            return self._conference_body(event)
        body: dict[str, Any] = {
            "type": self.name(event.type),
            "callId": None if event.dialog is not None else event.call.id,
            "callsConfigurationId": event.to_configuration_id or event.call.configuration_id,
            "timestamp": infobip_time(event.at),
            "properties": _properties(event),
        }
        if event.dialog is not None:
            del body["callId"]  # a dialog event names the dialog (its calls are in properties)
            body["dialogId"] = event.dialog.id
        elif event.call.dialog_id:
            body["dialogId"] = event.call.dialog_id
        if event.custom_data:
            body["properties"]["customData"] = event.custom_data
        return body

    def _conference_body(self, event: VoiceEvent) -> dict[str, Any]:
        """A conference's event: `conferenceId`, and `callId` when a participant's call is concerned."""
        # conferences_mapping builds on this module's shapes, so it is imported when first needed
        from callplane.surfaces.infobip.conferences_mapping import conference_properties

        assert event.conference is not None
        body: dict[str, Any] = {
            "type": self.name(event.type),
            "conferenceId": event.conference.conference.id,
            "callsConfigurationId": event.conference.conference.configuration_id,
            "timestamp": infobip_time(event.at),
            "properties": conference_properties(event),
        }
        if event.call.id is not None:
            body["callId"] = event.call.id
        return body
