"""Invoca Calls In Progress API: find live calls (`GET …/calls_in_progress/current_calls`), the attribution form
(`GET …/calls_in_progress`) and the update (`PUT|POST …/calls_in_progress`), each with or without `.json`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from callplane.core.call_tracking import live
from callplane.core.tenancy.schemas import Principal
from callplane.surfaces.context import app_context
from callplane.surfaces.http import BodyTooLarge, JsonBodyError, json_response, read_json
from callplane.surfaces.invoca import errors
from callplane.surfaces.invoca.auth import oauth_token
from callplane.surfaces.invoca.calls_in_progress_mapping import (
    attribution_call,
    current_call,
    parse_update,
    updated_call,
)

CALLS_IN_PROGRESS_API_VERSIONS = ["2022-08-01"]
MAX_UPDATE_BYTES = 64 * 1024

router = APIRouter(route_class=errors.CallsInProgressRoute, tags=["Invoca Calls In Progress"])


# A read gets a plain connection (no ORM session: setting one up and closing it cost about as much as the
# lookup's queries); the update a session, in one transaction.
ReadWork = Callable[[AsyncConnection, live.Scope, str], Awaitable[Response]]
UpdateWork = Callable[[AsyncSession, live.Scope], Awaitable[Response]]


_READ_ENGINES: dict[int, AsyncEngine] = {}


def _read_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine in autocommit mode: a lookup is a few reads, and BEGIN/COMMIT would be two more round trips
    (on PostgreSQL, most of a lookup's cost). SQLite keeps its own engine: its `begin` hook issues BEGIN
    IMMEDIATE (db/engine.py), which autocommit mode would never commit."""
    if engine.dialect.name == "sqlite":
        return engine
    found = _READ_ENGINES.get(id(engine))
    if found is None or found.sync_engine.pool is not engine.sync_engine.pool:
        found = _READ_ENGINES[id(engine)] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found


def _unsupported(version: str) -> Response | None:
    if version in CALLS_IN_PROGRESS_API_VERSIONS:
        return None
    supported = ", ".join(CALLS_IN_PROGRESS_API_VERSIONS)
    message = f"API version '{version}' is not valid; supported: {supported}"
    return errors.calls_in_progress_error(400, "InvalidApiVersion", message)


async def _scope(request: Request, connection: AsyncConnection, principal: Principal) -> live.Scope:
    params = request.query_params
    return await live.resolve_scope(
        connection=connection,
        principal=principal,
        organization_type=params.get("organization_type"),
        organization_id=params.get("id"),
    )


async def _serve_read(request: Request, version: str, work: ReadWork) -> Response:
    """Version, token, organization scope, then the work, on one autocommit connection."""
    context = app_context(request)
    if (refused := _unsupported(version)) is not None:
        return refused
    token = oauth_token(request, None)
    if not token:
        return errors.calls_in_progress_error(401, "NotAuthorized")
    async with _read_engine(context.engine).connect() as connection:
        principal = context.lookups.cached_principal(token)
        if principal is None:  # not cached: an ORM session for this once
            async with context.sessions(bind=connection) as session:
                principal = await context.lookups.principal_for_token(session, token)
        if principal is None:
            return errors.calls_in_progress_error(401, "NotAuthorized")
        scope = await _scope(request, connection, principal)
        return await work(connection, scope, principal.account.time_zone)


async def _serve_update(request: Request, version: str, body: object, work: UpdateWork) -> Response:
    """Version, token, organization scope, then the work, in one transaction."""
    context = app_context(request)
    if (refused := _unsupported(version)) is not None:
        return refused
    token = oauth_token(request, body)
    async with context.sessions() as session, session.begin():
        principal = await context.lookups.principal_for_token(session, token) if token else None
        if principal is None:
            return errors.calls_in_progress_error(401, "NotAuthorized")
        scope = await _scope(request, await session.connection(), principal)
        return await work(session, scope)


def _search(request: Request) -> live.Search:
    params = request.query_params
    return live.parse_search(
        transaction_id=params.get("transaction_id"),
        external_unique_id=params.get("external_unique_id"),
        calling_phone_number=params.get("calling_phone_number"),
        destination_phone_number=params.get("destination_phone_number"),
    )


@router.get("/api/{version}/calls_in_progress/current_calls.json")
@router.get("/api/{version}/calls_in_progress/current_calls", include_in_schema=False)
async def current_calls(version: str, request: Request) -> Response:
    """Calls in progress of the organization, by transaction id, external unique id or phone pair (or all)."""

    async def work(connection: AsyncConnection, scope: live.Scope, time_zone: str) -> Response:
        found = await live.find_live_calls(connection=connection, scope=scope, search=_search(request))
        return json_response({"current_calls": [current_call(call, time_zone) for call in found]})

    return await _serve_read(request, version, work)


@router.get("/api/{version}/calls_in_progress.json")
@router.get("/api/{version}/calls_in_progress", include_in_schema=False)
async def attribution(version: str, request: Request) -> Response:
    """The attribution form: one call by transaction id, identifiers and phones only."""

    async def work(connection: AsyncConnection, scope: live.Scope, time_zone: str) -> Response:
        search = _search(request)
        if search.transaction_id is None:
            return errors.calls_in_progress_error(400, "InvalidParameters", "transaction_id is required")
        found = await live.find_live_calls(connection=connection, scope=scope, search=search)
        return json_response({"current_calls": [attribution_call(call, time_zone) for call in found]})

    return await _serve_read(request, version, work)


@router.put("/api/{version}/calls_in_progress.json", status_code=202)
@router.post("/api/{version}/calls_in_progress.json", status_code=202)  # one route per method: unique operationIds
@router.api_route("/api/{version}/calls_in_progress", methods=["PUT", "POST"], include_in_schema=False)
async def update(version: str, request: Request) -> Response:
    """Set a live call's external unique id and custom data (202), 404 when no live call matches."""
    try:
        body = await read_json(request, max_bytes=MAX_UPDATE_BYTES)
    except (JsonBodyError, BodyTooLarge):
        body = None

    async def work(session: AsyncSession, scope: live.Scope) -> Response:
        external_unique_id, custom_data, problems = parse_update(body)
        if problems:
            return errors.calls_in_progress_error(400, "InvalidParameters", "; ".join(problems))
        params = request.query_params
        changed = await live.update_call_in_progress(
            session=session,
            scope=scope,
            search=live.parse_search(
                transaction_id=params.get("transaction_id"),
                external_unique_id=params.get("external_unique_id"),
                calling_phone_number=None,
                destination_phone_number=None,
            ),
            external_unique_id=external_unique_id,
            custom_data=custom_data,
        )
        return json_response({"current_call": updated_call(changed)}, 202)

    return await _serve_update(request, version, body, work)
