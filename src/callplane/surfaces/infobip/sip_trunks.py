"""`/calls/1/sip-trunks`: CRUD, status and reset-password in the official client's shapes.

Mapping (docs/voice.md, "SIP trunks"): a STATIC trunk's peer is its first `destinationHosts` entry
(`host[:port]`); a REGISTERED trunk is one callplane registers *with* (a carrier account): it takes the same
`destinationHosts` plus the callplane fields `username` and `password`. `tls: true` and any transport but UDP
answer 400 until TCP/TLS are built. Vendor-only fields are kept and echoed, not acted on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from callplane.core.voice import trunks as service
from callplane.core.voice.outbound import check_target, split_host_port
from callplane.core.voice.trunk_models import NumberFormat, SipTrunk, TrunkAdminStatus, TrunkKind
from callplane.errors import CallplaneError, InvalidInput
from callplane.settings import Settings
from callplane.surfaces.context import AppContext, ContextDep
from callplane.surfaces.http import json_response
from callplane.surfaces.infobip.auth import VoicePrincipalDep
from callplane.surfaces.infobip.common import PageDep
from callplane.surfaces.infobip.common import paged as paged_body
from callplane.surfaces.infobip.errors import InfobipError, InfobipRoute, bad_request, from_core_error
from callplane.surfaces.targets import outbound_policy

router = APIRouter(route_class=InfobipRoute, prefix="/calls/1/sip-trunks", tags=["Infobip Calls: SIP trunks"])

MAX_DESTINATION_HOSTS = 10
ECHOED_FIELDS = ("location", "billingPackage", "dtmf", "fax", "anonymization", "strategy", "sipOptions")


class SipTrunkRequest(BaseModel):
    """`CallsSipTrunkRequest` (STATIC | REGISTERED) plus callplane's `username`, `password`, `transport`."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["STATIC", "REGISTERED", "PROVIDER"] = "STATIC"
    name: Annotated[str, Field(min_length=1, max_length=128)]
    location: str | None = None
    tls: bool = False
    internationalCallsAllowed: bool = False
    channelLimit: Annotated[int, Field(ge=1, le=service.MAX_CHANNEL_LIMIT)]
    billingPackage: dict[str, Any] | None = None
    codecs: list[Literal["PCMU", "PCMA", "G729"]] | None = None
    dtmf: Literal["RFC2833", "INBAND"] = "RFC2833"
    fax: Literal["NONE", "INBAND", "T38"] = "NONE"
    numberFormat: NumberFormat = NumberFormat.E164
    anonymization: Literal["NONE", "REMOTE_PARTY_ID", "ASSERTED_IDENTITY", "PREFERRED_IDENTITY"] = "NONE"
    sourceHosts: list[str] | None = None
    # each one is resolved and checked against the target policy: a bounded list keeps a request's lookups bounded
    destinationHosts: Annotated[list[str] | None, Field(max_length=MAX_DESTINATION_HOSTS)] = None
    strategy: Literal["FAILOVER", "ROUND_ROBIN"] = "FAILOVER"
    sipOptions: dict[str, Any] | None = None
    inviteAuthentication: bool = False
    # callplane: the credentials we answer the peer's digest challenges (and REGISTER) with
    username: str | None = None
    password: str | None = None
    transport: str = "UDP"


class SipTrunkStatusRequest(BaseModel):
    adminStatus: Literal["ENABLED", "DISABLED"]


def _peer_address(entry: str) -> tuple[str, int, str]:
    """`host[:port][;transport=x]` -> (host, port, transport)."""
    address, _, params = entry.strip().partition(";")
    transport = "UDP"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "transport" and value:
            transport = value.strip().upper()
    host, colon, port = address.rpartition(":")
    if not colon:
        return address, 5060, transport
    if not port.isdigit():
        raise bad_request(f"{entry!r} is not host:port", field="destinationHosts")
    return host, int(port), transport


