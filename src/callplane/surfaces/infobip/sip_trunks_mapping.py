"""SIP trunk bodies -> core's `TrunkSpec`, and trunks -> `CallsSipTrunkResponse` (docs/voice.md, "SIP trunks").

A STATIC trunk's peer is its first `destinationHosts` entry (`host[:port]`); a REGISTERED trunk is one callplane
registers *with* (a carrier account): it takes the same `destinationHosts` plus the callplane fields `username` and
`password`. `tls: true` and any transport but UDP answer 400 until TCP/TLS are built. Vendor-only fields are kept
and echoed, not acted on.
"""

from __future__ import annotations

from typing import Any

from callplane.core.voice import trunks as service
from callplane.core.voice.trunk_models import SipTrunk, TrunkKind
from callplane.errors import CallplaneError
from callplane.settings import Settings
from callplane.surfaces.infobip.errors import InfobipError, bad_request, from_core_error
from callplane.surfaces.infobip.sip_trunks_wire import SipTrunkRequest

ECHOED_FIELDS = ("location", "billingPackage", "dtmf", "fax", "anonymization", "strategy", "sipOptions")


def peer_address(entry: str) -> tuple[str, int, str]:
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
    host, port, transport = peer_address(body.destinationHosts[0])
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


_FIELD_OF_ERROR = {
    service.UnsupportedTransport: "transport",
}


def field_error(error: CallplaneError) -> InfobipError:
    """A core validation error, naming the request field it is about when we know it."""
    for kind, field_name in _FIELD_OF_ERROR.items():
        if isinstance(error, kind):
            return bad_request(error.message, field=field_name)
    return from_core_error(error)
