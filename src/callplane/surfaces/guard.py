"""A NUL character in the path or query string is refused before routing, in the surface's own error body.

PostgreSQL text cannot hold NUL: any statement carrying one fails in the driver (a 500), and no identifier, filter,
token or version of any surface contains one. One check here covers every path and query parameter of every
route; JSON bodies are checked where they are decoded (surfaces/http.py `loads_json`). Each surface answers with
the status and body it uses for a malformed parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from callplane.surfaces.http import json_response
from callplane.surfaces.infobip.errors import error_body as infobip_error_body
from callplane.surfaces.invoca import errors as invoca
from callplane.surfaces.registry import Surface, surface_of
from callplane.surfaces.zipteams import errors as zipteams

NUL_TEXT = "must not contain a NUL character"

Refusal = Callable[[str, str], Response]
"""(location, parameter name) -> the surface's answer."""


def _native(location: str, name: str) -> Response:
    """FastAPI's validation body (native and admin), as surfaces/errors.py writes it."""
    return json_response({"detail": [{"type": "value_error", "loc": [location, name], "msg": NUL_TEXT}]}, 422)


def _infobip(location: str, name: str) -> Response:
    return json_response(infobip_error_body("BAD_REQUEST", "Bad request", {name: [NUL_TEXT]}), 400)


def _ccai(location: str, name: str) -> Response:
    return json_response({"message": f"{name} {NUL_TEXT}"}, 400)


def _zipteams(location: str, name: str) -> Response:
    return zipteams.validation_failed([{"field": name, "message": NUL_TEXT}])


def _invoca(path: str) -> Refusal:
    def refuse(location: str, name: str) -> Response:
        problem = f"{name} {NUL_TEXT}"
        if "/calls_in_progress" in path:
            return invoca.calls_in_progress_error(400, "InvalidParameters", problem)
        if "/transactions" in path:
            return invoca.invalid_input([problem])
        if path.startswith("/call/transcript/"):
            return invoca.invoca_error(400, "InvalidParameters", problem)
        return invoca.record_invalid([problem])

    return refuse


_REFUSALS: dict[Surface, Refusal] = {
    "native": _native,
    "admin": _native,
    "infobip": _infobip,
    "ccai": _ccai,
    "zipteams": _zipteams,
}


def refusal_for(path: str) -> Refusal:
    """How the surface of a path refuses a malformed parameter."""
    surface = surface_of(path)
    if surface == "invoca":
        return _invoca(path)
    return _REFUSALS[surface]


def nul_parameter(scope: Scope) -> tuple[str, str] | None:
    """(location, name) of the first parameter holding NUL, or None. The query is only parsed when it has one."""
    if "\x00" in scope["path"]:
        return "path", "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return "query", name.replace("\x00", "") or "query"
    return "query", "query"


class NulGuardMiddleware:
    """Answers a request whose path or query holds NUL with its surface's error, before any handler runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = nul_parameter(scope)
            if found is not None:
                await refusal_for(scope["path"])(*found)(scope, receive, send)
                return
        await self.app(scope, receive, send)
