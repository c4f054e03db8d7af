"""The CCAI Platform call object and request values, exactly as shared/seeds/ccai-platform-call-api.txt shows."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from callplane.core.contact_center.errors import ContactCenterInvalid, InvalidCallType, MenuIdMalformed
from callplane.core.contact_center.models import Agent, CcCallStatus, CcCallType, CcParticipant, Menu, TransferKind
from callplane.core.contact_center.service import CallView, TransferView, display_number
from callplane.core.voice.schemas import PlayContent
from callplane.db.base import utcnow

CALL_TYPES = {
    "Voice Outbound (API)": CcCallType.OUTBOUND,
    "OutboundCall": CcCallType.OUTBOUND,  # deprecated alias
    "Voice Inbound (API)": CcCallType.INBOUND,
    "IncomingCall": CcCallType.INBOUND,  # deprecated alias
    "Voice Scheduled (API)": CcCallType.SCHEDULED,
    "ScheduledCall": CcCallType.SCHEDULED,  # deprecated alias
}
CALL_TYPE_NAMES = {
    CcCallType.OUTBOUND: "Voice Outbound (API)",
    CcCallType.INBOUND: "Voice Inbound (API)",
    CcCallType.SCHEDULED: "Voice Scheduled (API)",
}
VOIP_PROVIDER = "voip_provider_callplane"


def ccai_time(moment: datetime | None) -> str | None:
    """`2019-06-07T01:27:30.406Z`."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_call_type(body: dict[str, Any]) -> CcCallType:
    value = body.get("call_type", body.get("call_tye"))  # the seed's parameter table spells it "call_tye"
    if not isinstance(value, str) or value not in CALL_TYPES:
        raise InvalidCallType()
    return CALL_TYPES[value]


MAX_INTEGER = 2**63 - 1
"""Ids and numbers are stored as 64-bit integers: anything larger cannot name a row."""


def parse_int(value: Any, name: str) -> int | None:
    """An integer id: a JSON number or a string of ASCII digits, within 64 bits; anything else is not well formed.

    `str.isdigit` alone would accept Unicode digits that `int` refuses ("²") or reads ("٣").
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_INTEGER:
        return value
    if isinstance(value, str):
        digits = value.strip()
        if _is_id_text(digits):
            return int(digits)
    raise MenuIdMalformed() if name == "menu_id" else ContactCenterInvalid(f"{name} is not well formed")


def parse_id(value: str) -> int | None:
    """A path id: ASCII digits within 64 bits, else None (no such resource)."""
    return int(value) if _is_id_text(value) else None


def _is_id_text(value: str) -> bool:
    # The length first: int() of thousands of digits is slow, and refused past 4,300.
    return 0 < len(value) <= 19 and value.isascii() and value.isdigit() and int(value) <= MAX_INTEGER


def parse_text(value: Any) -> str | None:
    """Strings as sent; numbers (a numeric ticket_id) as their text."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ContactCenterInvalid("scheduled_at is not well formed")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise ContactCenterInvalid("scheduled_at is not well formed") from error
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _seconds(start: datetime | None, end: datetime | None) -> int:
    if start is None:
        return 0
    return max(0, math.floor(((end or utcnow()) - start).total_seconds()))


def agent_info(agent: Agent | None) -> dict[str, Any] | None:
    if agent is None:
        return None
    return {
        "id": agent.id,
        "agent_number": agent.agent_number,
        "name": f"{agent.first_name} {agent.last_name}".strip() or agent.email,
        "last_name": agent.last_name,
        "first_name": agent.first_name,
        "avatar_url": agent.avatar_url,
    }


def selected_menu(path: list[Menu]) -> dict[str, Any] | None:
    """The call's menu, the last of its path (root first); ids are the per-tenant public ids."""
    if not path:
        return None
    menu = path[-1]
    return {
        "id": menu.public_id,
        "name": menu.name,
        "parent_id": path[-2].public_id if len(path) > 1 else None,
        "position": menu.position,
        "deleted": menu.deleted,
        "menu_type": menu.menu_type,
        "output_msg": menu.output_msg,
        "hidden": menu.hidden,
    }


def menu_path(path: list[Menu]) -> dict[str, Any] | None:
    if not path:
        return None
    return {
        "items_count": len(path),
        "name": " / ".join(menu.name for menu in path),
        "materialized_path": materialized_path(path),
    }


def materialized_path(path: list[Menu]) -> str:
    return "/".join(str(menu.public_id) for menu in path)


def held_seconds(hold_ms: int | None, hold_started_at: datetime | None, until: datetime | None = None) -> int:
    """Whole seconds on hold: the finished holds, and the one under way (counting until `until`, else now)."""
    total_ms = hold_ms or 0
    if hold_started_at is not None:
        total_ms += max(0, round(((until or utcnow()) - hold_started_at).total_seconds() * 1000))
    return total_ms // 1000


