"""The API process's side of observability: /metrics mounted on the app, and each request counted and traced."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callplane.observability.endpoint import authorized, exposition
from callplane.observability.metrics import HTTP_DURATION, HTTP_REQUESTS
from callplane.observability.tracing import server_span

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


class TracingMiddleware:
    """A server span per HTTP request when tracing is on (settings.trace_exporter), named after the route template;
    what the request writes (jobs, deliveries) carries its traceparent. Passes straight through when off."""

    def __init__(self, app: ASGIApp, *, enabled: bool) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", [])}
        with server_span(headers) as span:
            status = 500

            async def watch(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, watch)
            finally:
                route = route_template(scope)
                span.update_name(f"{scope['method']} {route}")
                span.set_attributes(
                    {"http.request.method": scope["method"], "http.route": route, "http.response.status_code": status}
                )
