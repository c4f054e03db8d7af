"""FastAPI's 422 body for the surfaces that keep it (native, admin), without echoing what the client sent."""

from __future__ import annotations

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from callplane.surfaces.http import json_response


def validation_error_response(error: RequestValidationError) -> Response:
    """`{"detail": [{"type", "loc", "msg", "ctx"?}]}`: FastAPI's shape less each error's `input`, which would return
    (and hold in memory) as much of the request body as its limit allows."""
    errors = [{key: value for key, value in item.items() if key != "input"} for item in error.errors()]
    return json_response({"detail": jsonable_encoder(errors)}, 422)
