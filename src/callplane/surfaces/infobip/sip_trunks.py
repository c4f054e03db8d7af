"""`/calls/1/sip-trunks`: CRUD, status and reset-password in the official client's shapes: the routes only (bodies
in sip_trunks_wire.py, their mapping to and from core in sip_trunks_mapping.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from callplane.core.voice import trunks as service
from callplane.core.voice.outbound import check_target, split_host_port
from callplane.core.voice.trunk_models import TrunkAdminStatus, TrunkKind
from callplane.errors import CallplaneError, InvalidInput
from callplane.surfaces.context import AppContext, ContextDep
from callplane.surfaces.http import json_response
from callplane.surfaces.infobip.auth import VoicePrincipalDep
from callplane.surfaces.infobip.common import PageDep
from callplane.surfaces.infobip.common import paged as paged_body
from callplane.surfaces.infobip.errors import InfobipRoute, bad_request
from callplane.surfaces.infobip.sip_trunks_mapping import field_error, peer_address, to_spec, trunk_out
from callplane.surfaces.infobip.sip_trunks_wire import SipTrunkRequest, SipTrunkStatusRequest
from callplane.surfaces.targets import outbound_policy

router = APIRouter(route_class=InfobipRoute, prefix="/calls/1/sip-trunks", tags=["Infobip Calls: SIP trunks"])


async def _check_destinations(body: SipTrunkRequest, context: AppContext) -> None:
    """Every destination host under the outbound target policy (docs/voice.md "Outbound SIP targets"); the
    trunk's peer is checked again before each INVITE."""
    policy = outbound_policy(context)
    for entry in body.destinationHosts or ():
        host, port, _ = peer_address(entry)
        try:
            split_host_port(host)
            await check_target(policy, host.strip("[]"), port, what=f"SIP trunk destination {entry}")
        except InvalidInput as error:
            raise bad_request(error.message, field="destinationHosts") from error


def _registrar_poke(context: AppContext) -> None:
    """Reconcile registrations now when this process runs the engine (otherwise its poll picks it up)."""
    if context.trunk_registrar is not None:
        context.trunk_registrar.poke()


