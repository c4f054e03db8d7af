"""The one 20 ms clock that drives every RTP stream in the process.

A single asyncio task wakes on absolute deadlines and ticks all channels in two phases: first every
channel takes its inbound frame out of its jitter buffer, then every channel produces its outbound
frame. The split lets a bridge hand A's inbound frame to B in the same tick, whatever the order.
One timer for all calls (instead of one per call) keeps the loop's timer heap small and the packets
of all calls in step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from callplane.observability.metrics import MEDIA

FRAME_SECONDS = 0.020
_MAX_CATCH_UP_TICKS = 5  # beyond this we are overloaded: skip ahead rather than burst packets

log = logging.getLogger(__name__)


class Tickable(Protocol):
    def pull_inbound(self) -> None: ...

    def push_outbound(self) -> None: ...

    def fail(self, error: BaseException) -> None:
        """Called when a tick phase raised: the channel shuts itself down; the others carry on."""


@dataclass(slots=True)
class ClockStats:
    ticks: int = 0
    skipped_ticks: int = 0
    failed_channels: int = 0
    busy_seconds: float = 0.0  # time spent inside ticks: the share of each 20 ms the media plane uses
    lateness_ms: list[float] = field(default_factory=list)

    def lateness_percentiles(self) -> dict[str, float]:
        if not self.lateness_ms:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        values = np.array(self.lateness_ms)
        return {
            "p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)),
            "max": float(values.max()),
        }


class MediaClock:
    def __init__(self, *, keep_lateness_samples: int = 0) -> None:
        self._channels: dict[int, Tickable] = {}
        self._task: asyncio.Task[None] | None = None
        self._keep_lateness = keep_lateness_samples
        self.stats = ClockStats()

    def add(self, channel: Tickable) -> None:
        self._channels[id(channel)] = channel

    def remove(self, channel: Tickable) -> None:
        self._channels.pop(id(channel), None)

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="media-clock")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += FRAME_SECONDS
            # Always yield, even when late: a tick that never awaits starves the sockets it should read.
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            late = loop.time() - deadline
            if late >= FRAME_SECONDS:  # a whole frame behind: the far end hears a gap unless its buffer hides it
                MEDIA.late_ticks += 1
            if late > _MAX_CATCH_UP_TICKS * FRAME_SECONDS:
                skipped = int(late / FRAME_SECONDS)
                self.stats.skipped_ticks += skipped
                MEDIA.skipped_ticks += skipped
                deadline += skipped * FRAME_SECONDS
            if self._keep_lateness and len(self.stats.lateness_ms) < self._keep_lateness:
                self.stats.lateness_ms.append(max(0.0, late) * 1000)
            self.tick()

    def tick(self) -> None:
        """One 20 ms step for every channel; a channel that raises is failed alone."""
        started = time.perf_counter()
        self.stats.ticks += 1
        MEDIA.ticks += 1
        channels = list(self._channels.values())
        for channel in channels:
            try:
                channel.pull_inbound()
            except Exception as error:  # noqa: BLE001 - one broken call must not stop the clock for all
                self._fail(channel, error)
        for channel in channels:
            if id(channel) not in self._channels:
                continue
            try:
                channel.push_outbound()
            except Exception as error:  # noqa: BLE001 - one broken call must not stop the clock for all
                self._fail(channel, error)
        self.stats.busy_seconds += time.perf_counter() - started

    def _fail(self, channel: Tickable, error: BaseException) -> None:
        log.error("media channel failed; closing it", exc_info=error)
        self.stats.failed_channels += 1
        self.remove(channel)
        channel.fail(error)
