"""Infobip Calls request bodies and query parameters -> core requests (the other direction is calls_mapping.py).

What the body models cannot say (which fields a SIP or PHONE endpoint needs, AUDIO-only recordings) is checked here
and answered with Infobip's 400 naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query

from callplane.core.voice.models import EndpointType
from callplane.core.voice.outbound import custom_header_problems
from callplane.core.voice.schemas import (
    CallFilter,
    CaptureRequest,
    DialogRecordingRequest,
    Endpoint,
    MachineDetectionRequest,
    NewCall,
    PlayContent,
    PlayOptions,
    RecordingChannels,
    RecordingRequest,
    Speech,
)
from callplane.surfaces.infobip.calls_wire import (
    CallBody,
    CaptureDtmfBody,
    ContentBody,
    DialogCallBody,
    DialogRecordingBody,
    EndpointBody,
    MachineDetectionBody,
    PlayBody,
    PreferencesBody,
    RecordingBody,
    SayBody,
    StartRecordingInner,
    TerminationBody,
)
from callplane.surfaces.infobip.errors import InfobipError, bad_request


def to_recording(body: RecordingBody | StartRecordingInner | None) -> RecordingRequest | None:
    if body is None:
        return None
    if body.recordingType != "AUDIO":
        raise bad_request("only AUDIO recordings are supported (no video)", field="recording.recordingType")
    if isinstance(body, StartRecordingInner):  # start-recording's own options (not on create or answer)
        return RecordingRequest(
            channels=RecordingChannels(body.channels),
            file_prefix=body.filePrefix,
            custom_data=body.customData or {},
            beep=body.beep,
            max_silence_s=body.maxSilence,
            max_duration_s=body.maxDuration,
        )
    return RecordingRequest(
        channels=RecordingChannels(body.channels), file_prefix=body.filePrefix, custom_data=body.customData or {}
    )


def to_dialog_recording(body: DialogRecordingBody) -> DialogRecordingRequest:
    if body.recordingType != "AUDIO":
        raise bad_request("only AUDIO recordings are supported (no video)", field="recordingType")
    return DialogRecordingRequest(
        composed=bool(body.dialogComposition and body.dialogComposition.enabled),
        file_prefix=body.filePrefix,
        custom_data=body.customData or {},
    )


def to_endpoint(body: EndpointBody) -> Endpoint:
    headers = body.customHeaders or {}
    problems = custom_header_problems(headers)  # the service checks again; here the field is named
    if problems:
        raise InfobipError(400, "; ".join(problems), validation_errors={"endpoint.customHeaders": problems})
    if body.type == "SIP":
        if not body.username:
            raise bad_request("username is required", field="endpoint.username")
        if not (body.sipTrunkId or body.host):
            raise bad_request("sipTrunkId (or callplane's host) is required", field="endpoint.sipTrunkId")
        return Endpoint(EndpointType.SIP, body.username, trunk_id=body.sipTrunkId, host=body.host, headers=headers)
    if body.type == "PHONE":
        if not body.phoneNumber:
            raise bad_request("phoneNumber is required", field="endpoint.phoneNumber")
        if not body.sipTrunkId:
            raise bad_request(
                "PHONE calls go out through a SIP trunk: give the endpoint's sipTrunkId", field="endpoint.sipTrunkId"
            )
        return Endpoint(EndpointType.PHONE, body.phoneNumber, trunk_id=body.sipTrunkId, headers=headers)
    raise bad_request(f"endpoint type {body.type} is not supported; use SIP or PHONE", field="endpoint.type")


def to_machine_detection(body: MachineDetectionBody | None) -> MachineDetectionRequest | None:
    """`machineDetection`: None unless enabled; the client's rule that detectionTime is below a
    messageDetectionTimeout that asks for end-of-message detection is checked here."""
    if body is None or not body.enabled:
        return None
    timeout_s = body.messageDetectionTimeout or None
    if timeout_s is not None and body.detectionTime >= timeout_s:
        raise bad_request(
            "detectionTime must be lower than messageDetectionTimeout", field="machineDetection.detectionTime"
        )
    return MachineDetectionRequest(
        detection_time_ms=round(body.detectionTime * 1000),
        message_timeout_ms=timeout_s * 1000 if timeout_s is not None else None,
    )


def to_new_call(body: CallBody) -> NewCall:
    return NewCall(
        configuration_id=body.callsConfigurationId,
        endpoint=to_endpoint(body.endpoint),
        from_user=body.from_,
        from_display_name=body.fromDisplayName,
        connect_timeout_s=body.connectTimeout,
        max_duration_s=body.maxDuration,
        custom_data=body.customData or {},
        external_id=body.externalId,
        parent_call_id=body.parentCallId,
        recording=to_recording(body.recording),
        machine_detection=to_machine_detection(body.machineDetection),
    )


def to_child_call(body: DialogCallBody) -> NewCall:
    """A dialog's (or connect's) new call; it takes the parent's configuration."""
    return NewCall(
        configuration_id="",
        endpoint=to_endpoint(body.endpoint),
        from_user=body.from_,
        from_display_name=body.fromDisplayName,
        connect_timeout_s=body.connectTimeout,
        custom_data=body.customData or {},
        machine_detection=to_machine_detection(body.machineDetection),
    )


