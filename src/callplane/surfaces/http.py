"""Shared HTTP helpers for the surfaces: fast JSON bodies in and out, decoded strictly.

Every JSON request body goes through `loads_json`, whether a handler reads it (`read_json`) or FastAPI does for a
body model (`JsonRoute`): orjson refuses what would fail later, at the database or while encoding (a lone surrogate
escape, a number beyond a double such as `1e400`, nesting deeper than 1,024 levels), and a NUL character in any
string or key is refused too, because PostgreSQL text cannot hold one. Each surface answers a `JsonBodyError` with
its own error body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, ClassVar

import orjson
from annotated_types import Interval
from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

NUL_MESSAGE = "strings must not contain NUL characters (\\u0000)"

# Integers as the database stores them (`Integer` columns are 32-bit on PostgreSQL, ids 64-bit): a larger value is
# a validation error of the surface, not an overflow in the driver (a 500).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
Int32 = Annotated[int, Interval(ge=-INT32_MAX - 1, le=INT32_MAX)]
Int64 = Annotated[int, Interval(ge=-INT64_MAX - 1, le=INT64_MAX)]
_NUL_ESCAPE = b"\\u0000"


class JsonBodyError(ValueError):
    """The request body is not JSON that can be stored."""

    def __init__(self, reason: str, position: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


def loads_json(raw: bytes) -> Any:
    """The decoded document; raises JsonBodyError for malformed JSON or a NUL character in a string."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise JsonBodyError(exc.msg, exc.pos) from exc
    # orjson refuses a raw NUL byte inside a string, so only the escape can make one: the walk runs only then.
    if _NUL_ESCAPE in raw and _holds_nul(value):
        raise JsonBodyError(NUL_MESSAGE, raw.find(_NUL_ESCAPE))
    return value


def _holds_nul(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            for key, member in item.items():
                if "\x00" in key:
                    return True
                pending.append(member)
        elif isinstance(item, list):
            pending.extend(item)
    return False


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content, default=str),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


async def read_json(request: Request, *, max_bytes: int | None = None) -> Any:
    """The parsed body, or {} when there is none; raises BodyTooLarge past max_bytes without reading it all."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BodyTooLarge()
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    return loads_json(raw)


class BodyTooLarge(Exception):
    """The request body is over the size limit."""


class JsonRequest(Request):
    """A request whose `json()` is `loads_json`: FastAPI reads body models through it."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            try:
                self._json = loads_json(raw)
            except JsonBodyError as error:
                # FastAPI turns this into its `json_invalid` validation error, which each surface renders.
                raise json.JSONDecodeError(error.reason, raw.decode("utf-8", "replace"), error.position) from error
        return self._json


class JsonRoute(APIRoute):
    """The route class of every router: body models are decoded by `loads_json` (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler  # FastAPI reads no body here (raw routes call read_json): no second Request needed

        async def strict_json(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return strict_json


class SurfaceRoute(JsonRoute):
    """A route whose errors its surface renders: each surface's route class names the exceptions it renders
    (`renders`) and how (`render_error`), so no app-wide handler has to tell the surfaces apart by their paths.

    It wraps FastAPI's handler, which also parses the body and solves the dependencies: their errors (validation,
    authentication) are the surface's too. What no route took (an unknown path or method) is surfaces/errors.py's.
    """

    renders: ClassVar[tuple[type[Exception], ...]] = ()

    @staticmethod
    def render_error(error: Exception) -> Response:
        raise error

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        renders, render = self.renders, self.render_error

        async def surface_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except renders as error:
                return render(error)

        return surface_errors


def bearer_token(request: Request) -> str | None:
    """A token from `Authorization: Bearer x`, `Authorization: Token x`, `Token token=x` or a bare value."""
    header = request.headers.get("authorization", "").strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    if scheme.lower() in ("bearer", "token") and rest.strip():
        value = rest.strip()
        if value.startswith("token="):
            value = value[len("token=") :].strip('"')
        return value
    return header if " " not in header else None
