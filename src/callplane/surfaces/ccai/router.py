"""The CCAI Platform call API (`/apps/api/v1`): HTTP Basic auth, `{"message": ...}` errors.

Handlers authenticate, parse the vendor's JSON into core values, call one service function, commit, render.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from callplane.core.contact_center import service as cc
from callplane.core.contact_center.models import CcCall
from callplane.core.tenancy.schemas import Principal
from callplane.errors import CallplaneError, NotFound
from callplane.surfaces.ccai import wire
from callplane.surfaces.context import AppContext, ContextDep
from callplane.surfaces.http import JsonBodyError, JsonRoute, json_response, read_json

T = TypeVar("T")
PREFIX = "/apps/api/v1"
MAX_PER_PAGE = 100


class CcaiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _credentials(request: Request) -> list[str]:
    """Candidate API tokens from `Authorization: Basic base64(user:password)`: the password (the API token,
    with the subdomain as user), or the user when the password is empty."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return []
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return []
    user, _, password = decoded.partition(":")
    return [token for token in (password, user) if token]


async def require_principal(request: Request, context: ContextDep) -> Principal:
    """The account of the API token in the Basic credentials, with its per-minute limit applied (429)."""
    found = None
    async with context.sessions() as session:
        for token in _credentials(request):
            found = await context.lookups.principal_for_token(session, token)
            if found is not None:
                break
    if found is None:
        raise CcaiError(401, "Unauthorized", headers={"WWW-Authenticate": 'Basic realm="callplane"'})
    limit = found.account.rate_limit_per_minute
    if limit is not None:
        retry_after = context.rate_limiter.hit(f"ccai:{found.account.id}", limit)
        if retry_after is not None:
            raise CcaiError(429, "Too many requests", headers={"Retry-After": str(int(retry_after))})
    return found


PrincipalDep = Annotated[Principal, Depends(require_principal)]


def _error(error: Exception) -> Response:
    if isinstance(error, CcaiError):
        return json_response({"message": error.message}, error.status, error.headers)
    assert isinstance(error, CallplaneError)
    status = 404 if isinstance(error, NotFound) else 400 if error.permanent else 503
    message = "Resource not found" if isinstance(error, NotFound) else error.message
    return json_response({"message": message}, status)


