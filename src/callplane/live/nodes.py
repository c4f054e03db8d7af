"""Media nodes: their heartbeat, which are alive, where a new outbound call goes (docs/voice.md "Deployment").

A node is alive while it has not stopped and its last heartbeat is younger than `dead_after_s`. Times are the
writers' clocks (UTC; keep the machines on NTP). A node that crashed is recognised by its stale heartbeat; when it
starts again with the same node id it ends the calls it left live (VoiceService.recover_orphans).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.voice.models import VoiceCall
from callplane.core.voice.node_models import CommandStatus, MediaNode, NodeCommand
from callplane.core.voice.states import LIVE_STATES
from callplane.db.base import utcnow
from callplane.errors import TransientError
from callplane.media.engine import CallEngine, EngineNotRunning

log = logging.getLogger("callplane.voice.nodes")

FINISHED_COMMANDS_KEPT = timedelta(hours=1)


class NodeUnavailable(TransientError):
    """No media node can take this command now."""


class NoMediaNode(NodeUnavailable):
    """No media node is running: start `callplane media` (or `callplane serve` with CALLPLANE_VOICE_ENABLED=true)."""


class MediaNodeUnavailable(NodeUnavailable):
    """The media node carrying this call is not answering."""


def alive(now: datetime, dead_after_s: float) -> ColumnElement[bool]:
    return (MediaNode.stopped_at.is_(None)) & (MediaNode.heartbeat_at > now - timedelta(seconds=dead_after_s))


async def is_alive(session: AsyncSession, *, node_id: str, dead_after_s: float) -> bool:
    found = await session.scalar(select(MediaNode.id).where(MediaNode.id == node_id, alive(utcnow(), dead_after_s)))
    return found is not None


async def pick_node(session: AsyncSession, *, dead_after_s: float) -> str:
    """The alive node carrying the fewest live calls (counted in voice_calls, so calls placed since the last
    heartbeat count too); ties go to the freshest heartbeat."""
    nodes = list(
        await session.execute(
            select(MediaNode.id, MediaNode.heartbeat_at)
            .where(alive(utcnow(), dead_after_s), MediaNode.drain_requested_at.is_(None))  # draining: no new calls
            .order_by(MediaNode.heartbeat_at.desc())
        )
    )
    if not nodes:
        raise NoMediaNode()
    rows = await session.execute(
        select(VoiceCall.node_id, func.count())
        .where(VoiceCall.node_id.in_([node for node, _ in nodes]), VoiceCall.state.in_(LIVE_STATES))
        .group_by(VoiceCall.node_id)
    )
    counts: dict[str, int] = {node: count for node, count in rows}
    return min((node for node, _ in nodes), key=lambda node: counts.get(node, 0))


async def list_nodes(session: AsyncSession, *, dead_after_s: float) -> list[tuple[MediaNode, bool]]:
    """Every node that ever ran, with whether it is alive now (for operators)."""
    nodes = list(await session.scalars(select(MediaNode).order_by(MediaNode.id)))
    living = set(await session.scalars(select(MediaNode.id).where(alive(utcnow(), dead_after_s))))
    return [(node, node.id in living) for node in nodes]


async def request_drain(session: AsyncSession, *, node_id: str) -> MediaNode | None:
    """Ask a node to drain (the admin API, `callplane media-drain`): new outbound calls go elsewhere at once; the node
    sees it at its next beat, answers 503 to OPTIONS and new INVITEs, lets its calls finish, then exits. None: no
    such node. Asking again keeps the first request's time."""
    node = await session.get(MediaNode, node_id)
    if node is not None and node.drain_requested_at is None:
        node.drain_requested_at = utcnow()
    return node


async def calls_of_dead_nodes(session: AsyncSession, *, dead_after_s: float, this_node: str) -> list[str]:
    """Live calls carried by nodes that are not alive (killed: their heartbeat went stale), other than this one, and
    older than `dead_after_s` (a node starting again with an old row has announced itself by then). An alive node
    ends them (VoiceService.end_calls_of_dead_nodes), so a crashed node's calls end without waiting for its restart."""
    now = utcnow()
    dead = list(await session.scalars(select(MediaNode.id).where(~alive(now, dead_after_s), MediaNode.id != this_node)))
    if not dead:
        return []
    return list(
        await session.scalars(
            select(VoiceCall.id).where(  # ix_voice_calls_node_state: a few index probes, not a scan of the history
                VoiceCall.node_id.in_(dead),
                VoiceCall.state.in_(LIVE_STATES),
                VoiceCall.created_at < now - timedelta(seconds=dead_after_s),
            )
        )
    )


