"""`/calls/1/configurations`, `/calls/1/calls` (create, get, live list, history, actions) and call recordings.

Parse the client's body, call one `VoiceService` method, render the client's model. Actions answer
`CallsActionResponse {"status": "PENDING"}`; what they lead to arrives as events (docs/voice.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from callplane.core.voice import configurations as configs
from callplane.core.voice.models import EndpointType, VoiceDialog
from callplane.core.voice.outbound import custom_header_problems
from callplane.core.voice.service import (
    CallFilter,
    CaptureRequest,
    DialogRecordingRequest,
    Endpoint,
    NewCall,
    PlayContent,
    PlayOptions,
    RecordingRequest,
    Speech,
    VoiceService,
)
from callplane.core.voice.states import ErrorCode
from callplane.media.engine import RecordingChannels
from callplane.surfaces.context import ContextDep
from callplane.surfaces.http import JsonRoute, json_response
from callplane.surfaces.infobip.calls_mapping import (
    call_json,
    call_log_json,
    call_recording_json,
    conference_json,
    configuration_json,
    dialog_json,
    dialog_log_json,
    dialog_recording_json,
    recording_file_json,
)
from callplane.surfaces.infobip.common import InfobipError, PageDep, VoicePrincipalDep, bad_request, paged

router = APIRouter(route_class=JsonRoute, prefix="/calls/1", tags=["Infobip Calls: calls"])

PENDING = {"status": "PENDING"}
_WIRE = ConfigDict(extra="ignore", populate_by_name=True)


def voice_service(context: ContextDep) -> VoiceService:
    if context.voice is None:
        raise InfobipError(503, "The voice engine is not running in this process (CALLPLANE_VOICE_ENABLED)")
    return context.voice


VoiceDep = Annotated[VoiceService, Depends(voice_service)]


# ---- bodies (the client's request models) -------------------------------------------------------


class ConfigurationBody(BaseModel):
    model_config = _WIRE
    id: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    name: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    postCallProcessing: bool = False  # callplane: finished calls' recordings go through the post-call pipeline


class EndpointBody(BaseModel):
    model_config = _WIRE
    type: str
    username: str | None = None
    sipTrunkId: str | None = None
    host: str | None = None  # callplane: a SIP peer "host[:port]" without a trunk
    customHeaders: dict[str, str] | None = None
    phoneNumber: str | None = None


class RecordingBody(BaseModel):
    model_config = _WIRE
    recordingType: Literal["AUDIO", "AUDIO_AND_VIDEO"] = "AUDIO"
    customData: dict[str, str] | None = None
    filePrefix: str | None = None
    channels: Literal["MONO", "STEREO"] = "MONO"


class CallBody(BaseModel):
    model_config = _WIRE
    endpoint: EndpointBody
    from_: str | None = Field(default=None, alias="from")
    fromDisplayName: str | None = None
    connectTimeout: Annotated[int | None, Field(ge=1, le=60)] = None
    recording: RecordingBody | None = None
    maxDuration: Annotated[int, Field(ge=1, le=28800)] = 28800
    customData: dict[str, str] | None = None
    callsConfigurationId: str
    parentCallId: str | None = None
    externalId: str | None = None


class AnswerBody(BaseModel):
    model_config = _WIRE
    customData: dict[str, str] | None = None
    recording: RecordingBody | None = None


class PreAnswerBody(BaseModel):
    model_config = _WIRE
    ringing: bool = False
    customData: dict[str, str] | None = None


class HangupBody(BaseModel):
    model_config = _WIRE
    errorCode: Literal[tuple(code.name for code in ErrorCode if code < 10100)] | None = None  # type: ignore[valid-type]


class TerminationBody(BaseModel):
    model_config = _WIRE
    type: Literal["DTMF"] = "DTMF"
    terminator: str | None = None


class PreferencesBody(BaseModel):
    model_config = _WIRE
    voiceGender: Literal["FEMALE", "MALE"] | None = None
    voiceName: str | None = None


class SayBody(BaseModel):
    model_config = _WIRE
    text: Annotated[str, Field(min_length=1, max_length=1500)]
    language: str
    speechRate: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    loopCount: Annotated[int, Field(ge=1)] = 1
    preferences: PreferencesBody | None = None
    stopOn: TerminationBody | None = None
    customData: dict[str, str] | None = None


class ContentBody(BaseModel):
    model_config = _WIRE
    type: Literal["FILE", "URL", "RECORDING", "TEXT"]
    fileId: str | None = None
    fileUrl: str | None = None
    cacheDuration: int | None = None
    text: str | None = None
    language: str | None = None
    speechRate: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    preferences: PreferencesBody | None = None


class PlayBody(BaseModel):
    model_config = _WIRE
    content: ContentBody
    loopCount: Annotated[int, Field(ge=1)] = 1
    timeout: Annotated[int | None, Field(ge=1)] = None
    offset: Annotated[int, Field(ge=0)] = 0
    stopOn: TerminationBody | None = None
    customData: dict[str, str] | None = None


class CustomDataBody(BaseModel):
    model_config = _WIRE
    customData: dict[str, str] | None = None


class SendDtmfBody(BaseModel):
    model_config = _WIRE
    dtmf: Annotated[str, Field(min_length=1, max_length=64)]
    customData: dict[str, str] | None = None


class CaptureDtmfBody(BaseModel):
    model_config = _WIRE
    maxLength: Annotated[int, Field(ge=1, le=255)]
    timeout: Annotated[int, Field(ge=1, le=600_000)]
    terminator: Annotated[str | None, Field(max_length=1)] = None
    digitTimeout: Annotated[int | None, Field(ge=1, le=600_000)] = None
    playContent: ContentBody | None = None
    customData: dict[str, str] | None = None


class StartRecordingInner(BaseModel):
    model_config = _WIRE
    recordingType: Literal["AUDIO", "AUDIO_AND_VIDEO"] = "AUDIO"
    customData: dict[str, str] | None = None
    filePrefix: str | None = None
    channels: Literal["MONO", "STEREO"] = "MONO"  # callplane: the call's recording may be STEREO here too


class StartRecordingBody(BaseModel):
    model_config = _WIRE
    recording: StartRecordingInner | None = None


# ---- mapping bodies to core ---------------------------------------------------------------------


def _recording(body: RecordingBody | StartRecordingInner | None) -> RecordingRequest | None:
    if body is None:
        return None
    if body.recordingType != "AUDIO":
        raise bad_request("only AUDIO recordings are supported (no video)", field="recording.recordingType")
    return RecordingRequest(
        channels=RecordingChannels(body.channels), file_prefix=body.filePrefix, custom_data=body.customData or {}
    )


def _endpoint(body: EndpointBody) -> Endpoint:
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


def _speech(text: str | None, language: str | None, rate: float, preferences: PreferencesBody | None) -> Speech:
    if not text or not language:
        raise bad_request("TEXT content needs text and language", field="content.text")
    return Speech(text, language, rate, preferences.voiceGender if preferences else None)


def _content(body: ContentBody) -> PlayContent:
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
    return PlayContent(speech=_speech(body.text, body.language, body.speechRate, body.preferences))


def _stop_on(body: TerminationBody | None) -> dict[str, Any]:
    if body is None:
        return {}
    return {"stop_on_dtmf": True, "stop_terminator": body.terminator}


# ---- configurations -----------------------------------------------------------------------------


@router.post("/configurations", status_code=201)
async def create_configuration(body: ConfigurationBody, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    async with context.sessions() as session, session.begin():
        configuration = await configs.create_configuration(
            session=session,
            account_id=principal.account.id,
            configuration_id=body.id,
            name=body.name,
            post_call_processing=body.postCallProcessing,
        )
        out = configuration_json(configuration)
    return json_response(out, 201)


@router.get("/configurations")
async def list_configurations(principal: VoicePrincipalDep, context: ContextDep, page: PageDep) -> Response:
    async with context.sessions() as session:
        rows, total = await configs.list_configurations(
            session=session, account_id=principal.account.id, offset=page.offset, limit=page.size
        )
        results = [configuration_json(row) for row in rows]
    return json_response(paged(results, page=page, total=total))


@router.get("/configurations/{configuration_id}")
async def get_configuration(configuration_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    async with context.sessions() as session:
        configuration = await configs.get_configuration(
            session=session, account_id=principal.account.id, configuration_id=configuration_id
        )
        return json_response(configuration_json(configuration))


@router.put("/configurations/{configuration_id}")
async def update_configuration(
    configuration_id: str, body: ConfigurationBody, principal: VoicePrincipalDep, context: ContextDep
) -> Response:
    async with context.sessions() as session, session.begin():
        configuration = await configs.update_configuration(
            session=session,
            account_id=principal.account.id,
            configuration_id=configuration_id,
            name=body.name,
            post_call_processing=body.postCallProcessing,
        )
        out = configuration_json(configuration)
    return json_response(out)


@router.delete("/configurations/{configuration_id}")
async def delete_configuration(configuration_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    async with context.sessions() as session, session.begin():
        configuration = await configs.delete_configuration(
            session=session, account_id=principal.account.id, configuration_id=configuration_id
        )
        out = configuration_json(configuration)
    return json_response(out)


# ---- calls --------------------------------------------------------------------------------------


@router.post("/calls", status_code=201)
async def create_call(body: CallBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    call = await voice.create_call(
        account_id=principal.account.id,
        request=NewCall(
            configuration_id=body.callsConfigurationId,
            endpoint=_endpoint(body.endpoint),
            from_user=body.from_,
            from_display_name=body.fromDisplayName,
            connect_timeout_s=body.connectTimeout,
            max_duration_s=body.maxDuration,
            custom_data=body.customData or {},
            external_id=body.externalId,
            parent_call_id=body.parentCallId,
            recording=_recording(body.recording),
        ),
    )
    return json_response(call_json(call), 201)


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


@router.get("/calls")
async def list_calls(
    principal: VoicePrincipalDep,
    voice: VoiceDep,
    page: PageDep,
    filters: Annotated[CallFilter, Depends(live_filters)],
) -> Response:
    rows, total = await voice.list_calls(
        account_id=principal.account.id, filters=filters, offset=page.offset, limit=page.size
    )
    return json_response(paged([call_json(row) for row in rows], page=page, total=total))


@router.get("/calls/history")
async def list_call_history(
    principal: VoicePrincipalDep,
    voice: VoiceDep,
    page: PageDep,
    filters: Annotated[CallFilter, Depends(history_filters)],
) -> Response:
    rows, total = await voice.list_calls(
        account_id=principal.account.id, filters=filters, offset=page.offset, limit=page.size
    )
    return json_response(paged([call_log_json(row) for row in rows], page=page, total=total))


@router.get("/calls/{call_id}")
async def get_call(call_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    return json_response(call_json(await voice.get_call(account_id=principal.account.id, call_id=call_id)))


@router.get("/calls/{call_id}/history")
async def get_call_history(call_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    call = await voice.get_call(account_id=principal.account.id, call_id=call_id)
    if call.ended_at is None:
        raise InfobipError(404, "Call history not found (the call is still live).")
    return json_response(call_log_json(call))


@router.post("/calls/{call_id}/answer")
async def answer(
    call_id: str, principal: VoicePrincipalDep, voice: VoiceDep, body: AnswerBody | None = None
) -> Response:
    body = body or AnswerBody()
    await voice.answer(
        account_id=principal.account.id,
        call_id=call_id,
        recording=_recording(body.recording),
        custom_data=body.customData,
    )
    return json_response(PENDING)


@router.post("/calls/{call_id}/pre-answer")
async def pre_answer(
    call_id: str, principal: VoicePrincipalDep, voice: VoiceDep, body: PreAnswerBody | None = None
) -> Response:
    await voice.pre_answer(account_id=principal.account.id, call_id=call_id, ringing=(body or PreAnswerBody()).ringing)
    return json_response(PENDING)


@router.post("/calls/{call_id}/send-ringing")
async def send_ringing(call_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.send_ringing(account_id=principal.account.id, call_id=call_id)
    return json_response(PENDING)


@router.post("/calls/{call_id}/hangup")
async def hangup(
    call_id: str, principal: VoicePrincipalDep, voice: VoiceDep, body: HangupBody | None = None
) -> Response:
    code = ErrorCode[body.errorCode] if body is not None and body.errorCode else None
    call = await voice.hangup(account_id=principal.account.id, call_id=call_id, error_code=code)
    return json_response(call_json(call))


@router.post("/calls/{call_id}/say")
async def say(call_id: str, body: SayBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.say(
        account_id=principal.account.id,
        call_id=call_id,
        speech=_speech(body.text, body.language, body.speechRate, body.preferences),
        options=PlayOptions(loop_count=body.loopCount, custom_data=body.customData or {}, **_stop_on(body.stopOn)),
    )
    return json_response(PENDING)


@router.post("/calls/{call_id}/play")
async def play(call_id: str, body: PlayBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.play(
        account_id=principal.account.id,
        call_id=call_id,
        content=_content(body.content),
        options=PlayOptions(
            loop_count=body.loopCount,
            offset_ms=body.offset,
            timeout_ms=body.timeout,
            custom_data=body.customData or {},
            **_stop_on(body.stopOn),
        ),
    )
    return json_response(PENDING)


@router.post("/calls/{call_id}/stop-play")
async def stop_play(call_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.stop_play(account_id=principal.account.id, call_id=call_id)
    return json_response(PENDING)


@router.post("/calls/{call_id}/send-dtmf")
async def send_dtmf(call_id: str, body: SendDtmfBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.send_dtmf(account_id=principal.account.id, call_id=call_id, digits=body.dtmf)
    return json_response(PENDING)


@router.post("/calls/{call_id}/capture/dtmf")
async def capture_dtmf(call_id: str, body: CaptureDtmfBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.capture_dtmf(
        account_id=principal.account.id,
        call_id=call_id,
        request=CaptureRequest(
            max_length=body.maxLength,
            timeout_ms=body.timeout,
            terminator=body.terminator,
            digit_timeout_ms=body.digitTimeout,
            custom_data=body.customData or {},
            play=_content(body.playContent) if body.playContent is not None else None,
        ),
    )
    return json_response(PENDING)


@router.post("/calls/{call_id}/start-recording")
async def start_recording(
    call_id: str, principal: VoicePrincipalDep, voice: VoiceDep, body: StartRecordingBody | None = None
) -> Response:
    request = _recording((body or StartRecordingBody()).recording or StartRecordingInner())
    assert request is not None
    await voice.start_recording(account_id=principal.account.id, call_id=call_id, request=request)
    return json_response(PENDING)


@router.post("/calls/{call_id}/stop-recording")
async def stop_recording(call_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.stop_recording(account_id=principal.account.id, call_id=call_id)
    return json_response(PENDING)


# ---- recordings ---------------------------------------------------------------------------------


@router.get("/recordings/calls")
async def list_call_recordings(
    principal: VoicePrincipalDep,
    voice: VoiceDep,
    page: PageDep,
    callId: str | None = None,
    callsConfigurationId: str | None = None,
) -> Response:
    found, total = await voice.list_recordings(
        account_id=principal.account.id,
        call_id=callId,
        configuration_id=callsConfigurationId,
        offset=page.offset,
        limit=page.size,
    )
    results = [call_recording_json(call, files) for call, files in found]
    return json_response(paged(results, page=page, total=total))


@router.get("/recordings/calls/{call_id}")
async def get_call_recordings(call_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    call, files = await voice.call_recordings(account_id=principal.account.id, call_id=call_id)
    return json_response(call_recording_json(call, files))


@router.delete("/recordings/calls/{call_id}")
async def delete_call_recordings(call_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    call, files = await voice.delete_call_recordings(account_id=principal.account.id, call_id=call_id)
    return json_response(call_recording_json(call, files))


@router.get("/recordings/files/{file_id}")
async def download_recording_file(
    file_id: str, request: Request, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    """The WAV bytes; `Range` requests are answered 206 by Starlette's FileResponse."""
    recording, path = await voice.recording_file(account_id=principal.account.id, file_id=file_id)
    return FileResponse(path, media_type="audio/wav", filename=recording.name)