@router.post("", status_code=202)
async def create_sip_trunk(body: SipTrunkRequest, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    """Create a SIP trunk (202 `CallsCreateSipTrunkResponse`); REGISTERED trunks register right after."""
    try:
        spec = to_spec(body)
        async with context.sessions() as session, session.begin():
            trunk = await service.create_trunk(
                session=session, account_id=principal.account.id, spec=spec, secret_box=context.secret_box
            )
            await _check_destinations(body, context)  # after the spec's own checks; a refusal rolls back
        _registrar_poke(context)
    except CallplaneError as error:
        raise field_error(error) from error
    return json_response(trunk_out(trunk, context.settings), 202)


@router.get("")
async def list_sip_trunks(
    principal: VoicePrincipalDep,
    context: ContextDep,
    page: PageDep,
    name: Annotated[str | None, Query()] = None,
) -> Response:
    async with context.sessions() as session:
        rows, total = await service.list_trunks(
            session=session, account_id=principal.account.id, name=name, offset=page.offset, limit=page.size
        )
        results = [trunk_out(row, context.settings) for row in rows]
    return json_response(paged_body(results, page=page, total=total))


SERVICE_ADDRESSES_UNSUPPORTED = (
    "SIP trunk service addresses (Infobip's billing and emergency addresses for hosted numbers) are not used "
    "by callplane: a trunk here is a peer you already have an account with."
)


@router.api_route("/service-addresses", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/service-addresses/countries", methods=["GET"], include_in_schema=False)
@router.api_route("/service-addresses/countries/regions", methods=["GET"], include_in_schema=False)
@router.api_route("/service-addresses/{address_id}", methods=["GET", "PUT", "DELETE"], include_in_schema=False)
async def sip_trunk_service_addresses(principal: VoicePrincipalDep) -> Response:
    """A clear 400 for the six service-address operations (declared before `/{sip_trunk_id}` on purpose)."""
    raise bad_request(SERVICE_ADDRESSES_UNSUPPORTED)


@router.get("/{sip_trunk_id}")
async def get_sip_trunk(sip_trunk_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    async with context.sessions() as session:
        trunk = await service.get_trunk(session=session, account_id=principal.account.id, trunk_id=sip_trunk_id)
        return json_response(trunk_out(trunk, context.settings))


@router.put("/{sip_trunk_id}", status_code=202)
async def update_sip_trunk(
    sip_trunk_id: str, body: SipTrunkRequest, principal: VoicePrincipalDep, context: ContextDep
) -> Response:
    """Replace a trunk (omitted fields go back to their defaults, as Infobip documents)."""
    try:
        spec = to_spec(body)
        async with context.sessions() as session, session.begin():
            trunk = await service.update_trunk(
                session=session,
                account_id=principal.account.id,
                trunk_id=sip_trunk_id,
                spec=spec,
                secret_box=context.secret_box,
            )
            await _check_destinations(body, context)
        _registrar_poke(context)
    except CallplaneError as error:
        raise field_error(error) from error
    return json_response(trunk_out(trunk, context.settings), 202)


@router.delete("/{sip_trunk_id}", status_code=202)
async def delete_sip_trunk(sip_trunk_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    async with context.sessions() as session, session.begin():
        trunk = await service.delete_trunk(session=session, account_id=principal.account.id, trunk_id=sip_trunk_id)
        body = trunk_out(trunk, context.settings)
    _registrar_poke(context)
    return json_response(body, 202)


@router.get("/{sip_trunk_id}/status")
async def get_sip_trunk_status(sip_trunk_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    """`CallsExtendedSipTrunkStatusResponse`: admin status, registration (REGISTERED trunks), live calls."""
    async with context.sessions() as session:
        trunk = await service.get_trunk(session=session, account_id=principal.account.id, trunk_id=sip_trunk_id)
        body: dict[str, Any] = {
            "adminStatus": trunk.admin_status,
            "actionStatus": {"status": "SUCCESS"},
            "activeCalls": _active_calls(context, trunk.id),
        }
        if trunk.registration_status is not None:
            body["registrationStatus"] = trunk.registration_status
    return json_response(body)


@router.post("/{sip_trunk_id}/status")
async def set_sip_trunk_status(
    sip_trunk_id: str, body: SipTrunkStatusRequest, principal: VoicePrincipalDep, context: ContextDep
) -> Response:
    """Enable or disable a trunk: a disabled trunk places no calls and is unregistered."""
    async with context.sessions() as session, session.begin():
        trunk = await service.set_admin_status(
            session=session,
            account_id=principal.account.id,
            trunk_id=sip_trunk_id,
            status=TrunkAdminStatus(body.adminStatus),
        )
        status = trunk.admin_status
    _registrar_poke(context)
    return json_response({"adminStatus": status})


@router.post("/{sip_trunk_id}/reset-password")
async def reset_sip_trunk_password(sip_trunk_id: str, principal: VoicePrincipalDep, context: ContextDep) -> Response:
    """Infobip generates credentials for a PBX that registers to it; callplane registers to the carrier with the
    carrier's credentials instead, so there is nothing to generate: a clear 400 (change them with PUT)."""
    async with context.sessions() as session:
        trunk = await service.get_trunk(session=session, account_id=principal.account.id, trunk_id=sip_trunk_id)
    if trunk.kind != TrunkKind.REGISTERED:
        raise bad_request("Password reset is available only for REGISTERED SIP trunks.")
    raise bad_request(
        "callplane registers with the carrier's credentials; set a new password with PUT /calls/1/sip-trunks/{id}."
    )


def _active_calls(context: AppContext, trunk_id: str) -> int:
    return context.trunk_channels.active(trunk_id)
