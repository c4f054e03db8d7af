"""Draining and dead nodes on the shared database (live/nodes.py, VoiceService.end_calls_of_dead_nodes), on SQLite
and PostgreSQL: a drain request takes a node out of `pick_node` at once and reaches the node at its next heartbeat
(once); a node started again takes calls again; the live calls of a node whose heartbeat went stale are ended by
another node, once, with the documented terminal state; a node's own calls and fresh calls are left alone."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.voice.models import HangupSource, VoiceCall, VoiceCallState
from callplane.core.voice.node_models import MediaNode
from callplane.core.voice.states import ErrorCode
from callplane.db.base import utcnow
from callplane.live.calls import LegChange, LegEvent, LegListener
from callplane.live.control import VoiceService
from callplane.live.nodes import NoMediaNode, calls_of_dead_nodes, detached_engine, pick_node, request_drain
from callplane.settings import Settings
from callplane.surfaces.infobip.calls_mapping import InfobipEventRenderer
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from tests.voice.test_relay import _database, _heartbeat, _live_call

DEAD_AFTER_S = 5


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(environment="test", data_dir=tmp_path / "data")
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url:
        yield Settings(environment="test", data_dir=tmp_path / "data", database_url=url)


def _node_a(sessions: async_sessionmaker[AsyncSession], tmp_path: Path, listener: LegListener) -> VoiceService:
    """node-a's VoiceService (no engine running: the dead node's calls are not live here)."""
    return VoiceService(
        engine=detached_engine(),
        sessions=sessions,
        secret_box=SecretBox("0" * 43 + "="),
        renderer=InfobipEventRenderer(),
        data_dir=tmp_path / "data",
        node_id="node-a",
        fetch_policy=TargetPolicy.from_config([], []),
        listeners=[listener],
    )


def test_a_drained_node_takes_no_new_call_and_learns_it_at_its_next_beat(database: Settings) -> None:
    asyncio.run(_drain(database))


async def _drain(settings: Settings) -> None:
    async with _database(settings) as (sessions, _):
        drained: list[str] = []
        a = _heartbeat(sessions, "node-a")
        a.on_drain = lambda: drained.append("node-a")
        b = _heartbeat(sessions, "node-b")
        await a.start()
        await b.start()
        async with sessions() as session, session.begin():
            assert await request_drain(session, node_id="no-such-node") is None
            node = await request_drain(session, node_id="node-a")
            assert node is not None and node.drain_requested_at is not None
            first = node.drain_requested_at
        async with sessions() as session, session.begin():  # asking again keeps the first request's time
            again = await request_drain(session, node_id="node-a")
            assert again is not None and again.drain_requested_at == first
        async with sessions() as session:
            for _ in range(5):
                assert await pick_node(session, dead_after_s=DEAD_AFTER_S) == "node-b"
        await a.beat()
        await a.beat()
        assert drained == ["node-a"] and a.draining  # told once
        await b.beat()
        assert not b.draining
        async with sessions() as session, session.begin():
            await request_drain(session, node_id="node-b")
        async with sessions() as session:
            with pytest.raises(NoMediaNode):
                await pick_node(session, dead_after_s=DEAD_AFTER_S)
        restarted = _heartbeat(sessions, "node-a")
        await restarted.start()  # a node started again with the same id accepts calls again
        async with sessions() as session:
            assert await pick_node(session, dead_after_s=DEAD_AFTER_S) == "node-a"
            row = await session.get(MediaNode, "node-a")
            assert row is not None and row.drain_requested_at is None


def test_the_calls_of_a_dead_node_are_ended_once_by_a_living_one(database: Settings, tmp_path: Path) -> None:
    asyncio.run(_reap(database, tmp_path))


async def _reap(settings: Settings, tmp_path: Path) -> None:
    async with _database(settings) as (sessions, account_id):
        for node in ("node-a", "node-b"):
            await _heartbeat(sessions, node).start()
        dead_call = await _live_call(sessions, account_id, "node-b")
        own_call = await _live_call(sessions, account_id, "node-a")
        async with sessions() as session, session.begin():
            old = utcnow() - timedelta(seconds=DEAD_AFTER_S * 2)
            await session.execute(update(VoiceCall).values(created_at=old))
        async with sessions() as session:  # both nodes beat recently: nothing is dead
            assert await calls_of_dead_nodes(session, dead_after_s=DEAD_AFTER_S, this_node="node-a") == []
        async with sessions() as session, session.begin():  # node-b was killed: its heartbeat goes stale
            stale = utcnow() - timedelta(minutes=1)
            await session.execute(update(MediaNode).where(MediaNode.id == "node-b").values(heartbeat_at=stale))
        async with sessions() as session:
            # node-b (started again) ends its own calls itself (recover_orphans), and node-a is alive
            assert await calls_of_dead_nodes(session, dead_after_s=DEAD_AFTER_S, this_node="node-b") == []
            assert await calls_of_dead_nodes(session, dead_after_s=DEAD_AFTER_S, this_node="node-a") == [dead_call]
        changes: list[LegChange] = []

        async def heard(change: LegChange) -> None:
            changes.append(change)

        a, also_a = _node_a(sessions, tmp_path, heard), _node_a(sessions, tmp_path, heard)
        counts = await asyncio.gather(
            a.end_calls_of_dead_nodes(DEAD_AFTER_S), also_a.end_calls_of_dead_nodes(DEAD_AFTER_S)
        )
        assert sorted(counts) == [0, 1]  # two lookers, one ending
        async with sessions() as session:
            ended = await session.get(VoiceCall, dead_call)
            mine = await session.get(VoiceCall, own_call)
            assert ended is not None and mine is not None
            assert ended.state == VoiceCallState.FAILED and ended.hangup_source == HangupSource.PLATFORM
            assert ended.error_code == int(ErrorCode.ENGINE_RESTARTED)
            assert mine.state == VoiceCallState.ESTABLISHED  # a living node's call is left alone
        assert [(c.call_id, c.event) for c in changes] == [(dead_call, LegEvent.FAILED)]  # one terminal event
        assert await a.end_calls_of_dead_nodes(DEAD_AFTER_S) == 0