def to_spec(body: SipTrunkRequest) -> service.TrunkSpec:
    if body.type == "PROVIDER":
        raise bad_request("PROVIDER SIP trunks are not supported; use STATIC or REGISTERED", field="type")
    if body.tls:
        raise bad_request("TLS SIP trunks are not supported yet; only UDP", field="tls")
    if not body.destinationHosts:
        raise bad_request("the peer's address is needed: destinationHosts ['host:port']", field="destinationHosts")
    host, port, transport = _peer_address(body.destinationHosts[0])
    if body.transport.upper() != "UDP":
        transport = body.transport.upper()
    extras = {name: getattr(body, name) for name in ECHOED_FIELDS} | {
        "destinationHosts": body.destinationHosts,
        "inviteAuthentication": body.inviteAuthentication,
    }
    return service.TrunkSpec(
        name=body.name,
        kind=TrunkKind(body.type),
        host=host,
        port=port,
        transport=transport,
        username=body.username,
        password=body.password,
        number_format=body.numberFormat,
        channel_limit=body.channelLimit,
        international_calls_allowed=body.internationalCallsAllowed,
        codecs=tuple(body.codecs or service.SUPPORTED_CODECS),
        source_hosts=tuple(body.sourceHosts or ()),
        extras=extras,
    )


async def _check_destinations(body: SipTrunkRequest, context: AppContext) -> None:
    """Every destination host under the outbound target policy (docs/voice.md "Outbound SIP targets"); the
    trunk's peer is checked again before each INVITE."""
    policy = outbound_policy(context)
    for entry in body.destinationHosts or ():
        host, port, _ = _peer_address(entry)
        try:
            split_host_port(host)
            await check_target(policy, host.strip("[]"), port, what=f"SIP trunk destination {entry}")
        except InvalidInput as error:
            raise bad_request(error.message, field="destinationHosts") from error


def sbc_hosts(settings: Settings) -> list[str]:
    """Where the peer sends calls to us: our SIP address."""
    return [f"{settings.sip_public_host or settings.sip_host}:{settings.sip_port}"]


def trunk_out(trunk: SipTrunk, settings: Settings) -> dict[str, Any]:
    """`CallsSipTrunkResponse` (STATIC or REGISTERED); the password is never returned."""
    extras = trunk.extras or {}
    body: dict[str, Any] = {
        "id": trunk.id,
        "type": trunk.kind,
        "name": trunk.name,
        "location": extras.get("location"),
        "tls": False,
        "codecs": list(trunk.codecs),
        "dtmf": extras.get("dtmf", "RFC2833"),
        "fax": extras.get("fax", "NONE"),
        "numberFormat": trunk.number_format,
        "internationalCallsAllowed": trunk.international_calls_allowed,
        "channelLimit": trunk.channel_limit,
        "anonymization": extras.get("anonymization", "NONE"),
        "billingPackage": extras.get("billingPackage"),
        "sbcHosts": {"primary": sbc_hosts(settings), "backup": []},
        "sipOptions": extras.get("sipOptions"),
        "sourceHosts": list(trunk.source_hosts),
        "destinationHosts": extras.get("destinationHosts") or [f"{trunk.host}:{trunk.port}"],
    }
    if trunk.kind == TrunkKind.STATIC:
        body["strategy"] = extras.get("strategy", "FAILOVER")
    else:
        body["username"] = trunk.username
        body["inviteAuthentication"] = extras.get("inviteAuthentication", False)
    return {key: value for key, value in body.items() if value is not None}


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
        raise _field_error(error) from error
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
        raise _field_error(error) from error
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


_FIELD_OF_ERROR = {
    service.UnsupportedTransport: "transport",
}


def _field_error(error: CallplaneError) -> InfobipError:
    """A core validation error, naming the request field it is about when we know it."""
    for kind, field_name in _FIELD_OF_ERROR.items():
        if isinstance(error, kind):
            return bad_request(error.message, field=field_name)
    return from_core_error(error)