@router.delete("/recordings/files/{file_id}")
async def delete_recording_file(file_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    recording = await voice.delete_recording_file(account_id=principal.account.id, file_id=file_id)
    return json_response(recording_file_json(recording))


# ---- dialogs ------------------------------------------------------------------------------------


class RingbackBody(BaseModel):
    model_config = _WIRE
    enabled: bool = False


class PropagationBody(BaseModel):
    """`CallsDialogPropagationOptions` (the client's defaults)."""

    model_config = _WIRE
    childCallHangup: bool = True
    childCallRinging: bool = False
    ringbackGeneration: RingbackBody | None = None

    def ringback(self) -> bool:
        return bool(self.ringbackGeneration and self.ringbackGeneration.enabled)


class DialogCallBody(BaseModel):
    model_config = _WIRE
    endpoint: EndpointBody
    from_: str | None = Field(default=None, alias="from")
    fromDisplayName: str | None = None
    connectTimeout: Annotated[int | None, Field(ge=1, le=60)] = None
    customData: dict[str, str] | None = None


class DialogCompositionBody(BaseModel):
    model_config = _WIRE
    enabled: bool = False


class DialogRecordingBody(BaseModel):
    """`CallsDialogRecordingRequest`."""

    model_config = _WIRE
    recordingType: Literal["AUDIO", "AUDIO_AND_VIDEO"]
    dialogComposition: DialogCompositionBody | None = None
    customData: dict[str, str] | None = None
    filePrefix: str | None = None


class DialogBody(BaseModel):
    model_config = _WIRE
    parentCallId: Annotated[str, Field(max_length=128)]
    childCallRequest: DialogCallBody | None = None
    recording: DialogRecordingBody | None = None
    maxDuration: Annotated[int, Field(ge=1, le=28800)] = 28800
    propagationOptions: PropagationBody | None = None


class ExistingDialogBody(BaseModel):
    model_config = _WIRE
    maxDuration: Annotated[int, Field(ge=1, le=28800)] = 28800
    propagationOptions: PropagationBody | None = None


async def _dialog_out(voice: VoiceService, dialog: VoiceDialog) -> dict[str, Any]:
    parent, child = await voice.dialog_calls(dialog)
    return dialog_json(dialog, parent, child)


@router.post("/dialogs", status_code=201)
async def create_dialog(body: DialogBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    child = body.childCallRequest
    if child is None:
        raise bad_request("childCallRequest is required", field="childCallRequest")
    propagation = body.propagationOptions or PropagationBody()
    if propagation.childCallRinging and propagation.ringback():
        raise bad_request(
            "childCallRinging cannot be true when ringbackGeneration is enabled", field="propagationOptions"
        )
    dialog = await voice.create_dialog(
        account_id=principal.account.id,
        parent_call_id=body.parentCallId,
        child=NewCall(
            configuration_id="",  # the parent's
            endpoint=_endpoint(child.endpoint),
            from_user=child.from_,
            from_display_name=child.fromDisplayName,
            connect_timeout_s=child.connectTimeout,
            custom_data=child.customData or {},
        ),
        child_hangup_ends_parent=propagation.childCallHangup,
    )
    await voice.propagate_child_progress(
        dialog_id=dialog.id, ringing=propagation.childCallRinging, ringback=propagation.ringback()
    )
    await voice.limit_dialog_duration(dialog_id=dialog.id, max_duration_s=body.maxDuration)
    if body.recording is not None:
        await voice.record_dialog_when_established(dialog_id=dialog.id, request=_dialog_recording(body.recording))
    return json_response(await _dialog_out(voice, dialog), 201)


@router.post("/dialogs/parent-call/{parent_call_id}/child-call/{child_call_id}", status_code=201)
async def create_dialog_from_calls(
    parent_call_id: str,
    child_call_id: str,
    principal: VoicePrincipalDep,
    voice: VoiceDep,
    body: ExistingDialogBody | None = None,
) -> Response:
    propagation = (body.propagationOptions if body else None) or PropagationBody()
    dialog = await voice.dialog_from_calls(
        account_id=principal.account.id,
        parent_call_id=parent_call_id,
        child_call_id=child_call_id,
        child_hangup_ends_parent=propagation.childCallHangup,
    )
    await voice.limit_dialog_duration(dialog_id=dialog.id, max_duration_s=body.maxDuration if body else 28800)
    return json_response(await _dialog_out(voice, dialog), 201)


@router.get("/dialogs")
async def list_dialogs(
    principal: VoicePrincipalDep,
    voice: VoiceDep,
    page: PageDep,
    callsConfigurationId: str | None = None,
    state: str | None = None,
) -> Response:
    rows, total = await voice.list_dialogs(
        account_id=principal.account.id,
        live=True,
        configuration_id=callsConfigurationId,
        state=state,
        offset=page.offset,
        limit=page.size,
    )
    return json_response(paged([await _dialog_out(voice, row) for row in rows], page=page, total=total))


@router.get("/dialogs/history")
async def list_dialog_history(
    principal: VoicePrincipalDep,
    voice: VoiceDep,
    page: PageDep,
    callsConfigurationId: str | None = None,
    state: str | None = None,
) -> Response:
    rows, total = await voice.list_dialogs(
        account_id=principal.account.id,
        live=False,
        configuration_id=callsConfigurationId,
        state=state,
        offset=page.offset,
        limit=page.size,
    )
    return json_response(paged([dialog_log_json(row) for row in rows], page=page, total=total))


@router.get("/dialogs/{dialog_id}")
async def get_dialog(dialog_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    dialog = await voice.get_dialog(account_id=principal.account.id, dialog_id=dialog_id)
    return json_response(await _dialog_out(voice, dialog))


@router.get("/dialogs/{dialog_id}/history")
async def get_dialog_history(dialog_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    dialog = await voice.get_dialog(account_id=principal.account.id, dialog_id=dialog_id)
    if dialog.ended_at is None:
        raise InfobipError(404, "Dialog history not found (the dialog is still live).")
    return json_response(dialog_log_json(dialog))


@router.post("/dialogs/{dialog_id}/hangup")
async def hangup_dialog(dialog_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    dialog = await voice.hangup_dialog(account_id=principal.account.id, dialog_id=dialog_id)
    return json_response(await _dialog_out(voice, dialog))


class DialogSayBody(BaseModel):
    """`CallsDialogSayRequest` (no stopOn or customData on a dialog)."""

    model_config = _WIRE
    text: Annotated[str, Field(min_length=1, max_length=1500)]
    language: str
    speechRate: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    loopCount: Annotated[int, Field(ge=1)] = 1
    preferences: PreferencesBody | None = None


class DialogPlayBody(BaseModel):
    """`CallsDialogPlayRequest`."""

    model_config = _WIRE
    loopCount: Annotated[int, Field(ge=1)] = 1
    content: ContentBody


def _dialog_recording(body: DialogRecordingBody) -> DialogRecordingRequest:
    if body.recordingType != "AUDIO":
        raise bad_request("only AUDIO recordings are supported (no video)", field="recordingType")
    return DialogRecordingRequest(
        composed=bool(body.dialogComposition and body.dialogComposition.enabled),
        file_prefix=body.filePrefix,
        custom_data=body.customData or {},
    )


@router.post("/dialogs/{dialog_id}/say")
async def dialog_say(dialog_id: str, body: DialogSayBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    """Both parties hear it, mixed over each other (docs/voice.md); SAY_FINISHED names the dialog."""
    await voice.dialog_say(
        account_id=principal.account.id,
        dialog_id=dialog_id,
        speech=_speech(body.text, body.language, body.speechRate, body.preferences),
        loop_count=body.loopCount,
    )
    return json_response(PENDING)


@router.post("/dialogs/{dialog_id}/play")
async def dialog_play(dialog_id: str, body: DialogPlayBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.dialog_play(
        account_id=principal.account.id, dialog_id=dialog_id, content=_content(body.content), loop_count=body.loopCount
    )
    return json_response(PENDING)


@router.post("/dialogs/{dialog_id}/stop-play")
async def dialog_stop_play(dialog_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.dialog_stop_play(account_id=principal.account.id, dialog_id=dialog_id)
    return json_response(PENDING)


@router.post("/dialogs/{dialog_id}/start-recording")
async def dialog_start_recording(
    dialog_id: str, body: DialogRecordingBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    await voice.start_dialog_recording(
        account_id=principal.account.id, dialog_id=dialog_id, request=_dialog_recording(body)
    )
    return json_response(PENDING)


@router.post("/dialogs/{dialog_id}/stop-recording")
async def dialog_stop_recording(dialog_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.stop_dialog_recording(account_id=principal.account.id, dialog_id=dialog_id)
    return json_response(PENDING)


@router.get("/recordings/dialogs")
async def list_dialog_recordings(
    principal: VoicePrincipalDep,
    voice: VoiceDep,
    page: PageDep,
    dialogId: str | None = None,
    callsConfigurationId: str | None = None,
    callId: str | None = None,
) -> Response:
    found, total = await voice.list_dialog_recordings(
        account_id=principal.account.id,
        dialog_id=dialogId,
        configuration_id=callsConfigurationId,
        call_id=callId,
        offset=page.offset,
        limit=page.size,
    )
    results = [dialog_recording_json(item.dialog, item.files, item.calls) for item in found]
    return json_response(paged(results, page=page, total=total))


@router.get("/recordings/dialogs/{dialog_id}")
async def get_dialog_recordings(dialog_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    item = await voice.dialog_recordings(account_id=principal.account.id, dialog_id=dialog_id)
    return json_response(dialog_recording_json(item.dialog, item.files, item.calls))


class MultiChannelBody(BaseModel):
    model_config = _WIRE
    enabled: bool


class CompositionBody(BaseModel):
    """`CallsOnDemandComposition`."""

    model_config = _WIRE
    deleteCallRecordings: bool = True
    multiChannel: MultiChannelBody | None = None


@router.post("/recordings/dialogs/{dialog_id}/compose")
async def compose_dialog_recording(
    dialog_id: str, principal: VoicePrincipalDep, voice: VoiceDep, body: CompositionBody | None = None
) -> Response:
    """Per-call files into composed ones (in the background) -> DIALOG_COMPOSITION_FINISHED."""
    body = body or CompositionBody()
    await voice.compose_dialog_recording(
        account_id=principal.account.id,
        dialog_id=dialog_id,
        delete_call_recordings=body.deleteCallRecordings,
        multi_channel=bool(body.multiChannel and body.multiChannel.enabled),
    )
    return json_response(PENDING)


@router.delete("/recordings/dialogs/{dialog_id}")
async def delete_dialog_recordings(dialog_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    item = await voice.delete_dialog_recordings(account_id=principal.account.id, dialog_id=dialog_id)
    return json_response(dialog_recording_json(item.dialog, item.files, item.calls))


# ---- connect: two parties, carried as a dialog --------------------------------------------------


class ConferenceRequestBody(BaseModel):
    model_config = _WIRE
    name: str | None = None


class ConnectBody(BaseModel):
    model_config = _WIRE
    callIds: list[str]
    conferenceRequest: ConferenceRequestBody | None = None


class ConnectWithNewCallBody(BaseModel):
    model_config = _WIRE
    callRequest: DialogCallBody
    connectOnEarlyMedia: bool = False
    conferenceRequest: ConferenceRequestBody | None = None


@router.post("/connect")
async def connect_calls(body: ConnectBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    """Two existing answered calls, bridged (a conference of more than two is not built)."""
    if len(body.callIds) != 2:
        raise bad_request("callplane connects exactly two calls (conferences are not built)", field="callIds")
    dialog = await voice.dialog_from_calls(
        account_id=principal.account.id, parent_call_id=body.callIds[0], child_call_id=body.callIds[1]
    )
    parent, child = await voice.dialog_calls(dialog)
    name = body.conferenceRequest.name if body.conferenceRequest else None
    return json_response(conference_json(dialog, parent, child, name))


@router.post("/calls/{call_id}/connect")
async def connect_with_new_call(
    call_id: str, body: ConnectWithNewCallBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    """Place a new call and bridge it to this one when it answers; answers `{conference, call}`."""
    request = body.callRequest
    dialog = await voice.create_dialog(
        account_id=principal.account.id,
        parent_call_id=call_id,
        child=NewCall(
            configuration_id="",  # the parent's
            endpoint=_endpoint(request.endpoint),
            from_user=request.from_,
            from_display_name=request.fromDisplayName,
            connect_timeout_s=request.connectTimeout,
            custom_data=request.customData or {},
        ),
    )
    parent, child = await voice.dialog_calls(dialog)
    name = body.conferenceRequest.name if body.conferenceRequest else None
    return json_response(
        {"conference": conference_json(dialog, parent, child, name), "call": call_json(child) if child else None}
    )
