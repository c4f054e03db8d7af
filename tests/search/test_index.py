"""The database keeps the index: every write to a call or its transcript is searchable at once, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls.models import Call
from callplane.core.search import SearchPage, index, search_calls
from callplane.core.transcripts.merge import transcript_to_dict
from callplane.core.transcripts.models import CallTranscript
from callplane.core.transcripts.schemas import Speaker
from callplane.testing.factories import Network
from callplane.testing.server import RunningServer
from tests.search.conftest import Calls, Said, run_on, transcript_of

TRIGGERS = {
    "sqlite": {
        "call_search_call_inserted",
        "call_search_call_updated",
        "call_search_call_deleted",
        "call_search_transcript_inserted",
        "call_search_transcript_updated",
        "call_search_transcript_deleted",
    },
    "postgresql": {"call_search_call_changed", "call_search_transcript_changed"},
}


def found(server: RunningServer, network: Network, q: str) -> list[str]:
    async def work(session: AsyncSession) -> SearchPage:
        return await search_calls(session, account_id=network.account_id, query=q)

    return [hit.call.id for hit in run_on(server.settings, work).hits]


def test_the_triggers_are_there_after_every_migration(server: RunningServer) -> None:
    """A later SQLite batch migration that recreates calls or call_transcripts would drop them silently."""

    async def names(session: AsyncSession) -> set[str]:
        if session.get_bind().dialect.name == "sqlite":
            rows = await session.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        else:
            rows = await session.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
        return {name for (name,) in rows if name.startswith("call_search")}

    dialect = "sqlite" if server.settings.is_sqlite else "postgresql"
    assert run_on(server.settings, names) == TRIGGERS[dialect]


def test_updates_and_deletes_reach_the_index(server: RunningServer, network: Network, calls: Calls) -> None:
    call_id = calls.with_transcript(network, Said(Speaker.CALLER, 1.0, "First version mentions bananas."))
    assert found(server, network, "bananas") == [call_id]

    async def rewrite(session: AsyncSession) -> None:
        replaced = transcript_to_dict(transcript_of(Said(Speaker.CALLER, 1.0, "Second version mentions cherries.")))
        await session.execute(
            update(CallTranscript).where(CallTranscript.call_id == call_id).values(transcript=replaced)
        )
        await session.execute(
            update(Call).where(Call.id == call_id).values(call_metadata={"tier": "platinum", "seats": 42})
        )

    run_on(server.settings, rewrite)
    assert found(server, network, "bananas") == []
    assert found(server, network, "cherries") == [call_id]
    assert found(server, network, "platinum 42") == [call_id]

    async def drop_transcript(session: AsyncSession) -> None:
        await session.execute(delete(CallTranscript).where(CallTranscript.call_id == call_id))

    run_on(server.settings, drop_transcript)
    assert found(server, network, "cherries") == []
    assert found(server, network, "platinum") == [call_id]  # the details stay

    kept = calls.with_transcript(network, Said(Speaker.AGENT, 1.0, "Cherries again."))

    async def drop_call(session: AsyncSession) -> int:
        await session.execute(delete(Call).where(Call.id.in_([call_id, kept])))
        both = {"a": call_id, "b": kept}
        entries = await session.scalar(text("SELECT count(*) FROM call_search WHERE call_id IN (:a, :b)"), both)
        rows = 0
        if session.get_bind().dialect.name == "sqlite":  # nor the rowid mapping of a deleted call
            rows = await session.scalar(text("SELECT count(*) FROM call_search_rows WHERE call_id IN (:a, :b)"), both)
        return int(entries or 0) + int(rows or 0)

    assert run_on(server.settings, drop_call) == 0
    assert found(server, network, "platinum") == []


def test_status_updates_leave_the_index_alone(server: RunningServer, network: Network, calls: Calls) -> None:
    """Calls change status several times each; only the columns the document is made of fire the triggers."""
    call_id = calls.with_transcript(network, Said(Speaker.CALLER, 1.0, "Status check."))

    async def rows_written_by_a_status_update(session: AsyncSession) -> int:
        touch = update(Call).where(Call.id == call_id).values(status="completed", updated_at=func.now())
        if session.get_bind().dialect.name == "sqlite":
            before = await session.scalar(text("SELECT total_changes()"))  # counts what triggers write too
            await session.execute(touch)
            after = await session.scalar(text("SELECT total_changes()"))
            return int(after) - int(before)
        version = text("SELECT xmin::text FROM call_search WHERE call_id = :c")
        before = await session.scalar(version, {"c": call_id})
        await session.execute(touch)
        return 1 if await session.scalar(version, {"c": call_id}) == before else 2

    assert run_on(server.settings, rows_written_by_a_status_update) == 1
    assert found(server, network, '"status check"') == [call_id]


@pytest.mark.parametrize("selective_matches", [0, index.SELECTIVE_MATCHES])
def test_both_plans_find_the_same_page(
    server: RunningServer, network: Network, calls: Calls, monkeypatch: pytest.MonkeyPatch, selective_matches: int
) -> None:
    """Both databases start from the matches when they are few and walk the calls newest first when they are
    many (0 forces the walk here). Either way: the same calls, newest first, this tenant's."""
    monkeypatch.setattr(index, "SELECTIVE_MATCHES", selective_matches)
    said = [Said(Speaker.AGENT, 1.0, f"Ticket {n} is about shipping.") for n in range(4)]
    made = [calls.with_transcript(network, turn) for turn in said]
    calls.with_transcript(network, Said(Speaker.AGENT, 1.0, "Nothing to see."))
    assert found(server, network, "shipping") == made[::-1]
    assert found(server, network, '"ticket 2"') == [made[2]]
    assert found(server, network, "shipp*") == made[::-1]
    assert found(server, network, "nowhere") == []
