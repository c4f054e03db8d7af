"""The API process's side of observability: /metrics mounted on the app, and each request counted and traced."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callplane.core.jobs import queue
from callplane.observability.endpoint import authorized, exposition
from callplane.observability.metrics import HTTP_DURATION, HTTP_REQUESTS, JOBS_IN_DATABASE
from callplane.observability.tracing import server_span

log = logging.getLogger("callplane.metrics")

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


def install_metrics(app: FastAPI, tokens: tuple[str, ...], sessions: async_sessionmaker[AsyncSession]) -> None:
    """GET /metrics, for a bearer of one of ``tokens`` (metrics token, admin token)."""
    backlog = _Backlog(sessions)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), tokens):
            return Response(
                "a bearer token is required\n", status_code=401, headers={"www-authenticate": 'Bearer realm="metrics"'}
            )
        await backlog.refresh()
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


class _Backlog:
    """The job queue's state for `callplane_jobs`, read from the database when scraped: at most one query per
    ``every_s`` however many scrapers ask, and a failed read keeps the last values (the scrape still answers)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], every_s: float = 5.0) -> None:
        self.sessions = sessions
        self.every_s = every_s
        self.read_at = -every_s

    async def refresh(self) -> None:
        now = time.monotonic()
        if now - self.read_at < self.every_s:
            return
        self.read_at = now
        try:
            async with self.sessions() as session:
                counts = await queue.counts_by_state(session)
        except (SQLAlchemyError, OSError):
            log.warning("job counts for /metrics could not be read", exc_info=True)
            return
        JOBS_IN_DATABASE.clear()  # a (kind, stage, status) with no jobs left reads 0 from now on, not its last count
        for kind, stage, status, count in counts:
            JOBS_IN_DATABASE.labels(kind, stage, status).set(count)


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
