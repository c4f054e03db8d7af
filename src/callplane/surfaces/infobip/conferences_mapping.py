"""Conferences between the wire and core: request bodies -> core values (in), core rows -> the client's models
(`CallsConference`, `CallsParticipant`, `CallsConferenceLog`, `CallsConferenceRecording`) and the conference
events' bodies (out; `InfobipEventRenderer` hands them conference events)."""

from __future__ import annotations

from typing import Any

from callplane.core.voice.conference_models import ConferenceState, ParticipantState, VoiceConferenceParticipant
from callplane.core.voice.conferences import ConferenceRecordings, ConferenceView
from callplane.core.voice.events import VoiceEvent, VoiceEventType
from callplane.core.voice.models import VoiceCall, VoiceRecording
from callplane.core.voice.schemas import DialogRecordingRequest, JoinOptions, NewCall, NewConference
from callplane.surfaces.infobip.calls_mapping import (
    call_json,
    call_recording_json,
    endpoint_json,
    error_code_json,
    recording_file_json,
)
from callplane.surfaces.infobip.calls_request_mapping import to_child_call
from callplane.surfaces.infobip.common import infobip_time
from callplane.surfaces.infobip.conferences_wire import (
    ActionCallBody,
    ActionConferenceBody,
    ConferenceBody,
    ConferenceRecordingBody,
    RoleBody,
)
from callplane.surfaces.infobip.errors import bad_request

# ---- in -----------------------------------------------------------------------------------------


def to_conference_recording(body: ConferenceRecordingBody) -> DialogRecordingRequest:
    if body.recordingType != "AUDIO":
        raise bad_request("only AUDIO recordings are supported (no video)", field="recordingType")
    return DialogRecordingRequest(
        composed=bool(body.conferenceComposition and body.conferenceComposition.enabled),
        file_prefix=body.filePrefix,
        custom_data=body.customData or {},
    )


def to_new_conference(
    body: ActionConferenceBody | ConferenceBody | None, configuration_id: str = "", name: str | None = None
) -> NewConference:
    if body is None:
        return NewConference(configuration_id=configuration_id, name=name)
    return NewConference(
        configuration_id=configuration_id,
        name=body.name or name,
        max_duration_s=body.maxDuration,
        recording=to_conference_recording(body.recording) if body.recording is not None else None,
    )


def to_conference_call(body: ActionCallBody) -> NewCall:
    """A call placed into a conference; it takes the conference's configuration."""
    if body.recording is not None:
        raise bad_request(
            "a conference's calls are recorded with the conference (start-recording on the conference)",
            field="callRequest.recording",
        )
    call = to_child_call(body)
    return NewCall(
        configuration_id="",
        endpoint=call.endpoint,
        from_user=call.from_user,
        from_display_name=call.from_display_name,
        connect_timeout_s=call.connect_timeout_s,
        max_duration_s=body.maxDuration,
        custom_data=call.custom_data,
        machine_detection=call.machine_detection,
    )


def to_join_options(
    *,
    connect_on_early_media: bool = False,
    ringback: bool = False,
    role: RoleBody | None = None,
    custom_data: dict[str, str] | None = None,
) -> JoinOptions:
    return JoinOptions(
        connect_on_early_media=connect_on_early_media,
        ringback=ringback,
        role=role.type if role is not None else "DEFAULT",
        custom_data=custom_data or {},
    )


# ---- out ----------------------------------------------------------------------------------------


def participant_json(participant: VoiceConferenceParticipant, call: VoiceCall | None) -> dict[str, Any]:
    """`CallsParticipant`."""
    return {
        "callId": participant.call_id,
        "endpoint": endpoint_json(call) if call is not None else None,
        "state": participant.state,
        "joinTime": infobip_time(participant.joined_at),
        "leaveTime": infobip_time(participant.left_at),
        "media": {
            "audio": {"muted": participant.muted, "userMuted": False, "deaf": participant.deaf},
            "video": {"camera": False, "screenShare": False, "blind": False},
        },
        "role": {"type": participant.role},
    }


def conference_json(view: ConferenceView) -> dict[str, Any]:
    """`CallsConference`: a live conference lists who is in it or joining; a finished one each call's last
    session."""
    current = view.current()
    if view.conference.state == ConferenceState.ACTIVE:
        current = [p for p in current if p.state != ParticipantState.LEFT]
    return {
        "id": view.conference.id,
        "name": view.conference.name,
        "participants": [participant_json(p, view.calls.get(p.call_id)) for p in current],
        "callsConfigurationId": view.conference.configuration_id,
    }


