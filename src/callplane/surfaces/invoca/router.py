"""Invoca Call Ingestion API: POST/PUT /api/{version}/calls(.json); the Signal and Calls In Progress API routers
are included here."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from callplane.core.ingestion import service as ingestion
from callplane.core.tenancy.access import check_network_may_ingest
from callplane.surfaces.context import app_context
from callplane.surfaces.http import json_response
from callplane.surfaces.invoca import errors
from callplane.surfaces.invoca.auth import read_request
from callplane.surfaces.invoca.calls_in_progress import router as calls_in_progress_router
from callplane.surfaces.invoca.mapping import parse_call_request
from callplane.surfaces.invoca.signal_api import router as signal_api_router

router = APIRouter(route_class=errors.InvocaRoute, tags=["Invoca Call Ingestion"])


@router.post("/api/{version}/calls.json", status_code=201)
@router.put("/api/{version}/calls.json", status_code=201)  # one route per method: unique operationIds
@router.api_route("/api/{version}/calls", methods=["POST", "PUT"], status_code=201, include_in_schema=False)
async def create_call(version: str, request: Request) -> Response:
    """Submit a finished call with its recording (201 new, 202 already received, 409 id reused)."""
    # The hot path of ingestion: context and session are taken directly rather than through
    # dependency injection, which costs a measurable share of each request here.
    context = app_context(request)
    if version not in context.settings.ingestion_api_versions:
        return errors.invalid_version(version, context.settings.ingestion_api_versions)
    incoming = await read_request(request)
    # No session.begin(): a transaction starts only if a lookup misses its cache or SQLite stores the call
    # (autobegin), and is committed below; closing the session rolls back whatever an early return left.
    async with context.sessions() as session:
        principal = await incoming.principal(session, context.lookups)
        if principal is None:
            return errors.unauthorized()
        check_network_may_ingest(principal)
        if incoming.body is None:
            return errors.record_invalid([incoming.unreadable])
        submission, problems = parse_call_request(
            incoming.body,
            time_zone=principal.account.time_zone,
            country_codes=context.settings.ingestion_country_codes,
        )
        if submission is None:
            return errors.record_invalid(problems)
        accepted = await ingestion.submit_single_call(
            session=session,
            lookups=context.lookups,
            principal=principal,
            submission=submission,
            wire_problems=problems,
            max_attempts=context.settings.job_max_attempts,
        )
        await session.commit()
    return json_response({"cuid": accepted.call_id}, 201 if accepted.created else 202)


# Included after the ingestion routes: requests are matched against routes in order, and calls are the hot path.
router.include_router(signal_api_router)
router.include_router(calls_in_progress_router)
