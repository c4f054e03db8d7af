"""The app-wide error handlers: what no surface's route class rendered.

Each vendor surface renders its routes' errors itself, in its route class (e.g. infobip/errors.py `InfobipRoute`).
What reaches these handlers was raised either by routing, before any route took the request (an unknown path or
method: the registry says whose path it is and how that surface answers it), or by a route of a surface that keeps
FastAPI's bodies (native, admin).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from callplane.surfaces.http import json_response
from callplane.surfaces.registry import area_of


def validation_error_response(error: RequestValidationError) -> Response:
    """`{"detail": [{"type", "loc", "msg", "ctx"?}]}`: FastAPI's shape less each error's `input`, which would return
    (and hold in memory) as much of the request body as its limit allows."""
    errors = [{key: value for key, value in item.items() if key != "input"} for item in error.errors()]
    return json_response({"detail": jsonable_encoder(errors)}, 422)


async def _on_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return validation_error_response(error)


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    render = area_of(request.url.path).http_error
    if render is not None:
        return render(error)
    return await http_exception_handler(request, error)


def install_error_handlers(app: FastAPI) -> None:
    """FastAPI's validation body (without the input) and HTTP errors in the body of the surface whose path it is."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
