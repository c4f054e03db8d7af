"""Database engines: SQLite (embedded default, WAL, immediate transactions) or PostgreSQL (asyncpg pool)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from callplane.settings import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.ensure_data_dir()
        # One connection per process: SQLite has one writer at a time anyway, and queueing for the pool
        # (an asyncio wait) is far cheaper than SQLite's busy handler, which sleeps and retries.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0)
        _configure_sqlite(engine, synchronous=settings.sqlite_synchronous)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=0,
        # No pre-ping: it costs a round trip on every checkout; recycle instead, and a dropped
        # connection fails that one request, which the client retries (ingestion is idempotent).
        pool_recycle=1800,
    )


def _configure_sqlite(engine: AsyncEngine, *, synchronous: str) -> None:
    """WAL for concurrent readers, and BEGIN IMMEDIATE so two writers queue on busy_timeout
    instead of failing a read-to-write lock upgrade halfway through a transaction."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