def to_speech(text: str | None, language: str | None, rate: float, preferences: PreferencesBody | None) -> Speech:
    if not text or not language:
        raise bad_request("TEXT content needs text and language", field="content.text")
    return Speech(text, language, rate, preferences.voiceGender if preferences else None)


def to_content(body: ContentBody) -> PlayContent:
    if body.type == "FILE":
        if not body.fileId:
            raise bad_request("fileId is required", field="content.fileId")
        return PlayContent(file_id=body.fileId)
    if body.type == "RECORDING":
        if not body.fileId:
            raise bad_request("fileId is required", field="content.fileId")
        return PlayContent(recording_file_id=body.fileId)
    if body.type == "URL":
        if not body.fileUrl:
            raise bad_request("fileUrl is required", field="content.fileUrl")
        return PlayContent(url=body.fileUrl)
    return PlayContent(speech=to_speech(body.text, body.language, body.speechRate, body.preferences))


def _stop_on(body: TerminationBody | None) -> dict[str, Any]:
    if body is None:
        return {}
    terminator = body.terminator
    if terminator is not None and terminator.strip().lower() == "any":  # the guide's "any": the first key stops it
        terminator = None
    return {"stop_on_dtmf": True, "stop_terminator": terminator}


def to_say_options(body: SayBody) -> PlayOptions:
    return PlayOptions(loop_count=body.loopCount, custom_data=body.customData or {}, **_stop_on(body.stopOn))


def to_play_options(body: PlayBody) -> PlayOptions:
    return PlayOptions(
        loop_count=body.loopCount,
        offset_ms=body.offset,
        timeout_ms=body.timeout,
        custom_data=body.customData or {},
        **_stop_on(body.stopOn),
    )


def to_capture(body: CaptureDtmfBody) -> CaptureRequest:
    return CaptureRequest(
        max_length=body.maxLength,
        timeout_ms=body.timeout,
        terminator=body.terminator,
        digit_timeout_ms=body.digitTimeout,
        custom_data=body.customData or {},
        play=to_content(body.playContent) if body.playContent is not None else None,
    )


# ---- list filters (query parameters) --------------------------------------------------------------------------


def _filters(
    live: bool,
    type: str | None = None,
    callsConfigurationId: str | None = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    direction: Literal["INBOUND", "OUTBOUND"] | None = None,
    status: str | None = None,
    startTimeAfter: datetime | None = None,
    conferenceId: str | None = None,
    dialogId: str | None = None,
) -> CallFilter:
    return CallFilter(
        live=live,
        endpoint_type=type,
        configuration_id=callsConfigurationId,
        from_user=from_,
        to_user=to,
        direction=direction,
        state=status,
        start_time_after=startTimeAfter,
        conference_id=conferenceId,
        dialog_id=dialogId,
    )


def live_filters(
    type: str | None = None,
    callsConfigurationId: str | None = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    direction: Literal["INBOUND", "OUTBOUND"] | None = None,
    status: str | None = None,
    startTimeAfter: datetime | None = None,
    conferenceId: str | None = None,
    dialogId: str | None = None,
) -> CallFilter:
    return _filters(
        True, type, callsConfigurationId, from_, to, direction, status, startTimeAfter, conferenceId, dialogId
    )


def history_filters(
    type: str | None = None,
    callsConfigurationId: str | None = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    direction: Literal["INBOUND", "OUTBOUND"] | None = None,
    status: str | None = None,
    startTimeAfter: datetime | None = None,
    conferenceId: str | None = None,
    dialogId: str | None = None,
) -> CallFilter:
    return _filters(
        False, type, callsConfigurationId, from_, to, direction, status, startTimeAfter, conferenceId, dialogId
    )
