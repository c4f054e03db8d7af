"""The FastAPI application: every surface mounted on one app, built from explicit settings."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import text

from callplane import __version__
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.tenancy.service import TenancyLookups
from callplane.db.engine import create_engine, create_session_factory
from callplane.logging import configure_logging, redact
from callplane.settings import Settings
from callplane.surfaces.admin.router import router as admin_router
from callplane.surfaces.context import AppContext
from callplane.surfaces.http import json_response
from callplane.surfaces.invoca.router import router as invoca_router
from callplane.surfaces.native.router import router as native_router
from callplane.surfaces.zipteams.router import router as zipteams_router

log = logging.getLogger("callplane.http")


def build_context(settings: Settings) -> AppContext:
    engine = create_engine(settings)
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=create_session_factory(engine),
        lookups=TenancyLookups(settings.tenancy_cache_seconds),
        secret_box=SecretBox(settings.effective_secret_key()),
        admin_token=settings.effective_admin_token(),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    context = build_context(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await context.engine.dispose()

    app = FastAPI(
        title="callplane",
        version=__version__,
        description="Self-hosted call platform behind the vendor APIs clients already speak.",
        lifespan=lifespan,
    )
    app.state.context = context

    @app.middleware("http")
    async def log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            log.exception("unhandled error", extra={"fields": {"path": request.url.path}})
            response = _internal_error(request)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": request.method,
                        "path": redact(str(request.url.path)),
                        "query": redact(request.url.query),
                        "status": response.status_code,
                        "ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                },
            )
        return response

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

    app.include_router(invoca_router)
    app.include_router(zipteams_router)
    app.include_router(native_router)
    app.include_router(admin_router)
    return app


def _internal_error(request: Request) -> Response:
    if request.url.path.endswith("/partner/ingest/batch-call"):
        return json_response({"success": False, "message": "Internal server error"}, 500)
    if request.url.path.startswith("/api/"):
        return json_response(
            {"errors": {"class": "InternalError", "invalid_data": "Internal server error"}}, 500
        )
    return json_response({"detail": "Internal server error"}, 500)


def create_app_from_environment() -> FastAPI:
    """Factory for uvicorn workers: each worker process reads the same environment."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