class NodeHeartbeat:
    """Keeps this node's row fresh (and its old command rows pruned) while the node runs."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        node_id: str,
        sip_address: str | None,
        live_calls: Callable[[], int],
        every_s: float,
        on_drain: Callable[[], None] | None = None,
        after_beat: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.sessions = sessions
        self.node_id = node_id
        self.sip_address = sip_address
        self.live_calls = live_calls
        self.every_s = every_s
        self.on_drain = on_drain  # called once, at the first beat that finds a drain requested
        self.after_beat = after_beat  # e.g. ending the calls of dead nodes
        self.draining = False

    async def start(self) -> None:
        """Announce the node; commands it had taken when it last stopped will never finish: fail them."""
        now = utcnow()
        async with self.sessions() as session, session.begin():
            node = await session.get(MediaNode, self.node_id)
            if node is None:
                node = MediaNode(id=self.node_id)
                session.add(node)
            node.sip_address = self.sip_address
            node.live_calls = self.live_calls()
            node.started_at = now
            node.heartbeat_at = now
            node.stopped_at = None
            node.drain_requested_at = None  # a node started again takes calls again
            await session.execute(
                update(NodeCommand)
                .where(NodeCommand.node_id == self.node_id, NodeCommand.status == CommandStatus.RUNNING)
                .values(
                    status=CommandStatus.FAILED,
                    finished_at=now,
                    error={"type": _qualified(MediaNodeUnavailable), "message": "the media node restarted"},
                )
            )

    async def beat(self) -> None:
        now = utcnow()
        async with self.sessions() as session, session.begin():
            beat = await session.execute(
                update(MediaNode)
                .where(MediaNode.id == self.node_id)
                .values(heartbeat_at=now, live_calls=self.live_calls())
                .execution_options(synchronize_session=False)
            )
            if getattr(beat, "rowcount", 0) == 0:  # the row was removed (by an operator): announce the node again
                session.add(MediaNode(id=self.node_id, sip_address=self.sip_address, live_calls=self.live_calls()))
            elif not self.draining and await session.scalar(
                select(MediaNode.drain_requested_at).where(MediaNode.id == self.node_id)
            ):
                self.draining = True
                log.warning(
                    "draining: no new calls; stopping once the live calls end", extra={"fields": {"node": self.node_id}}
                )
                if self.on_drain is not None:
                    self.on_drain()
            # pending commands nobody waits for any more are never run
            await session.execute(
                update(NodeCommand)
                .where(
                    NodeCommand.node_id == self.node_id,
                    NodeCommand.status == CommandStatus.PENDING,
                    NodeCommand.expires_at <= now,
                )
                .values(status=CommandStatus.EXPIRED, finished_at=now)
            )
            await session.execute(
                delete(NodeCommand).where(
                    NodeCommand.node_id == self.node_id,
                    NodeCommand.status.in_([CommandStatus.DONE, CommandStatus.FAILED, CommandStatus.EXPIRED]),
                    NodeCommand.created_at < now - FINISHED_COMMANDS_KEPT,
                )
            )

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)
            if stop.is_set():
                break
            try:
                await self.beat()
            except (OSError, DBAPIError) as error:  # the database is away for a moment: the next beat tries again
                log.warning("heartbeat failed", extra={"fields": {"error": repr(error)}})
                continue
            if self.after_beat is not None:
                try:
                    await self.after_beat()
                except (OSError, DBAPIError) as error:
                    log.warning("after the heartbeat", extra={"fields": {"error": repr(error)}})

    async def stopped(self) -> None:
        """A clean stop: the node takes nothing more (its calls have been ended by VoiceService.stop)."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(MediaNode).where(MediaNode.id == self.node_id).values(stopped_at=utcnow(), live_calls=0)
            )


class DetachedEngine:
    """The engine of a process that runs none (`serve --role api`): a VoiceService there reads calls and relays
    commands to the nodes, so nothing reaches this; anything that does is refused."""

    def __getattr__(self, name: str) -> Any:
        async def refuse(*args: Any, **kwargs: Any) -> Any:
            raise EngineNotRunning("this process runs no media engine; live calls are carried by media nodes")

        return refuse


def detached_engine() -> CallEngine:
    return cast(CallEngine, DetachedEngine())


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"