def transfer(view: TransferView) -> dict[str, Any]:
    """A `transfers[]` entry, in the seed's keys and order; menus as `menu_path` objects, agents as `agent_info`."""
    item = view.transfer
    return {
        "id": item.id,
        "status": item.status,
        "fail_reason": item.fail_reason,
        "created_at": ccai_time(item.created_at),
        "from_menu": menu_path(view.from_path),
        "to_menu": menu_path(view.to_path),
        "from_agent": agent_info(view.from_agent),
        "to_agent": agent_info(view.to_agent),
    }


def participant(item: CcParticipant, call_id: int) -> dict[str, Any]:
    connected = item.connected_at is not None
    return {
        "id": item.id,
        "type": item.kind,
        "status": item.status,
        "call_id": call_id,
        "user_id": item.agent_id,
        "end_user_id": item.end_user_id,
        "call_duration": _seconds(item.connected_at, item.ended_at) if connected else None,
        "hold_duration": held_seconds(item.hold_ms, item.hold_started_at, item.ended_at) if connected else None,
        "connected_at": ccai_time(item.connected_at),
        "ended_at": ccai_time(item.ended_at),
        "fail_reason": item.fail_reason,
    }


def status_of(view: CallView) -> tuple[str, str, str | None]:
    """The wire status, fail reason and details: a cancelled scheduled call is `failed` (the seed's status
    table has no cancelled state)."""
    call = view.call
    if call.status == CcCallStatus.CANCELLED:
        return "failed", "cancelled", "the scheduled call was cancelled"
    return call.status, call.fail_reason, call.fail_details


def call_object(view: CallView, base_url: str = "") -> dict[str, Any]:
    """The call object; `recording_url` is the native API's normalized recording (Bearer with the same token)."""
    call = view.call
    status, fail_reason, fail_details = status_of(view)
    waited_until = call.assigned_at or (call.ends_at if call.queued_at else None)
    live_connected = call.connected_at is not None
    return {
        "id": call.public_id,
        "parent_id": view.parent_public_id,
        "lang": call.lang,
        "call_type": CALL_TYPE_NAMES[CcCallType(call.call_type)],
        "status": status,
        "created_at": ccai_time(call.created_at),
        "queued_at": ccai_time(call.queued_at),
        "assigned_at": ccai_time(call.assigned_at),
        "connected_at": ccai_time(call.connected_at),
        "ends_at": ccai_time(call.ends_at),
        "scheduled_at": ccai_time(call.scheduled_at),
        "wait_duration": _seconds(call.queued_at, waited_until) if call.queued_at else 0,
        "call_duration": _seconds(call.connected_at, call.ends_at) if live_connected else 0,
        "hold_duration": held_seconds(call.hold_ms, call.hold_started_at, call.ends_at),
        "rating": None,
        "has_feedback": False,
        "voip_provider": VOIP_PROVIDER,
        "out_ticket_id": call.out_ticket_id,
        "out_ticket_url": call.out_ticket_url,
        "verified": call.verified_customer,
        "recording_url": (
            f"{base_url}/v1/calls/{call.core_call_id}/recording" if "recording_file_id" in call.extras else None
        ),
        "recording_permission": call.recording_permission.removeprefix("recording_permission_"),
        "voicemail_reason": "not_voicemail",
        "deflection": "no_deflection",
        "disconnected_by": call.disconnected_by,
        "fail_reason": fail_reason,
        "fail_details": fail_details,
        "support_number": None,
        "selected_menu": selected_menu(view.path),
        "menu_path": menu_path(view.path),
        "agent_info": agent_info(view.agent),
        "end_user": (
            {
                "id": view.end_user.id,
                "identifier": view.end_user.identifier,
                "out_contact_id": view.end_user.out_contact_id,
            }
            if view.end_user is not None
            else None
        ),
        "photos": [],
        "videos": [],
        "transfers": [transfer(item) for item in view.transfers],
        "deflection_details": [],
        "participants": [participant(item, call.public_id) for item in view.participants],
        "offer_type": None,
        "offer_events": [],
        "answer_type": "manual",
        "outbound_number": display_number(call.outbound_number_e164) if call.outbound_number_e164 else None,
    }


def customer_flags(view_call: Any) -> dict[str, bool]:
    return {
        "verified_customer": view_call.verified_customer,
        "bad_actor": view_call.bad_actor,
        "repeat_customer": view_call.repeat_customer,
    }


def parse_transfer_type(body: dict[str, Any]) -> TransferKind:
    """`transfer_type` (ours): `cold` (the default) or `warm`."""
    value = body.get("transfer_type", "cold")
    if value not in ("cold", "warm"):
        raise ContactCenterInvalid("transfer_type must be cold or warm")
    return TransferKind(value)


def parse_hold_music(body: dict[str, Any]) -> PlayContent | None:
    """`music_url` (fetched under the outbound target policy) or `music_file_id` (an uploaded voice file)."""
    url, file_id = parse_text(body.get("music_url")), parse_text(body.get("music_file_id"))
    if url is not None and file_id is not None:
        raise ContactCenterInvalid("music_url and music_file_id cannot both be given")
    if url is not None:
        return PlayContent(url=url)
    if file_id is not None:
        return PlayContent(file_id=file_id)
    return None
