"""The FastAPI application: every surface mounted on one app, built from explicit settings."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callplane import __version__
from callplane.logging import configure_logging
from callplane.media.engine import CallEngine
from callplane.observability.asgi import TracingMiddleware, install_metrics, observe_request
from callplane.observability.tracing import configure_tracing
from callplane.runtime import build_context, supervised
from callplane.settings import Settings
from callplane.surfaces.admin.call_tracking import router as admin_call_tracking_router
from callplane.surfaces.admin.contact_center import router as admin_contact_center_router
from callplane.surfaces.admin.media_nodes import router as admin_media_nodes_router
from callplane.surfaces.admin.recording_access import router as admin_recording_access_router
from callplane.surfaces.admin.router import router as admin_router
from callplane.surfaces.ccai.router import router as ccai_router
from callplane.surfaces.console import router as console_router
from callplane.surfaces.errors import install_error_handlers
from callplane.surfaces.guard import NulGuardMiddleware
from callplane.surfaces.http import json_response
from callplane.surfaces.infobip.calls_router import router as infobip_calls_router
from callplane.surfaces.infobip.router import router as infobip_router
from callplane.surfaces.invoca.router import router as invoca_router
from callplane.surfaces.invoca.transcripts import router as invoca_transcripts_router
from callplane.surfaces.limits import BodyLimitMiddleware, surface_body_rules
from callplane.surfaces.native.router import router as native_router
from callplane.surfaces.native.voice import router as native_voice_router
from callplane.surfaces.native.webhooks import router as webhooks_router
from callplane.surfaces.openapi import install_openapi
from callplane.surfaces.registry import area_of
from callplane.surfaces.zipteams.router import router as zipteams_router

log = logging.getLogger("callplane.http")


def create_app(settings: Settings | None = None, *, call_engine: CallEngine | None = None) -> FastAPI:
    """The ASGI app. `call_engine` replaces the built-in SIP engine when voice is enabled (tests pass the in-memory
    engine of `callplane.testing.engine`)."""
    settings = settings or Settings()
    context = build_context(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with supervised(settings, context, call_engine=call_engine):
            yield

    app = FastAPI(
        title="callplane",
        version=__version__,
        description="Self-hosted call platform behind the vendor APIs clients already speak.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry (0.16x) would add a second server span per request beside TracingMiddleware's
        # and read three global providers on every request to find out whether it is on.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.context = context

    @app.get("/healthz", tags=["Health"])
    async def healthz() -> dict[str, Any]:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["Health"])
    async def readyz() -> Response:
        """The database answers and its schema is at the latest migration."""
        from callplane.db.migrate import current_head

        try:
            async with context.engine.connect() as connection:
                version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except Exception as error:  # noqa: BLE001 - any database failure means "not ready"
            return json_response({"status": "unavailable", "reason": type(error).__name__}, 503)
        if version != current_head():
            return json_response({"status": "unavailable", "reason": "migrations pending"}, 503)
        return json_response({"status": "ready", "database": context.engine.dialect.name})

    # Inside the request log, so refused bodies (413/408) are logged like any answer.
    app.add_middleware(
        BodyLimitMiddleware,
        limits=surface_body_rules(settings),
        read_timeout_s=settings.request_body_read_timeout_seconds,
    )
    app.add_middleware(NulGuardMiddleware)  # NUL in a path or query: the surface's 4xx, before routing
    app.add_middleware(RequestLogMiddleware)
    app.add_middleware(TracingMiddleware, enabled=configure_tracing(settings))  # off unless CALLPLANE_TRACE_EXPORTER
    app.include_router(invoca_router)
    app.include_router(invoca_transcripts_router)
    app.include_router(zipteams_router)
    app.include_router(native_router)
    app.include_router(webhooks_router)
    app.include_router(admin_router)
    app.include_router(admin_media_nodes_router)
    app.include_router(admin_call_tracking_router)
    app.include_router(admin_contact_center_router)
    app.include_router(admin_recording_access_router)
    app.include_router(ccai_router)
    app.include_router(infobip_router)
    app.include_router(infobip_calls_router)
    app.include_router(native_voice_router)
    app.include_router(console_router)
    install_metrics(app, (settings.metrics_token or "", context.admin_token), context.sessions)  # observability.md
    install_error_handlers(app)
    install_openapi(app)  # vendor bodies and each surface's error responses (surfaces/openapi.py)
    return app


class RequestLogMiddleware:
    """One structured line per request and each surface's own 500 body.

    Plain ASGI rather than BaseHTTPMiddleware, which costs a task group and a stream per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_and_watch(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        path: str = scope["path"]
        try:
            await self.app(scope, receive, send_and_watch)
        except Exception:
            log.exception("unhandled error", extra={"fields": {"path": path}})
            if response_started:
                raise
            status = 500
            await area_of(path).internal_error()(scope, receive, send)
        observe_request(scope, status, time.perf_counter() - started)  # here: the one place with status and time
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        # Secrets in the path or query (``?key=``) are hidden by the log handler's redaction.
                        "path": path,
                        "query": scope.get("query_string", b"").decode("latin-1"),
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                },
            )


def create_app_from_environment() -> FastAPI:
    """Factory for uvicorn workers: each worker process reads the same environment."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
