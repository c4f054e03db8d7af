"""Infobip's error body `{"requestError": {"serviceException": ...}}` and the route class that renders every error of
an Infobip route in it (validation, HTTP, core errors), as the official client's `ApiException` expects.

Requests no route took (an unknown path or method under /calls/1) are answered by the app-wide fallback in
surfaces/errors.py, which asks the registry for the surface and uses `http_error_response` below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from callplane.errors import CallplaneError, Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from callplane.live.nodes import NodeUnavailable
from callplane.surfaces.http import SurfaceRoute, json_response

MESSAGE_IDS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "TOO_MANY_REQUESTS",
    500: "GENERAL_ERROR",
}


class InfobipError(Exception):
    """An error rendered as Infobip's `{"requestError": {"serviceException": ...}}` body."""

    def __init__(
        self,
        status_code: int,
        text: str,
        *,
        message_id: str | None = None,
        validation_errors: Mapping[str, Sequence[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(text)
        self.status_code = status_code
        self.text = text
        self.message_id = message_id or MESSAGE_IDS.get(status_code, "GENERAL_ERROR")
        self.validation_errors = {key: list(values) for key, values in (validation_errors or {}).items()}
        self.headers = dict(headers or {})


def error_body(
    message_id: str, text: str, validation_errors: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    exception: dict[str, Any] = {"messageId": message_id, "text": text}
    if validation_errors:
        exception["validationErrors"] = {key: list(values) for key, values in validation_errors.items()}
    return {"requestError": {"serviceException": exception}}


def error_response(error: InfobipError) -> Response:
    return json_response(
        error_body(error.message_id, error.text, error.validation_errors), error.status_code, error.headers or None
    )


def bad_request(text: str, *, field: str | None = None) -> InfobipError:
    """A 400, naming the offending field in `validationErrors` when there is one."""
    return InfobipError(400, text, validation_errors={field: [text]} if field else None)


def not_found(what: str) -> InfobipError:
    return InfobipError(404, f"{what} not found.")


def from_core_error(error: CallplaneError) -> InfobipError:
    """Our one exception tree, in Infobip's statuses (the client knows 400/401/403/404/429/500 only)."""
    if isinstance(error, NotFound):
        return InfobipError(404, error.message)
    if isinstance(error, Unauthenticated):
        return InfobipError(401, error.message)
    if isinstance(error, PermissionDenied):
        return InfobipError(403, error.message)
    if isinstance(error, InvalidInput):
        return InfobipError(400, error.message)
    if isinstance(error, Conflict):
        return InfobipError(400, error.message, message_id="CONFLICT")
    if isinstance(error, NodeUnavailable):  # no media node can take it now: a 503, as for a process without one
        return InfobipError(503, error.message)
    return InfobipError(500, error.message)


def _field_name(location: Sequence[Any]) -> str:
    """`("body", "endpoint", "phoneNumber")` -> `endpoint.phoneNumber`; query and path names stay bare."""
    parts = [str(part) for part in location[1:]] if location and location[0] in ("body", "query", "path") else []
    return ".".join(parts) or ".".join(str(part) for part in location) or "request"


def validation_error_response(error: RequestValidationError) -> Response:
    """FastAPI's validation problems as a 400 naming each field."""
    problems: dict[str, list[str]] = {}
    for item in error.errors():
        problems.setdefault(_field_name(item.get("loc", ())), []).append(str(item.get("msg", "invalid value")))
    return error_response(InfobipError(400, "Bad request", validation_errors=problems))


def http_error_response(error: StarletteHTTPException) -> Response:
    """An HTTP error (a malformed form, an unknown path or method) with its status and headers."""
    text = error.detail if isinstance(error.detail, str) else "Request failed"
    return error_response(InfobipError(error.status_code, text, headers=error.headers))


def render_error(error: Exception) -> Response:
    """Any error an Infobip route raises, in Infobip's body; anything else is not ours to render."""
    if isinstance(error, InfobipError):
        return error_response(error)
    if isinstance(error, RequestValidationError):
        return validation_error_response(error)
    if isinstance(error, StarletteHTTPException):
        return http_error_response(error)
    if isinstance(error, CallplaneError):
        return error_response(from_core_error(error))
    raise error


class InfobipRoute(SurfaceRoute):
    """The route class of every Infobip router: its errors, its dependencies' and its body's are Infobip's body."""

    renders = (InfobipError, RequestValidationError, StarletteHTTPException, CallplaneError)
    render_error = staticmethod(render_error)