async def _guard(work: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await work()
    except (CcaiError, CallplaneError) as error:
        return _error(error)


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
    return json_response(wire.call_object(view, _base(request)), status)


router = APIRouter(route_class=JsonRoute, prefix=PREFIX, tags=["CCAI Platform: calls"])


@router.post("/calls")
async def create_call(request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    """Voice Outbound (API), Voice Inbound (API), Voice Scheduled (API) and their deprecated aliases."""

    async def work() -> Response:
        body = await _body(request)
        call_type = wire.parse_call_type(body)
        lang = wire.parse_text(body.get("lang")) or "en"
        call_in = cc.CallRequest(
            call_type=call_type,
            lang=lang.lower(),
            agent_email=wire.parse_text(body.get("agent_email")),
            ticket_id=wire.parse_text(body.get("ticket_id")),
            end_user_number=wire.parse_text(body.get("end_user_number")),
            outbound_number=wire.parse_text(body.get("outbound_number")),
            menu_id=wire.parse_int(body.get("menu_id"), "menu_id"),
            parent_call_id=wire.parse_int(body.get("call_id"), "call_id"),
            scheduled_at=wire.parse_time(body.get("scheduled_at")),
            recording_permission=wire.parse_text(body.get("recording_permission")),
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

    return await _guard(work)


@router.get("/calls")
async def list_calls(request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    """Newest first; `page` (1-based) and `per` (1-100, default 100); filters `status`, `call_type`, `agent_id`,
    `menu_id`, `created_at[from]`, `created_at[to]`. `Total` and `Per-Page` headers."""

    async def work() -> Response:
        query = request.query_params
        page = wire.parse_int(query.get("page"), "page") or 1
        per = min(MAX_PER_PAGE, max(1, wire.parse_int(query.get("per"), "per") or MAX_PER_PAGE))
        call_type = query.get("call_type")
        filters = cc.CallFilter(
            status=query.get("status") or None,
            call_type=wire.CALL_TYPES.get(call_type) if call_type else None,
            agent_id=wire.parse_int(query.get("agent_id"), "agent_id"),
            menu_id=wire.parse_int(query.get("menu_id"), "menu_id"),
            created_from=wire.parse_time(query.get("created_at[from]")),
            created_to=wire.parse_time(query.get("created_at[to]")),
        )
        if call_type and filters.call_type is None:
            raise CcaiError(400, "Invalid call type")
        async with context.sessions() as session:
            calls, total = await cc.list_calls(
                session=session,
                account_id=principal.account.id,
                filters=filters,
                offset=min((max(page, 1) - 1) * per, wire.MAX_INTEGER),  # past the last row: an empty page
                limit=per,
            )
            views = await cc.call_views(session=session, calls=calls)
            body = [wire.call_object(view, _base(request)) for view in views]
        return json_response(body, 200, {"Total": str(total), "Per-Page": str(per)})

    return await _guard(work)


@router.get("/calls/{call_id}")
async def get_call(call_id: str, request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    async def work() -> Response:
        async with context.sessions() as session:
            call = await cc.get_call(session=session, account_id=principal.account.id, call_id=_id(call_id))
        return await _render(context, request, call)

    return await _guard(work)


@router.get("/calls/{call_id}/customer_flag")
async def get_customer_flag(call_id: str, context: ContextDep, principal: PrincipalDep) -> Response:
    async def work() -> Response:
        async with context.sessions() as session:
            call = await cc.get_call(session=session, account_id=principal.account.id, call_id=_id(call_id))
        return json_response(wire.customer_flags(call))

    return await _guard(work)


@router.patch("/calls/{call_id}/customer_flag")
async def update_customer_flag(
    call_id: str, request: Request, context: ContextDep, principal: PrincipalDep
) -> Response:
    """Body `{verified_customer, bad_actor, repeat_customers}` (the seed's spelling; `repeat_customer` too)."""

    async def work() -> Response:
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
            answer = wire.customer_flags(call)
        return json_response(answer)

    return await _guard(work)


@router.patch("/calls/scheduled/cancel")
async def cancel_scheduled_calls(request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    """Bulk cancel `{"call_ids": [...]}`: each call is cancelled on its own; the answer says which were."""

    async def work() -> Response:
        body = await _body(request)
        ids = body.get("call_ids")
        if not isinstance(ids, list) or not ids:
            raise CcaiError(400, "call_ids is required")
        cancelled: list[int] = []
        refused: list[dict[str, Any]] = []
        for raw in ids:
            call_id = wire.parse_int(raw, "call_ids")
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

    return await _guard(work)


@router.patch("/calls/scheduled/{call_id}/cancel")
async def cancel_scheduled_call(
    call_id: str, request: Request, context: ContextDep, principal: PrincipalDep
) -> Response:
    async def work() -> Response:
        async with context.sessions() as session, session.begin():
            call = await cc.cancel_scheduled(session=session, account_id=principal.account.id, call_id=_id(call_id))
        return await _render(context, request, call)

    return await _guard(work)


@router.get("/wait_times")
async def wait_times(request: Request, context: ContextDep, principal: PrincipalDep) -> Response:
    """`[{menu_id, wait, materialized_path}]`, `wait` in whole minutes (rounded up) from real queue data."""

    async def work() -> Response:
        query = request.query_params
        if query.get("channel_type") not in (None, "", "voice_call"):
            return json_response([])  # only voice queues exist here
        async with context.sessions() as session:
            estimates = await cc.wait_estimates(
                session=session,
                account_id=principal.account.id,
                lang=query.get("lang") or None,
                menu_id=wire.parse_int(query.get("menu_id"), "menu_id"),
                menu_type=query.get("menu_type") or None,
            )
            low = wire.parse_int(query.get("wait[from]"), "wait[from]")
            high = wire.parse_int(query.get("wait[to]"), "wait[to]")
            body = []
            for menu, seconds in estimates:
                minutes = math.ceil(seconds / 60)
                if (low is not None and minutes < low) or (high is not None and minutes > high):
                    continue
                path = await cc.menu_path(session=session, menu=menu)
                body.append(
                    {"menu_id": menu.public_id, "wait": minutes, "materialized_path": wire.materialized_path(path)}
                )
        return json_response(body)

    return await _guard(work)


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def not_found(path: str) -> Response:
    """Anything else under the API's base: the seed's 404."""
    return json_response({"message": "Resource not found - Please check your subdomain"}, 404)


def _id(value: str) -> int:
    found = wire.parse_id(value)
    if found is None:
        raise cc.CallNotFound()
    return found


async def _on_ccai_error(request: Request, error: Exception) -> Response:
    return _error(error)


def install_error_handler(app: FastAPI) -> None:
    """Errors raised outside a handler (authentication) in the `{"message": ...}` body."""
    app.add_exception_handler(CcaiError, _on_ccai_error)
