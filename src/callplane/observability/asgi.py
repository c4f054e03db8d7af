"""The API process's side of observability: /metrics mounted on the app, and each request counted and traced."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import Scope

from callplane.observability.endpoint import authorized, exposition
from callplane.observability.metrics import HTTP_DURATION, HTTP_REQUESTS

UNMATCHED = "unmatched"  # a path no route matched: one label value, never the raw path


def route_template(scope: Scope) -> str:
    """The matched route's template (``/v1/calls/{call_id}``), set in the scope by routing; bounded by the app."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    """Called once per request by the request log middleware (app.py), which already holds status and time."""
    route = route_template(scope)
    method = scope["method"]
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def install_metrics(app: FastAPI, tokens: tuple[str, ...]) -> None:
    """GET /metrics, for a bearer of one of ``tokens`` (metrics token, admin token)."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), tokens):
            return Response(
                "a bearer token is required\n", status_code=401, headers={"www-authenticate": 'Bearer realm="metrics"'}
            )
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