def conference_and_call_json(view: ConferenceView, call: VoiceCall) -> dict[str, Any]:
    """`CallsConferenceAndCall`."""
    return {"conference": conference_json(view), "call": call_json(call)}


def conference_recording_log_json(files: list[VoiceRecording], calls: dict[str, VoiceCall]) -> dict[str, Any]:
    per_call: dict[str, list[VoiceRecording]] = {}
    for recording in files:
        if not recording.composed:
            per_call.setdefault(recording.call_id, []).append(recording)
    return {
        "composedFiles": [recording_file_json(r) for r in files if r.composed],
        "callRecordings": [
            call_recording_json(calls[call_id], found) for call_id, found in per_call.items() if call_id in calls
        ],
    }


def conference_log_json(view: ConferenceView, recordings: ConferenceRecordings | None = None) -> dict[str, Any]:
    """`CallsConferenceLog`: every session of every call, and the conference's recordings."""
    conference = view.conference
    duration = None
    if conference.ended_at is not None:
        duration = max(0, round((conference.ended_at - conference.created_at).total_seconds()))
    return {
        "conferenceId": conference.id,
        "name": conference.name,
        "callsConfigurationId": conference.configuration_id,
        "startTime": infobip_time(conference.created_at),
        "endTime": infobip_time(conference.ended_at),
        "duration": duration,
        "sessions": [
            {"callId": p.call_id, "joinTime": infobip_time(p.joined_at), "leaveTime": infobip_time(p.left_at)}
            for p in view.participants
            if p.joined_at is not None
        ],
        "recording": (
            conference_recording_log_json(recordings.files, recordings.calls) if recordings is not None else None
        ),
        "errorCode": error_code_json(conference.error_code),
    }


def conference_recording_json(found: ConferenceRecordings) -> dict[str, Any]:
    """`CallsConferenceRecording`."""
    conference, files = found.conference, found.files
    return {
        "conferenceId": conference.id,
        "conferenceName": conference.name,
        "callsConfigurationId": conference.configuration_id,
        **conference_recording_log_json(files, found.calls),
        "startTime": infobip_time(min((r.started_at for r in files), default=conference.created_at)),
        "endTime": infobip_time(max((r.ended_at for r in files if r.ended_at), default=conference.ended_at)),
    }


# ---- events -------------------------------------------------------------------------------------

_PARTICIPANT_EVENTS = (
    VoiceEventType.PARTICIPANT_JOINING,
    VoiceEventType.PARTICIPANT_JOINED,
    VoiceEventType.PARTICIPANT_JOIN_FAILED,
    VoiceEventType.PARTICIPANT_REMOVED,
    VoiceEventType.PARTICIPANT_ROLE_CHANGED,
)
_FILES = (VoiceEventType.CONFERENCE_RECORDING_READY, VoiceEventType.CONFERENCE_COMPOSITION_FINISHED)
_FAILURES = (VoiceEventType.CONFERENCE_RECORDING_FAILED, VoiceEventType.CONFERENCE_COMPOSITION_FAILED)


def conference_properties(event: VoiceEvent) -> dict[str, Any]:
    """The `properties` of a conference's event (the envelope is the renderer's)."""
    view = event.conference
    assert view is not None
    kind = event.type
    participant = (
        participant_json(event.participant, view.calls.get(event.participant.call_id))
        if event.participant is not None
        else None
    )
    if kind == VoiceEventType.CONFERENCE_CREATED:
        return {"conference": conference_json(view)}
    if kind == VoiceEventType.CONFERENCE_FINISHED:
        return {"conference": conference_json(view), "errorCode": error_code_json(view.conference.error_code)}
    if kind in _PARTICIPANT_EVENTS:
        return {"conference": conference_json(view), "participant": participant}
    if kind == VoiceEventType.PARTICIPANT_MEDIA_CHANGED:
        media = participant["media"] if participant is not None else {}
        return {"participant": participant, **media}
    if kind in _FILES:
        found = ConferenceRecordings(view.conference, event.recordings, view.calls)
        return {"recording": conference_recording_json(found)}
    if kind in _FAILURES:
        return {"reason": event.detail}
    played = {"duration": event.duration_ms, "playedCompletely": event.played_completely}
    if kind == VoiceEventType.SAY_FINISHED:
        return played
    if kind == VoiceEventType.PLAY_FINISHED:
        return played | {"capturedDtmf": None}
    if kind == VoiceEventType.ACTION_FAILED:
        return {"actionType": event.action, "errorCode": "GENERAL_ERROR", "errorDetails": event.detail}
    return {}
