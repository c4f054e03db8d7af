"""Migration 0016 indexes the calls and transcripts stored before it, on both databases."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.search import search_calls
from callplane.core.transcripts.merge import transcript_to_dict
from callplane.core.transcripts.schemas import Speaker
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.settings import Settings
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from tests.search.conftest import Said, run_on, transcript_of

BEFORE_SEARCH = "0015"


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    def make(url: str | None) -> Settings:
        return Settings(environment="test", data_dir=tmp_path, database_url=url, admin_token="backfill-test")

    if request.param == "sqlite":
        yield make(None)
        return
    with scratch_postgres_database(os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)) as url:
        yield make(url)


async def _execute(settings: Settings, statements: list[tuple[str, dict[str, object]]]) -> None:
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            for statement, values in statements:
                await session.execute(text(statement), values)
    finally:
        await engine.dispose()


def test_rows_stored_before_the_migration_are_searchable_after_it(settings: Settings) -> None:
    upgrade(settings, BEFORE_SEARCH)
    transcript = transcript_to_dict(transcript_of(Said(Speaker.AGENT, 6.0, "Your claim number is seven")))
    # Plain SQL at revision 0015: the models may describe a later schema.
    asyncio.run(
        _execute(
            settings,
            [
                (
                    "INSERT INTO accounts (id, kind, name, external_id, time_zone, default_language_code, "
                    "language_codes, ingestion_enabled, created_at) VALUES ('acc', 'network', 'Old', 'old', 'UTC', "
                    "'en-US', '[\"en-US\"]', true, CURRENT_TIMESTAMP)",
                    {},
                ),
                (
                    "INSERT INTO calls (id, account_id, origin, external_id, status, agent, customer, metadata, "
                    "extras, received_at, updated_at) VALUES ('old-call', 'acc', 'single_ingest', 'legacy-1', "
                    "'completed', '{}', '{}', '{\"region\": \"north\"}', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                    {},
                ),
                (
                    "INSERT INTO call_transcripts (id, call_id, account_id, status, model, transcript, complete, "
                    "dropped_segments, signals_evaluated, created_at) VALUES ('t', 'old-call', 'acc', 'completed', "
                    "'m', :transcript, true, 0, 0, CURRENT_TIMESTAMP)",
                    {"transcript": json.dumps(transcript)},
                ),
            ],
        )
    )
    upgrade(settings, "head")

    async def first_second(session: AsyncSession) -> tuple[list[str], float | None]:
        page = await search_calls(session, account_id="acc", query='"claim number"')
        region = await search_calls(session, account_id="acc", query="north")
        return [hit.call.id for hit in page.hits + region.hits], page.hits[0].first_second

    found, second = run_on(settings, first_second)
    assert found == ["old-call", "old-call"]
    assert second == pytest.approx(Said(Speaker.AGENT, 6.0, "").word_start(1))
