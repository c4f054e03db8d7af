"""The migrations produce exactly the models' schema, on both databases."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from callplane.core.schema import Base
from callplane.core.search import is_search_index_table
from callplane.testing.server import RunningServer


def _model_schema_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Everything but the search index's tables (triggers keep them; they are no model's, see migration 0016)."""
    return not (type_ == "table" and name is not None and is_search_index_table(name))


def _diff(url: str) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(
                            sync, opts={"compare_type": True, "include_name": _model_schema_name}
                        ),
                        Base.metadata,
                    )
                )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_migrated_schema_matches_models(server: RunningServer) -> None:
    assert _diff(server.settings.resolved_database_url) == []
