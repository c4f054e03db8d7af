"""Wakes this process's delivery workers when a transaction that wrote deliveries commits.

The worker still polls (other processes write deliveries too, and a wake-up can be missed); this only spares a
delivery written here the wait for the next poll. The wake-up fires after the commit, never before: a worker
woken earlier would claim before the rows are visible and then sleep a whole poll interval.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

_WRITTEN = "callplane.outbox_written"
_workers: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}


def deliveries_written(session: AsyncSession) -> None:
    """Say that this transaction wrote deliveries: when it commits, in-process workers claim at once."""
    session.sync_session.info[_WRITTEN] = True


def register(wake: asyncio.Event) -> int:
    """A worker's event to set after such a commit (on the worker's own loop); returns the key to unregister."""
    key = id(wake)
    _workers[key] = (asyncio.get_running_loop(), wake)
    return key


def unregister(key: int) -> None:
    _workers.pop(key, None)


def _wake_all() -> None:
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for loop, wake in list(_workers.values()):
        if loop is running:
            wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_WRITTEN, False):
        _wake_all()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_WRITTEN, None)  # nothing was written after all
