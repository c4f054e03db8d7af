"""Which surface an HTTP path belongs to and how that part of the API writes an error, in one table.

Everything that answers outside a route handler asks here: the body limits' 413/408 (surfaces/limits.py), the NUL
guard's 4xx (surfaces/guard.py), the request log's 500 (app.py), the 404/405 of a path or method no route takes
(surfaces/errors.py) and the OpenAPI error responses (surfaces/openapi.py). Errors inside a route are the route
class's of its surface (surfaces/http.py `SurfaceRoute`).
The longest registered prefix of a path wins, else the native surface; the lookup is cached per path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from fastapi.responses import Response
from starlette.exceptions import HTTPException

from callplane.surfaces.http import json_response
from callplane.surfaces.infobip.common import PATH_PREFIX as INFOBIP_PREFIX
from callplane.surfaces.infobip.errors import error_body as infobip_error_body
from callplane.surfaces.infobip.errors import http_error_response as infobip_http_error
from callplane.surfaces.invoca.calls_in_progress import CALLS_IN_PROGRESS_API_VERSIONS
from callplane.surfaces.invoca.errors import calls_in_progress_error, invoca_error
from callplane.surfaces.zipteams.errors import failure as zipteams_failure

Surface = Literal["native", "admin", "infobip", "ccai", "invoca", "zipteams"]

ErrorRenderer = Callable[[int, str], Response]
"""(status, text) -> the surface's own error body."""

HttpErrorRenderer = Callable[[HTTPException], Response]
"""An HTTP error raised outside the surface's routes (no route for the path or method) -> the surface's body."""

INTERNAL_ERROR_TEXT = "Internal server error"


def _native(status: int, text: str) -> Response:
    return json_response({"detail": text}, status)  # native and admin share FastAPI's {"detail"} body


def _invoca(status: int, text: str) -> Response:
    return invoca_error(status, {413: "PayloadTooLarge", 408: "RequestTimeout"}.get(status, "InternalError"), text)


def _calls_in_progress(status: int, text: str) -> Response:
    # As that API writes its errors: {"error": <class>, "message": ...} (not the ingestion API's "errors").
    error = {413: "PayloadTooLarge", 408: "RequestTimeout"}.get(status, "InternalError")
    return calls_in_progress_error(status, error, text)


def _zipteams(status: int, text: str) -> Response:
    return zipteams_failure(status, text)


def _ccai(status: int, text: str) -> Response:
    return json_response({"message": text}, status)  # as CcaiError is written


def _infobip(status: int, text: str) -> Response:
    message_id = {413: "PAYLOAD_TOO_LARGE", 408: "REQUEST_TIMEOUT"}.get(status, "GENERAL_ERROR")
    return json_response(infobip_error_body(message_id, text), status)


@dataclass(frozen=True, slots=True)
class Area:
    """A part of a surface with its own error body (and, in limits.py, its own body limit)."""

    name: str
    surface: Surface
    render: ErrorRenderer
    internal_render: ErrorRenderer | None = None  # where the 500 body differs from `render`'s
    http_error: HttpErrorRenderer | None = None  # None: FastAPI's `{"detail"}` body (surfaces/errors.py)

    def internal_error(self) -> Response:
        return (self.internal_render or self.render)(500, INTERNAL_ERROR_TEXT)


NATIVE = Area("native", "native", _native)
ADMIN = Area("admin", "admin", _native)
INVOCA = Area("invoca", "invoca", _invoca)
# The 500 bodies of these three are the ones the request log wrote before this table existed (kept unchanged).
INVOCA_TRANSCRIPTS = Area("invoca transcripts", "invoca", _invoca, internal_render=_native)
CALLS_IN_PROGRESS = Area("invoca calls in progress", "invoca", _calls_in_progress, internal_render=_invoca)
CCAI = Area("ccai", "ccai", _ccai, internal_render=_native)
ZIPTEAMS = Area("zipteams", "zipteams", _zipteams)
INFOBIP = Area("infobip", "infobip", _infobip, http_error=infobip_http_error)
INFOBIP_FILES = Area("infobip files", "infobip", _infobip, http_error=infobip_http_error)  # a larger body limit

AREAS = (NATIVE, ADMIN, INVOCA, INVOCA_TRANSCRIPTS, CALLS_IN_PROGRESS, CCAI, ZIPTEAMS, INFOBIP, INFOBIP_FILES)

_PREFIXES: list[tuple[str, Area]] = [
    ("/v1/", NATIVE),
    ("/v1/admin/", ADMIN),
    ("/api/", INVOCA),
    ("/call/transcript/", INVOCA_TRANSCRIPTS),
    *((f"/api/{version}/calls_in_progress", CALLS_IN_PROGRESS) for version in CALLS_IN_PROGRESS_API_VERSIONS),
    ("/partner/ingest/", ZIPTEAMS),
    ("/api/v1/partner/ingest/", ZIPTEAMS),
    ("/apps/api/v1/", CCAI),
    (INFOBIP_PREFIX + "/", INFOBIP),
    (INFOBIP_PREFIX + "/files", INFOBIP_FILES),
]
_EXACT: dict[str, Area] = {INFOBIP_PREFIX: INFOBIP}


def _first_segment(path: str) -> str:
    return path[1:].partition("/")[0]


def _by_segment(prefixes: list[tuple[str, Area]]) -> dict[str, list[tuple[str, Area]]]:
    """Prefixes grouped by their first path segment, longest first: a lookup is one dict access and a startswith or
    two."""
    grouped: dict[str, list[tuple[str, Area]]] = {}
    for prefix, area in sorted(prefixes, key=lambda entry: len(entry[0]), reverse=True):
        grouped.setdefault(_first_segment(prefix), []).append((prefix, area))
    return grouped


_BY_SEGMENT = _by_segment(_PREFIXES)


@lru_cache(maxsize=4096)
def area_of(path: str) -> Area:
    """The part of the API a path belongs to: an exact entry, else the longest registered prefix, else native."""
    exact = _EXACT.get(path)
    if exact is not None:
        return exact
    for prefix, area in _BY_SEGMENT.get(_first_segment(path), ()):
        if path.startswith(prefix):
            return area
    return NATIVE


def surface_of(path: str) -> Surface:
    """Which surface a path belongs to, by the prefixes app.py mounts."""
    return area_of(path).surface
