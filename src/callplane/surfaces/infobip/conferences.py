"""`/calls/1/conferences` (every operation of the group), connect (`/calls/1/connect`, `/calls/1/calls/{id}/connect`:
an implicit conference, as the guide documents) and `/calls/1/recordings/conferences`: the routes only.

Reads come from the database (any process); commands go to `VoiceService` (relayed to the node that mixes the
conference). Actions answer `CallsActionResponse {"status": "PENDING"}`; what follows arrives as events
(docs/voice.md "Conferences").
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import Response

from callplane.core.voice import conferences as queries
from callplane.core.voice.conferences import ConferenceView
from callplane.core.voice.schemas import ParticipantUpdate
from callplane.live.control import VoiceService
from callplane.surfaces.context import AppContext, ContextDep
from callplane.surfaces.http import json_response
from callplane.surfaces.infobip.auth import VoicePrincipalDep
from callplane.surfaces.infobip.calls_request_mapping import to_content, to_speech
from callplane.surfaces.infobip.calls_router import PENDING, VoiceDep
from callplane.surfaces.infobip.calls_wire import CompositionBody
from callplane.surfaces.infobip.common import PageDep, paged
from callplane.surfaces.infobip.conferences_mapping import (
    conference_and_call_json,
    conference_json,
    conference_log_json,
    conference_recording_json,
    to_conference_call,
    to_conference_recording,
    to_join_options,
    to_new_conference,
)
from callplane.surfaces.infobip.conferences_wire import (
    AddExistingCallBody,
    AddNewCallBody,
    BroadcastTextBody,
    ConferenceBody,
    ConferencePlayBody,
    ConferenceRecordingBody,
    ConferenceSayBody,
    ConnectCallsBody,
    ConnectNewCallBody,
    UpdateBody,
    UpdateCallBody,
)
from callplane.surfaces.infobip.errors import InfobipError, InfobipRoute, bad_request

router = APIRouter(route_class=InfobipRoute, prefix="/calls/1", tags=["Infobip Calls: conferences"])


async def _view(context: AppContext, account_id: str, conference_id: str) -> ConferenceView:
    async with context.sessions() as session:
        conference = await queries.get_conference(session, account_id=account_id, conference_id=conference_id)
        return await queries.view(session, conference)


def _update(body: UpdateBody, role: str | None = None) -> ParticipantUpdate:
    return ParticipantUpdate(muted=body.muted, deaf=body.deaf, role=role)


# ---- conferences --------------------------------------------------------------------------------


@router.post("/conferences", status_code=201)
async def create_conference(
    body: ConferenceBody, principal: VoicePrincipalDep, voice: VoiceDep, context: ContextDep
) -> Response:
    """An empty room -> CONFERENCE_CREATED; `recording` starts when the first participant joins."""
    request = to_new_conference(body, body.callsConfigurationId)
    conference = await voice.create_conference(account_id=principal.account.id, request=request)
    return json_response(conference_json(await _view(context, principal.account.id, conference.id)), 201)


@router.get("/conferences")
async def list_conferences(
    principal: VoicePrincipalDep,
    context: ContextDep,
    page: PageDep,
    name: str | None = None,
    callId: str | None = None,
    callsConfigurationId: str | None = None,
    applicationId: str | None = None,  # Infobip's older name for a calls configuration
    startTimeAfter: datetime | None = None,
) -> Response:
    async with context.sessions() as session:
        found, total = await queries.list_conferences(
            session,
            account_id=principal.account.id,
            live=True,
            name=name,
            call_id=callId,
            configuration_id=callsConfigurationId or applicationId,
            start_time_after=startTimeAfter,
            offset=page.offset,
            limit=page.size,
        )
    return json_response(paged([conference_json(view) for view in found], page=page, total=total))


@router.get("/conferences/history")
async def list_conference_history(
    principal: VoicePrincipalDep,
    context: ContextDep,
    page: PageDep,
    name: str | None = None,
    callId: str | None = None,
    callsConfigurationId: str | None = None,
    applicationId: str | None = None,
    startTimeAfter: datetime | None = None,
    endTimeBefore: datetime | None = None,
) -> Response:
    async with context.sessions() as session:
        found, total = await queries.list_conferences(
            session,
            account_id=principal.account.id,
            live=False,
            name=name,
            call_id=callId,
            configuration_id=callsConfigurationId or applicationId,
            start_time_after=startTimeAfter,
            end_time_before=endTimeBefore,
            offset=page.offset,
            limit=page.size,
        )
        recordings = {}
        for view in found:
            listed, _ = await queries.list_conference_recordings(
                session, account_id=principal.account.id, conference_id=view.conference.id, limit=1
            )
            recordings[view.conference.id] = listed[0] if listed else None
    results = [conference_log_json(view, recordings[view.conference.id]) for view in found]
    return json_response(paged(results, page=page, total=total))


@router.get("/conferences/{conference_id}")
async def get_conference(conference_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    return json_response(conference_json(await _view(context, principal.account.id, conference_id)))


@router.get("/conferences/{conference_id}/history")
async def get_conference_history(conference_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    view = await _view(context, principal.account.id, conference_id)
    if view.conference.ended_at is None:
        raise InfobipError(404, "Conference history not found (the conference is still live).")
    async with context.sessions() as session:
        listed, _ = await queries.list_conference_recordings(
            session, account_id=principal.account.id, conference_id=conference_id, limit=1
        )
    return json_response(conference_log_json(view, listed[0] if listed else None))


@router.patch("/conferences/{conference_id}")
async def update_conference(
    conference_id: str, body: UpdateBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    """Every participant muted / deaf (PARTICIPANT_MEDIA_CHANGED for each one that changed)."""
    await voice.update_conference(account_id=principal.account.id, conference_id=conference_id, update=_update(body))
    return json_response(PENDING)


@router.post("/conferences/{conference_id}/call")
async def add_new_call(
    conference_id: str, body: AddNewCallBody, principal: VoicePrincipalDep, voice: VoiceDep, context: ContextDep
) -> Response:
    """Place a call that joins the room when it answers -> `CallsConferenceAndCall`."""
    options = to_join_options(
        connect_on_early_media=body.connectOnEarlyMedia,
        ringback=bool(body.ringbackGeneration and body.ringbackGeneration.enabled),
        role=body.role,
    )
    call = await voice.add_conference_call(
        account_id=principal.account.id,
        conference_id=conference_id,
        request=to_conference_call(body.callRequest),
        options=options,
    )
    return json_response(conference_and_call_json(await _view(context, principal.account.id, conference_id), call))


@router.put("/conferences/{conference_id}/call/{call_id}")
async def add_existing_call(
    conference_id: str,
    call_id: str,
    principal: VoicePrincipalDep,
    voice: VoiceDep,
    context: ContextDep,
    body: AddExistingCallBody | None = None,
) -> Response:
    body = body or AddExistingCallBody()
    options = to_join_options(
        connect_on_early_media=body.connectOnEarlyMedia,
        ringback=bool(body.ringbackGeneration and body.ringbackGeneration.enabled),
        role=body.role,
        custom_data=body.customData,
    )
    await voice.add_existing_conference_call(
        account_id=principal.account.id, conference_id=conference_id, call_id=call_id, options=options
    )
    return json_response(conference_json(await _view(context, principal.account.id, conference_id)))


@router.delete("/conferences/{conference_id}/call/{call_id}")
async def remove_call(conference_id: str, call_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    """The call leaves the room and stays up -> PARTICIPANT_REMOVED (the conference ends if it was the last)."""
    await voice.remove_conference_call(account_id=principal.account.id, conference_id=conference_id, call_id=call_id)
    return json_response(PENDING)


@router.patch("/conferences/{conference_id}/call/{call_id}")
async def update_call(
    conference_id: str, call_id: str, body: UpdateCallBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    await voice.update_conference_call(
        account_id=principal.account.id,
        conference_id=conference_id,
        call_id=call_id,
        update=_update(body, body.role.type if body.role is not None else None),
    )
    return json_response(PENDING)


@router.post("/conferences/{conference_id}/hangup")
async def hangup_conference(
    conference_id: str, principal: VoicePrincipalDep, voice: VoiceDep, context: ContextDep
) -> Response:
    """Every participant's call is hung up; the conference finishes when they have left."""
    await voice.hangup_conference(account_id=principal.account.id, conference_id=conference_id)
    return json_response(conference_json(await _view(context, principal.account.id, conference_id)))


