"""Alembic environment: async engines, and one migrator at a time on PostgreSQL (advisory lock)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from callplane.core.schema import Base
from callplane.core.search import is_search_index_table

# Any number of servers may start at once against one PostgreSQL: this lock serializes their migrations.
_MIGRATION_LOCK_ID = 7_246_001


def _run(connection: Connection) -> None:
    is_postgres = connection.dialect.name == "postgresql"
    if is_postgres:
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({_MIGRATION_LOCK_ID})")
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            # The search index's tables are kept by triggers, not models: autogenerate must not drop them.
            include_name=lambda name, type_, _parents: not (type_ == "table" and is_search_index_table(name or "")),
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if is_postgres:
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK_ID})")
            connection.commit()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    url = context.config.attributes["database_url"]
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_async(url))


run_migrations_online()
