"""Zipteams' error bodies: `{"success": false, "message": ...}`, with the field problems on a 422."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.responses import Response

from callplane.surfaces.http import json_response

TOO_LARGE_TEXT = "Payload too large. The maximum request payload size is 5MB."


def failure(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"success": False, "message": message}, status_code, headers)


def forbidden() -> Response:
    """Every refusal of who is calling (token, partner, tenant): one answer, so none tells which part was wrong."""
    return failure(403, "Forbidden")


def too_large() -> Response:
    return failure(413, TOO_LARGE_TEXT)


def rate_limited(retry_after: float) -> Response:
    seconds = int(retry_after)
    return failure(429, f"Rate limit exceeded. Try again in {seconds} seconds.", {"Retry-After": str(seconds)})


def validation_failed(problems: Sequence[dict[str, str]]) -> Response:
    """422 with `errors: [{field, message}]`."""
    return json_response({"success": False, "message": "Validation failed", "errors": list(problems)}, 422)