@router.post("/conferences/{conference_id}/say")
async def conference_say(
    conference_id: str, body: ConferenceSayBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    await voice.conference_say(
        account_id=principal.account.id,
        conference_id=conference_id,
        speech=to_speech(body.text, body.language, body.speechRate, body.preferences),
        loop_count=body.loopCount,
    )
    return json_response(PENDING)


@router.post("/conferences/{conference_id}/play")
async def conference_play(
    conference_id: str, body: ConferencePlayBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    await voice.conference_play(
        account_id=principal.account.id,
        conference_id=conference_id,
        content=to_content(body.content),
        loop_count=body.loopCount,
    )
    return json_response(PENDING)


@router.post("/conferences/{conference_id}/stop-play")
async def conference_stop_play(conference_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.conference_stop_play(account_id=principal.account.id, conference_id=conference_id)
    return json_response(PENDING)


@router.post("/conferences/{conference_id}/start-recording")
async def conference_start_recording(
    conference_id: str, body: ConferenceRecordingBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    await voice.start_conference_recording(
        account_id=principal.account.id, conference_id=conference_id, request=to_conference_recording(body)
    )
    return json_response(PENDING)


@router.post("/conferences/{conference_id}/stop-recording")
async def conference_stop_recording(conference_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.stop_conference_recording(account_id=principal.account.id, conference_id=conference_id)
    return json_response(PENDING)


@router.post("/conferences/{conference_id}/broadcast-webrtc-text")
async def broadcast_webrtc_text(
    conference_id: str, body: BroadcastTextBody, principal: VoicePrincipalDep, context: ContextDep
) -> Response:
    """Text to the conference's WebRTC participants with an open data channel. callplane has no WebRTC endpoint,
    so a live conference has none of them: accepted, delivered to nobody (docs/decisions.md)."""
    if not body.text:
        raise bad_request("text is required", field="text")
    view = await _view(context, principal.account.id, conference_id)
    if view.conference.ended_at is not None:
        raise InfobipError(400, "The conference has already ended.")
    return json_response(PENDING)


# ---- connect: an implicit conference ------------------------------------------------------------


@router.post("/connect")
async def connect_calls(
    body: ConnectCallsBody, principal: VoicePrincipalDep, voice: VoiceDep, context: ContextDep
) -> Response:
    """The calls in a new conference (CONFERENCE_CREATED, then PARTICIPANT_JOINING / JOINED for each)."""
    if len(body.callIds) < 2:
        raise bad_request("connect needs at least two call ids", field="callIds")
    conference = await voice.connect_calls(
        account_id=principal.account.id,
        call_id=body.callIds[0],
        other_call_ids=body.callIds[1:],
        conference=to_new_conference(body.conferenceRequest),
    )
    return json_response(conference_json(await _view(context, principal.account.id, conference.id)))


@router.post("/calls/{call_id}/connect")
async def connect_with_new_call(
    call_id: str, body: ConnectNewCallBody, principal: VoicePrincipalDep, voice: VoiceDep, context: ContextDep
) -> Response:
    """The call in a new conference, and a new call placed into it (joining when it answers, or on early media
    with connectOnEarlyMedia; the room hears ringback meanwhile with ringbackGeneration)."""
    conference = await voice.connect_with_new_call(
        account_id=principal.account.id,
        call_id=call_id,
        request=to_conference_call(body.callRequest),
        options=to_join_options(
            connect_on_early_media=body.connectOnEarlyMedia,
            ringback=bool(body.ringbackGeneration and body.ringbackGeneration.enabled),
        ),
        conference=to_new_conference(body.conferenceRequest),
    )
    view = await _view(context, principal.account.id, conference.id)
    placed = next((p.call_id for p in view.participants if p.call_id != call_id), None)
    call = view.calls.get(placed or "")
    if call is None:
        raise InfobipError(500, "the new call was not placed")
    return json_response(conference_and_call_json(view, call))


# ---- conference recordings ----------------------------------------------------------------------


@router.get("/recordings/conferences")
async def list_conference_recordings(
    principal: VoicePrincipalDep,
    context: ContextDep,
    page: PageDep,
    conferenceId: str | None = None,
    callsConfigurationId: str | None = None,
    applicationId: str | None = None,
    conferenceName: str | None = None,
    callId: str | None = None,
    startTimeAfter: datetime | None = None,
    endTimeBefore: datetime | None = None,
    composition: bool | None = None,
) -> Response:
    async with context.sessions() as session:
        found, total = await queries.list_conference_recordings(
            session,
            account_id=principal.account.id,
            conference_id=conferenceId,
            configuration_id=callsConfigurationId or applicationId,
            conference_name=conferenceName,
            call_id=callId,
            start_time_after=startTimeAfter,
            end_time_before=endTimeBefore,
            composition=composition,
            offset=page.offset,
            limit=page.size,
        )
    return json_response(paged([conference_recording_json(item) for item in found], page=page, total=total))


@router.get("/recordings/conferences/{conference_id}")
async def get_conference_recordings(conference_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    async with context.sessions() as session:
        found = await queries.conference_recordings(
            session, account_id=principal.account.id, conference_id=conference_id
        )
    return json_response(conference_recording_json(found))


@router.delete("/recordings/conferences/{conference_id}")
async def delete_conference_recordings(conference_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    """The files go; the metadata stays (as for calls and dialogs). Answers what was deleted."""
    found = await _delete_recordings(voice, principal.account.id, conference_id)
    return json_response(conference_recording_json(found))


async def _delete_recordings(voice: VoiceService, account_id: str, conference_id: str) -> queries.ConferenceRecordings:
    async with voice.sessions() as session, session.begin():
        found = await queries.conference_recordings(session, account_id=account_id, conference_id=conference_id)
        await queries.mark_conference_recordings_deleted(session, account_id=account_id, conference_id=conference_id)
    for recording in found.files:
        (voice.recordings_dir() / recording.storage_key).unlink(missing_ok=True)
    return found


@router.post("/recordings/conferences/{conference_id}/compose")
async def compose_conference_recording(
    conference_id: str, principal: VoicePrincipalDep, voice: VoiceDep, body: CompositionBody | None = None
) -> Response:
    """Per-participant files into composed ones (in the background) -> CONFERENCE_COMPOSITION_FINISHED."""
    body = body or CompositionBody()
    await voice.compose_conference_recording(
        account_id=principal.account.id,
        conference_id=conference_id,
        delete_call_recordings=body.deleteCallRecordings,
        multi_channel=bool(body.multiChannel and body.multiChannel.enabled),
    )
    return json_response(PENDING)
