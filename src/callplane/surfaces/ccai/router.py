"""The CCAI Platform call API (`/apps/api/v1`): the routes only.

Each route is authenticated (auth.py), parses the vendor's JSON into core values (mapping.py), calls one service
function, commits and renders; its errors are written in the `{"message": ...}` body by its route class (errors.py).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from callplane.core.contact_center import service as cc
from callplane.core.contact_center.errors import ContactCenterInvalid
from callplane.core.contact_center.models import CcCall
from callplane.errors import CallplaneError, NotFound
from callplane.live.contact_center import NOT_CONNECTED
from callplane.live.control import VoiceService
from callplane.surfaces.ccai import mapping
from callplane.surfaces.ccai.auth import PrincipalDep
from callplane.surfaces.ccai.errors import CcaiError, CcaiRoute
from callplane.surfaces.context import AppContext, ContextDep
from callplane.surfaces.http import JsonBodyError, json_response, read_json

PREFIX = "/apps/api/v1"
MAX_PER_PAGE = 100


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await read_json(request)
    except JsonBodyError as error:
        raise CcaiError(
            400, "Missing parameter - check to ensure that the required parameters have been added"
        ) from error
    if not isinstance(body, dict):
        raise CcaiError(400, "Missing parameter - check to ensure that the required parameters have been added")
    return body


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _render(context: AppContext, request: Request, call: CcCall, status: int = 200) -> Response:
    async with context.sessions() as session:
        fresh = await session.get(CcCall, call.id)
        assert fresh is not None
        view = await cc.call_view(session=session, call=fresh)
    return json_response(mapping.call_object(view, _base(request)), status)


router = APIRouter(route_class=CcaiRoute, prefix=PREFIX, tags=["CCAI Platform: calls"])


@router.post("/calls")
async def create_call(request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    """Voice Outbound (API), Voice Inbound (API), Voice Scheduled (API) and their deprecated aliases."""
    body = await _body(request)
    call_type = mapping.parse_call_type(body)
    lang = mapping.parse_text(body.get("lang")) or "en"
    call_in = cc.CallRequest(
        call_type=call_type,
        lang=lang.lower(),
        agent_email=mapping.parse_text(body.get("agent_email")),
        ticket_id=mapping.parse_text(body.get("ticket_id")),
        end_user_number=mapping.parse_text(body.get("end_user_number")),
        outbound_number=mapping.parse_text(body.get("outbound_number")),
        menu_id=mapping.parse_int(body.get("menu_id"), "menu_id"),
        parent_call_id=mapping.parse_int(body.get("call_id"), "call_id"),
        scheduled_at=mapping.parse_time(body.get("scheduled_at")),
        recording_permission=mapping.parse_text(body.get("recording_permission")),
    )
    async with context.sessions() as session, session.begin():
        result = await cc.create_call(session=session, account_id=principal.account.id, request=call_in)
    if isinstance(result, cc.Accepted):
        # Someone must choose in the agent's widget; nothing was placed. The seed shows the request echoed.
        echoed = {
            name: body[name]
            for name in ("call_type", "agent_email", "ticket_id", "end_user_number", "lang")
            if name in body
        }
        return json_response(echoed, 202)
    if context.contact_center is not None:
        context.contact_center.poke()
    return await _render(context, request, result, 201)


@router.get("/calls")
async def list_calls(request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    """Newest first; `page` (1-based) and `per` (1-100, default 100); filters `status`, `call_type`, `agent_id`,
    `menu_id`, `created_at[from]`, `created_at[to]`. `Total` and `Per-Page` headers."""
    query = request.query_params
    page = mapping.parse_int(query.get("page"), "page") or 1
    per = min(MAX_PER_PAGE, max(1, mapping.parse_int(query.get("per"), "per") or MAX_PER_PAGE))
    call_type = query.get("call_type")
    filters = cc.CallFilter(
        status=query.get("status") or None,
        call_type=mapping.CALL_TYPES.get(call_type) if call_type else None,
        agent_id=mapping.parse_int(query.get("agent_id"), "agent_id"),
        menu_id=mapping.parse_int(query.get("menu_id"), "menu_id"),
        created_from=mapping.parse_time(query.get("created_at[from]")),
        created_to=mapping.parse_time(query.get("created_at[to]")),
    )
    if call_type and filters.call_type is None:
        raise CcaiError(400, "Invalid call type")
    async with context.sessions() as session:
        calls, total = await cc.list_calls(
            session=session,
            account_id=principal.account.id,
            filters=filters,
            offset=min((max(page, 1) - 1) * per, mapping.MAX_INTEGER),  # past the last row: an empty page
            limit=per,
        )
        views = await cc.call_views(session=session, calls=calls)
        body = [mapping.call_object(view, _base(request)) for view in views]
    return json_response(body, 200, {"Total": str(total), "Per-Page": str(per)})


@router.get("/calls/{call_id}")
async def get_call(call_id: str, request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    async with context.sessions() as session:
        call = await cc.get_call(session=session, account_id=principal.account.id, call_id=_id(call_id))
    return await _render(context, request, call)


@router.get("/calls/{call_id}/customer_flag")
async def get_customer_flag(call_id: str, context: ContextDep, principal: PrincipalDep) -> Response:
    async with context.sessions() as session:
        call = await cc.get_call(session=session, account_id=principal.account.id, call_id=_id(call_id))
    return json_response(mapping.customer_flags(call))


@router.patch("/calls/{call_id}/customer_flag")
async def update_customer_flag(
    call_id: str, request: Request, context: ContextDep, principal: PrincipalDep
) -> Response:
    """Body `{verified_customer, bad_actor, repeat_customers}` (the seed's spelling; `repeat_customer` too)."""
    body = await _body(request)
    flags: dict[str, bool] = {}
    for name, key in (
        ("verified_customer", "verified_customer"),
        ("bad_actor", "bad_actor"),
        ("repeat_customers", "repeat_customer"),
        ("repeat_customer", "repeat_customer"),
    ):
        if name in body:
            value = body[name]
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise CcaiError(400, f"{name} must be a boolean")
            flags[key] = value
    async with context.sessions() as session, session.begin():
        call = await cc.set_customer_flags(
            session=session, account_id=principal.account.id, call_id=_id(call_id), flags=flags
        )
        answer = mapping.customer_flags(call)
    return json_response(answer)


@router.patch("/calls/scheduled/cancel")
async def cancel_scheduled_calls(request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    """Bulk cancel `{"call_ids": [...]}`: each call is cancelled on its own; the answer says which were."""
    body = await _body(request)
    ids = body.get("call_ids")
    if not isinstance(ids, list) or not ids:
        raise CcaiError(400, "call_ids is required")
    cancelled: list[int] = []
    refused: list[dict[str, Any]] = []
    for raw in ids:
        call_id = mapping.parse_int(raw, "call_ids")
        if call_id is None:
            raise CcaiError(400, "call_ids is not well formed")
        try:
            async with context.sessions() as session, session.begin():
                await cc.cancel_scheduled(session=session, account_id=principal.account.id, call_id=call_id)
            cancelled.append(call_id)
        except CallplaneError as error:
            refused.append(
                {"id": call_id, "message": "Resource not found" if isinstance(error, NotFound) else error.message}
            )
    return json_response({"cancelled_call_ids": cancelled, "failed": refused})


@router.patch("/calls/scheduled/{call_id}/cancel")
async def cancel_scheduled_call(
    call_id: str, request: Request, context: ContextDep, principal: PrincipalDep
) -> Response:
    async with context.sessions() as session, session.begin():
        call = await cc.cancel_scheduled(session=session, account_id=principal.account.id, call_id=_id(call_id))
    return await _render(context, request, call)


@router.get("/wait_times")
async def wait_times(request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    """`[{menu_id, wait, materialized_path}]`, `wait` in whole minutes (rounded up) from real queue data."""
    query = request.query_params
    if query.get("channel_type") not in (None, "", "voice_call"):
        return json_response([])  # only voice queues exist here
    async with context.sessions() as session:
        estimates = await cc.wait_estimates(
            session=session,
            account_id=principal.account.id,
            lang=query.get("lang") or None,
            menu_id=mapping.parse_int(query.get("menu_id"), "menu_id"),
            menu_type=query.get("menu_type") or None,
        )
        low = mapping.parse_int(query.get("wait[from]"), "wait[from]")
        high = mapping.parse_int(query.get("wait[to]"), "wait[to]")
        body = []
        for menu, seconds in estimates:
            minutes = math.ceil(seconds / 60)
            if (low is not None and minutes < low) or (high is not None and minutes > high):
                continue
            path = await cc.menu_path(session=session, menu=menu)
            body.append(
                {"menu_id": menu.public_id, "wait": minutes, "materialized_path": mapping.materialized_path(path)}
            )
    return json_response(body)


# ---- an agent's actions on a live call (callplane additions: the seed documents only the call object's
# transfers[] and hold_duration). They run where the engine runs (docs/contact-center.md "Hold and transfers").


def _voice(context: AppContext) -> VoiceService:
    if context.voice is None:
        raise CcaiError(503, "Hold and transfers need the Calls API (CALLPLANE_VOICE_ENABLED)")
    return context.voice


def _end_user_leg(call: CcCall) -> str:
    """The voice call the action is relayed by: the node carrying it runs the contact-center runtime's action."""
    if not call.end_user_leg_id:
        raise ContactCenterInvalid(NOT_CONNECTED)
    return call.end_user_leg_id


async def _optional_body(request: Request) -> dict[str, Any]:
    return await _body(request) if (await request.body()).strip() else {}


@router.post("/calls/{call_id}/hold")
async def hold_call(call_id: str, request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    """The end user hears music until `resume`: `{"music_url"}` or `{"music_file_id"}` (a `/calls/1/files` upload),
    else the default melody."""
    body = await _optional_body(request)
    voice = _voice(context)
    music = mapping.parse_hold_music(body)
    async with context.sessions() as session:
        call = await cc.get_call(session=session, account_id=principal.account.id, call_id=_id(call_id))
    await voice.contact_center_hold(
        account_id=principal.account.id, call_id=_end_user_leg(call), cc_call_id=call.id, music=music
    )
    return await _render(context, request, call)


@router.post("/calls/{call_id}/resume")
async def resume_call(call_id: str, request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    voice = _voice(context)
    async with context.sessions() as session:
        call = await cc.get_call(session=session, account_id=principal.account.id, call_id=_id(call_id))
    await voice.contact_center_resume(account_id=principal.account.id, call_id=_end_user_leg(call), cc_call_id=call.id)
    return await _render(context, request, call)


@router.post("/calls/{call_id}/transfers")
async def transfer_call(call_id: str, request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    """`{"transfer_type": "cold"|"warm", "agent_email"}` or `{..., "menu_id"}`: 201 with the call object, whose
    `transfers[]` holds the new transfer (`transferring`)."""
    body = await _body(request)
    voice = _voice(context)
    kind = mapping.parse_transfer_type(body)
    email = mapping.parse_text(body.get("agent_email"))
    menu_public_id = mapping.parse_int(body.get("menu_id"), "menu_id")
    async with context.sessions() as session:
        call = await cc.get_call(session=session, account_id=principal.account.id, call_id=_id(call_id))
        agent_id = menu_id = None
        if email is not None:
            agent = await cc.agent_by_email(session=session, account_id=principal.account.id, email=email)
            if agent is None:
                raise CcaiError(400, "Not a valid agent email")
            agent_id = agent.id
        if menu_public_id is not None:
            menu = await cc.menu_by_public_id(
                session=session, account_id=principal.account.id, public_id=menu_public_id
            )
            if menu is None or menu.deleted:
                raise CcaiError(400, f"menu_id {menu_public_id} is not found")
            menu_id = menu.id
    await voice.contact_center_transfer(
        account_id=principal.account.id,
        call_id=_end_user_leg(call),
        cc_call_id=call.id,
        kind=kind.value,
        to_agent_id=agent_id,
        to_menu_id=menu_id,
    )
    return await _render(context, request, call, 201)


@router.post("/calls/{call_id}/transfers/{transfer_id}/complete")
async def complete_transfer(
    call_id: str, transfer_id: str, request: Request, context: ContextDep, principal: PrincipalDep
) -> Response:
    """A warm transfer whose new agent answered: the first agent leaves, the end user talks to the new agent."""
    voice = _voice(context)
    async with context.sessions() as session:
        call = await cc.get_call(session=session, account_id=principal.account.id, call_id=_id(call_id))
    await voice.contact_center_complete_transfer(
        account_id=principal.account.id, call_id=_end_user_leg(call), cc_call_id=call.id, transfer_id=_id(transfer_id)
    )
    return await _render(context, request, call)


@router.post("/calls/{call_id}/transfers/{transfer_id}/cancel")
async def cancel_transfer(
    call_id: str, transfer_id: str, request: Request, context: ContextDep, principal: PrincipalDep
) -> Response:
    """A warm transfer called off: the new agent is hung up; the end user stays on hold with the first agent."""
    voice = _voice(context)
    async with context.sessions() as session:
        call = await cc.get_call(session=session, account_id=principal.account.id, call_id=_id(call_id))
    await voice.contact_center_cancel_transfer(
        account_id=principal.account.id, call_id=_end_user_leg(call), cc_call_id=call.id, transfer_id=_id(transfer_id)
    )
    return await _render(context, request, call)


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def not_found(path: str) -> Response:
    """Anything else under the API's base: the seed's 404."""
    return json_response({"message": "Resource not found - Please check your subdomain"}, 404)


def _id(value: str) -> int:
    found = mapping.parse_id(value)
    if found is None:
        raise cc.CallNotFound()
    return found
