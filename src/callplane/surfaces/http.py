"""Shared HTTP helpers for the surfaces: fast JSON bodies in and out."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response


class JsonBodyError(Exception):
    """The request body is not JSON."""


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
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise JsonBodyError() from exc


class BodyTooLarge(Exception):
    """The request body is over the size limit."""


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
