"""Invoca Signal API: POST/PUT /api/{version}/transactions(.json) applies signals and custom data to a call."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from callplane.core.signals import service as signals
from callplane.core.tenancy.access import check_network
from callplane.surfaces.context import app_context
from callplane.surfaces.http import json_response
from callplane.surfaces.invoca import errors
from callplane.surfaces.invoca.auth import read_request
from callplane.surfaces.invoca.signal_mapping import parse_signal_request, render_applied

SIGNAL_API_VERSIONS = ["2018-02-01"]  # the only version with "signals" as a list and "custom_data"

router = APIRouter(route_class=errors.InvocaRoute, tags=["Invoca Signal API"])


@router.post("/api/{version}/transactions.json")
@router.put("/api/{version}/transactions.json")  # one route per method: unique operationIds
@router.api_route("/api/{version}/transactions", methods=["POST", "PUT"], include_in_schema=False)
async def apply_signals(version: str, request: Request) -> Response:
    """Apply signals and custom data to a call found by id or start time (200), or later (201, call_in_progress)."""
    context = app_context(request)
    if version not in SIGNAL_API_VERSIONS:
        return errors.invalid_version(version, SIGNAL_API_VERSIONS)
    incoming = await read_request(request)
    async with context.sessions() as session, session.begin():
        principal = await incoming.principal(session, context.lookups)
        if principal is None:
            return errors.unauthorized()
        check_network(principal)
        if incoming.body is None:
            return errors.invalid_input([incoming.unreadable])
        parsed, problems = parse_signal_request(
            incoming.body,
            time_zone=principal.account.time_zone,
            country_codes=context.settings.ingestion_country_codes,
        )
        if parsed is None:
            return errors.invalid_input(problems)
        submit = signals.submit_signals_later if parsed.call_in_progress else signals.submit_signals
        result = await submit(
            session=session,
            lookups=context.lookups,
            principal=principal,
            search=parsed.search,
            signals=parsed.signals,
            custom_data=parsed.custom_data,
        )
    # Committed above: a 2xx is only sent once the signals (or the pending submission) are stored.
    if not isinstance(result, signals.Applied):
        return Response(status_code=201)  # call_in_progress: empty body, applied when the call is found
    return json_response(render_applied(result), 200)
