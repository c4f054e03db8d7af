"""What every Infobip Calls API route shares: `App <key>` auth, the `requestError` body, paging.

The wire shapes follow the official client's models (`ApiException`, `PageInfo`); see
shared/spec/vendor-apis-reference.md §1.1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from callplane.core.tenancy.schemas import Principal
from callplane.core.voice.nodes import NodeUnavailable
from callplane.errors import CallplaneError, Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from callplane.surfaces.context import ContextDep
from callplane.surfaces.http import json_response
from callplane.surfaces.validation import validation_error_response

PATH_PREFIX = "/calls/1"
AUTH_SCHEMES = ("app", "bearer")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE = 2**31 - 1  # page * size stays a valid SQL offset on every database

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


def infobip_time(moment: datetime | None) -> str | None:
    """`2024-09-18T13:36:22.000+00:00`: millisecond precision, explicit UTC offset, as Infobip writes times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# ---- authentication -----------------------------------------------------------------------------


def api_key(request: Request) -> str | None:
    """The key from `Authorization: App <key>` (or `Bearer <key>`: the same API token)."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() in AUTH_SCHEMES and value.strip():
        return value.strip()
    return None


async def require_voice_principal(request: Request, context: ContextDep) -> Principal:
    """The calling account, from one of our hashed API tokens, with its per-minute limit applied."""
    key = api_key(request)
    principal = None
    if key:
        async with context.sessions() as session:
            principal = await context.lookups.principal_for_token(session, key)
    if principal is None:
        raise InfobipError(401, "Invalid login details", headers={"WWW-Authenticate": "App"})
    limit = principal.account.rate_limit_per_minute
    if limit is not None:
        retry_after = context.rate_limiter.hit(f"calls:{principal.account.id}", limit)
        if retry_after is not None:
            raise InfobipError(429, "Too many requests", headers={"Retry-After": str(int(retry_after))})
    return principal


VoicePrincipalDep = Annotated[Principal, Depends(require_voice_principal)]


# ---- paging -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Zero-based page number and page size, as the client sends them."""

    page: int = 0
    size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return self.page * self.size


def page_request(
    page: Annotated[int, Query(ge=0, le=MAX_PAGE, description="zero-based page number")] = 0,
    size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="results per page")] = DEFAULT_PAGE_SIZE,
) -> PageRequest:
    return PageRequest(page=page, size=size)


PageDep = Annotated[PageRequest, Depends(page_request)]


def paged(results: Sequence[Any], *, page: PageRequest, total: int) -> dict[str, Any]:
    """The `{"results": [...], "paging": PageInfo}` envelope of every list endpoint."""
    return {
        "results": list(results),
        "paging": {
            "page": page.page,
            "size": page.size,
            "totalPages": math.ceil(total / page.size) if total else 0,
            "totalResults": total,
        },
    }


# ---- exception handlers -------------------------------------------------------------------------


def is_infobip_path(request: Request) -> bool:
    path: str = request.url.path
    return path == PATH_PREFIX or path.startswith(PATH_PREFIX + "/")


def _field_name(location: Sequence[Any]) -> str:
    """`("body", "endpoint", "phoneNumber")` -> `endpoint.phoneNumber`; query and path names stay bare."""
    parts = [str(part) for part in location[1:]] if location and location[0] in ("body", "query", "path") else []
    return ".".join(parts) or ".".join(str(part) for part in location) or "request"


async def _on_infobip_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, InfobipError)
    return error_response(error)


async def _on_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    if not is_infobip_path(request):
        return validation_error_response(error)
    problems: dict[str, list[str]] = {}
    for item in error.errors():
        problems.setdefault(_field_name(item.get("loc", ())), []).append(str(item.get("msg", "invalid value")))
    return error_response(InfobipError(400, "Bad request", validation_errors=problems))


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if not is_infobip_path(request):
        return await http_exception_handler(request, error)
    text = error.detail if isinstance(error.detail, str) else "Request failed"
    return error_response(InfobipError(error.status_code, text, headers=error.headers))


async def _on_core_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, CallplaneError)
    if not is_infobip_path(request):
        raise error  # other surfaces render (or log) their own errors as before
    return error_response(from_core_error(error))


def install_error_handlers(app: FastAPI) -> None:
    """Infobip's error body on /calls/1/*; every other path keeps FastAPI's default handlers."""
    app.add_exception_handler(InfobipError, _on_infobip_error)
    app.add_exception_handler(CallplaneError, _on_core_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
