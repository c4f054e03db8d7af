"""`/calls/1/media-stream-configs` (CRUD) and a call's `start-media-stream` / `stop-media-stream`: the routes only
(bodies in media_streams_wire.py, their mapping in media_streams_mapping.py; the streams: live/media_streams.py).

A configuration's URL goes through the outbound target policy when it is stored (and again before each
connection): a media-stream server is a customer-named target like a webhook. Conferences have no media-stream
endpoints in the API this mimics, so only calls stream.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from callplane.core.recordings.errors import HostNotFound, InvalidTargetUrl, TargetRefused
from callplane.core.voice import media_streams as service
from callplane.core.voice.schemas import MediaStreamRequest
from callplane.errors import CallplaneError, InvalidInput
from callplane.surfaces.context import AppContext, ContextDep
from callplane.surfaces.http import json_response
from callplane.surfaces.infobip.auth import VoicePrincipalDep
from callplane.surfaces.infobip.calls_router import PENDING, VoiceDep
from callplane.surfaces.infobip.common import PageDep
from callplane.surfaces.infobip.common import paged as paged_body
from callplane.surfaces.infobip.errors import InfobipRoute, bad_request, from_core_error
from callplane.surfaces.infobip.media_streams_mapping import config_out, to_spec
from callplane.surfaces.infobip.media_streams_wire import MediaStreamConfigBody, StartMediaStreamBody
from callplane.surfaces.targets import outbound_policy

configs_router = APIRouter(
    route_class=InfobipRoute, prefix="/calls/1/media-stream-configs", tags=["Infobip Calls: media streaming"]
)
calls_router = APIRouter(route_class=InfobipRoute, prefix="/calls/1/calls", tags=["Infobip Calls: media streaming"])


async def _check_url(url: str, context: AppContext) -> None:
    """The URL under the outbound target policy; a name that does not resolve yet is accepted (checked again
    before each connection)."""
    try:
        await outbound_policy(context).check_url(url, schemes=("ws", "wss"))
    except HostNotFound:
        return
    except (InvalidTargetUrl, TargetRefused) as error:
        raise bad_request(f"refusing to stream to {url}: {error.message}", field="url") from error


def _field_error(error: CallplaneError) -> Exception:
    if isinstance(error, InvalidInput):
        return bad_request(error.message)
    return from_core_error(error)


@configs_router.post("")
async def create_media_stream_config(
    body: MediaStreamConfigBody, principal: VoicePrincipalDep, context: ContextDep
) -> Response:
    """Create a configuration (`CallsMediaStreamConfigResponse`)."""
    spec = to_spec(body)
    try:
        service.check_spec(spec)
    except CallplaneError as error:
        raise _field_error(error) from error
    await _check_url(spec.url, context)
    async with context.sessions() as session, session.begin():
        config = await service.create_config(
            session=session, account_id=principal.account.id, spec=spec, secret_box=context.secret_box
        )
        result = config_out(config)
    return json_response(result)


@configs_router.get("")
async def list_media_stream_configs(principal: VoicePrincipalDep, context: ContextDep, page: PageDep) -> Response:
    async with context.sessions() as session:
        rows, total = await service.list_configs(
            session=session, account_id=principal.account.id, offset=page.offset, limit=page.size
        )
        results = [config_out(row) for row in rows]
    return json_response(paged_body(results, page=page, total=total))


@configs_router.get("/{media_stream_config_id}")
async def get_media_stream_config(
    media_stream_config_id: str, principal: VoicePrincipalDep, context: ContextDep
) -> Response:
    async with context.sessions() as session:
        config = await service.get_config(
            session=session, account_id=principal.account.id, config_id=media_stream_config_id
        )
        return json_response(config_out(config))


@configs_router.put("/{media_stream_config_id}")
async def update_media_stream_config(
    media_stream_config_id: str, body: MediaStreamConfigBody, principal: VoicePrincipalDep, context: ContextDep
) -> Response:
    """Replace a configuration (what the body leaves out, credentials included, is gone)."""
    spec = to_spec(body)
    try:
        service.check_spec(spec)
    except CallplaneError as error:
        raise _field_error(error) from error
    await _check_url(spec.url, context)
    async with context.sessions() as session, session.begin():
        config = await service.update_config(
            session=session,
            account_id=principal.account.id,
            config_id=media_stream_config_id,
            spec=spec,
            secret_box=context.secret_box,
        )
        result = config_out(config)
    return json_response(result)


@configs_router.delete("/{media_stream_config_id}")
async def delete_media_stream_config(
    media_stream_config_id: str, principal: VoicePrincipalDep, context: ContextDep
) -> Response:
    async with context.sessions() as session, session.begin():
        config = await service.delete_config(
            session=session, account_id=principal.account.id, config_id=media_stream_config_id
        )
        result = config_out(config)
    return json_response(result)


@calls_router.post("/{call_id}/start-media-stream")
async def start_media_stream(
    call_id: str, body: StartMediaStreamBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    """Stream the call leg's audio to a configuration's server; MEDIA_STREAM_STARTED once connected."""
    properties = body.mediaStream.audioProperties
    request = MediaStreamRequest(config_id=properties.mediaStreamConfigId, replace_media=properties.replaceMedia)
    await voice.start_media_stream(account_id=principal.account.id, call_id=call_id, request=request)
    return json_response(PENDING)


@calls_router.post("/{call_id}/stop-media-stream")
async def stop_media_stream(call_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    """Stop the call's stream; MEDIA_STREAM_FINISHED follows."""
    await voice.stop_media_stream(account_id=principal.account.id, call_id=call_id)
    return json_response(PENDING)
