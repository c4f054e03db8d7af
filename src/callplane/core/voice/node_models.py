"""Media nodes and the command relay between API processes and the node that carries a call (docs/voice.md).

A media node (`callplane media`, or `serve` with the engine) writes a heartbeat row; an API process that gets a
command for a call carried by another node writes a `voice_node_commands` row for that node, wakes it (NOTIFY on
PostgreSQL, its poll otherwise) and waits for the outcome the node writes back into the same row.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, new_id, utcnow


class MediaNode(Base):
    """A process running the SIP/media engine; alive while its heartbeat is recent and it has not stopped."""

    __tablename__ = "voice_media_nodes"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # CALLPLANE_VOICE_NODE_ID
    sip_address: Mapped[str | None] = mapped_column(String(255))  # host:port peers send to (for operators)
    live_calls: Mapped[int] = mapped_column(default=0)  # at the last heartbeat: new outbound calls go to the least
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]  # a clean stop; a crash leaves it empty and the heartbeat goes stale
    drain_requested_at: Mapped[datetime | None]  # an operator asked it to drain: no new calls, then it exits


class CommandStatus(StrEnum):
    PENDING = "PENDING"  # written by the API process, not yet taken by the node
    RUNNING = "RUNNING"  # taken by the node
    DONE = "DONE"  # outcome stored: `result` (or nothing)
    FAILED = "FAILED"  # outcome stored: `error`, the same error the API would have raised in-process
    EXPIRED = "EXPIRED"  # the API process stopped waiting before the node took it: never run


class NodeCommand(Base):
    """One control command for a live call, addressed to the node that carries it."""

    __tablename__ = "voice_node_commands"
    __table_args__ = (Index("ix_voice_node_commands_node_status", "node_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    node_id: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[str] = mapped_column(String(36))
    command: Mapped[str] = mapped_column(String(64))  # a VoiceService method marked @relayed
    arguments: Mapped[dict[str, Any]] = mapped_column(default=dict)  # keyword arguments, as relay.encode writes them
    status: Mapped[str] = mapped_column(String(16), default=CommandStatus.PENDING)
    result: Mapped[dict[str, Any] | None]  # {"call_id": ...} or {"dialog_id": ...} for commands that return one
    error: Mapped[dict[str, Any] | None]  # {"type": "module.Class", "message": ..., "problems": [...]}
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]  # the node does not start it after this: the API process answered already
    claimed_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
