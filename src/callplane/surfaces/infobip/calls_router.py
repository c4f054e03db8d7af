"""`/calls/1/configurations`, `/calls/1/calls` (create, get, live list, history, actions), dialogs, connect and
recordings: the routes only.

Each route takes a body of calls_wire.py, maps it to core (calls_request_mapping.py), calls one `VoiceService`
method and renders the client's model (calls_mapping.py). Actions answer
`CallsActionResponse {"status": "PENDING"}`; what they lead to arrives as events (docs/voice.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from callplane.core.voice import configurations as configs
from callplane.core.voice.models import VoiceDialog
from callplane.core.voice.schemas import CallFilter
from callplane.core.voice.states import ErrorCode
from callplane.live.control import VoiceService
from callplane.surfaces.context import ContextDep
from callplane.surfaces.http import json_response
from callplane.surfaces.infobip.auth import VoicePrincipalDep
from callplane.surfaces.infobip.calls_mapping import (
    call_json,
    call_log_json,
    call_recording_json,
    configuration_json,
    dialog_json,
    dialog_log_json,
    dialog_recording_json,
    recording_file_json,
)
from callplane.surfaces.infobip.calls_request_mapping import (
    history_filters,
    live_filters,
    to_capture,
    to_child_call,
    to_content,
    to_dialog_recording,
    to_new_call,
    to_play_options,
    to_recording,
    to_say_options,
    to_speech,
)
from callplane.surfaces.infobip.calls_wire import (
    AnswerBody,
    ApplicationTransferBody,
    CallBody,
    CaptureDtmfBody,
    CompositionBody,
    ConfigurationBody,
    DialogBody,
    DialogPlayBody,
    DialogRecordingBody,
    DialogSayBody,
    ExistingDialogBody,
    HangupBody,
    PlayBody,
    PreAnswerBody,
    PropagationBody,
    SayBody,
    SendDtmfBody,
    StartRecordingBody,
    StartRecordingInner,
)
from callplane.surfaces.infobip.common import PageDep, paged
from callplane.surfaces.infobip.errors import InfobipError, InfobipRoute, bad_request

router = APIRouter(route_class=InfobipRoute, prefix="/calls/1", tags=["Infobip Calls: calls"])

PENDING = {"status": "PENDING"}


def voice_service(context: ContextDep) -> VoiceService:
    if context.voice is None:
        raise InfobipError(503, "The voice engine is not running in this process (CALLPLANE_VOICE_ENABLED)")
    return context.voice


VoiceDep = Annotated[VoiceService, Depends(voice_service)]


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
    call = await voice.create_call(account_id=principal.account.id, request=to_new_call(body))
    return json_response(call_json(call), 201)


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
        recording=to_recording(body.recording),
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


@router.post("/calls/{call_id}/application-transfer")
async def application_transfer(
    call_id: str, body: ApplicationTransferBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    """Offer the call to another calls configuration of the account (APPLICATION_TRANSFER_REQUESTED goes to its
    subscribers); it answers with accept or reject within `timeout` seconds, else the transfer fails."""
    await voice.application_transfer(
        account_id=principal.account.id,
        call_id=call_id,
        destination_configuration_id=body.destinationCallsConfigurationId,
        timeout_s=body.timeout,
        custom_data=body.customData,
    )
    return json_response(PENDING)


@router.post("/calls/{call_id}/application-transfer/{transfer_id}/accept")
async def accept_application_transfer(
    call_id: str, transfer_id: str, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    await voice.accept_application_transfer(account_id=principal.account.id, call_id=call_id, transfer_id=transfer_id)
    return json_response(PENDING)


@router.post("/calls/{call_id}/application-transfer/{transfer_id}/reject")
async def reject_application_transfer(
    call_id: str, transfer_id: str, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    await voice.reject_application_transfer(account_id=principal.account.id, call_id=call_id, transfer_id=transfer_id)
    return json_response(PENDING)


@router.post("/calls/{call_id}/say")
async def say(call_id: str, body: SayBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.say(
        account_id=principal.account.id,
        call_id=call_id,
        speech=to_speech(body.text, body.language, body.speechRate, body.preferences),
        options=to_say_options(body),
    )
    return json_response(PENDING)


@router.post("/calls/{call_id}/play")
async def play(call_id: str, body: PlayBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.play(
        account_id=principal.account.id,
        call_id=call_id,
        content=to_content(body.content),
        options=to_play_options(body),
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
        request=to_capture(body),
    )
    return json_response(PENDING)


@router.post("/calls/{call_id}/start-recording")
async def start_recording(
    call_id: str, principal: VoicePrincipalDep, voice: VoiceDep, body: StartRecordingBody | None = None
) -> Response:
    request = to_recording((body or StartRecordingBody()).recording or StartRecordingInner())
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
        child=to_child_call(child),
        child_hangup_ends_parent=propagation.childCallHangup,
        child_ringing=propagation.childCallRinging,
        ringback=propagation.ringback(),
    )
    await voice.limit_dialog_duration(dialog_id=dialog.id, max_duration_s=body.maxDuration)
    if body.recording is not None:
        await voice.record_dialog_when_established(dialog_id=dialog.id, request=to_dialog_recording(body.recording))
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


@router.post("/dialogs/{dialog_id}/say")
async def dialog_say(dialog_id: str, body: DialogSayBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    """Both parties hear it, mixed over each other (docs/voice.md); SAY_FINISHED names the dialog."""
    await voice.dialog_say(
        account_id=principal.account.id,
        dialog_id=dialog_id,
        speech=to_speech(body.text, body.language, body.speechRate, body.preferences),
        loop_count=body.loopCount,
    )
    return json_response(PENDING)


@router.post("/dialogs/{dialog_id}/play")
async def dialog_play(dialog_id: str, body: DialogPlayBody, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.dialog_play(
        account_id=principal.account.id,
        dialog_id=dialog_id,
        content=to_content(body.content),
        loop_count=body.loopCount,
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
        account_id=principal.account.id, dialog_id=dialog_id, request=to_dialog_recording(body)
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
