"""CCAI Platform errors: the `{"message": ...}` body, and the route class that renders every error of a CCAI route in
it (its own, its authentication's and the core's)."""

from __future__ import annotations

from fastapi.responses import Response

from callplane.errors import CallplaneError, NotFound
from callplane.surfaces.http import SurfaceRoute, json_response


class CcaiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def render_error(error: Exception) -> Response:
    if isinstance(error, CcaiError):
        return json_response({"message": error.message}, error.status, error.headers)
    assert isinstance(error, CallplaneError)
    status = 404 if isinstance(error, NotFound) else 400 if error.permanent else 503
    message = "Resource not found" if isinstance(error, NotFound) else error.message
    return json_response({"message": message}, status)


class CcaiRoute(SurfaceRoute):
    """The route class of the CCAI router."""

    renders = (CcaiError, CallplaneError)
    render_error = staticmethod(render_error)
