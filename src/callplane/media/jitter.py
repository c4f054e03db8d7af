"""A small fixed-depth jitter buffer keyed by RTP timestamp.

Packets may arrive late, early, duplicated or with a different packet time (sipp's pcaps are 30 ms, we
play out 20 ms), so samples are placed by timestamp rather than queued by arrival. Depth is fixed and
small (40 ms): on a LAN or a trunk in the same region that hides reordering without adding delay;
an adaptive buffer is not worth its complexity for G.711.
"""

from __future__ import annotations

import numpy as np

from callplane.media.g711 import Pcm
from callplane.observability.metrics import MEDIA

FRAME_SAMPLES = 160
_HALF_RANGE = 1 << 31


class JitterBuffer:
    def __init__(self, *, prefetch_frames: int = 2, max_frames: int = 10, idle_reset_frames: int = 25) -> None:
        self._prefetch = prefetch_frames * FRAME_SAMPLES
        self._max = max_frames * FRAME_SAMPLES
        self._idle_reset = idle_reset_frames
        self._packets: dict[int, Pcm] = {}  # timestamp relative to the stream base -> samples
        self._ssrc: int | None = None
        self._base: int = 0
        self._cursor: int | None = None  # next relative timestamp to play out
        self._empty_pops = 0
        self.late_packets = 0
        self.dropped_samples = 0

    def push(self, *, ssrc: int, timestamp: int, samples: Pcm) -> None:
        if ssrc != self._ssrc:  # a new source (re-INVITE, transfer, a new pcap) starts a new timeline
            self.reset()
            self._ssrc = ssrc
            self._base = timestamp
        relative = (timestamp - self._base) & 0xFFFFFFFF
        if relative >= _HALF_RANGE:
            relative -= 1 << 32
        if self._cursor is not None and relative + len(samples) <= self._cursor:
            self.late_packets += 1
            MEDIA.jitter_late_packets += 1  # process-wide, for /metrics
            return
        self._packets[relative] = samples

    def reset(self) -> None:
        self._packets.clear()
        self._ssrc = None
        self._cursor = None
        self._empty_pops = 0

    def buffered_samples(self) -> int:
        if not self._packets:
            return 0
        start = min(self._packets) if self._cursor is None else self._cursor
        end = max(ts + len(samples) for ts, samples in self._packets.items())
        return max(0, end - start)

    def pop(self) -> Pcm | None:
        """The next 20 ms, or None when nothing was received for it (the caller plays silence)."""
        if self._cursor is None:
            if not self._packets or self.buffered_samples() < self._prefetch:
                return None
            self._cursor = min(self._packets)
        buffered = self.buffered_samples()
        if buffered > self._max:  # the far end got ahead of us (clock drift, a burst): drop the excess
            skip = buffered - self._prefetch
            self._cursor += skip
            self.dropped_samples += skip
            MEDIA.jitter_overflows += 1
            MEDIA.jitter_dropped_samples += skip
        start = self._cursor
        end = start + FRAME_SAMPLES
        frame: Pcm | None = None
        for timestamp in sorted(self._packets):
            if timestamp >= end:
                break
            samples = self._packets[timestamp]
            packet_end = timestamp + len(samples)
            if packet_end > start:
                if frame is None:
                    frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
                low = max(start, timestamp)
                high = min(end, packet_end)
                frame[low - start : high - start] = samples[low - timestamp : high - timestamp]
            if packet_end <= end:
                del self._packets[timestamp]
        self._cursor = end
        if frame is None:
            self._empty_pops += 1
            if self._empty_pops >= self._idle_reset and not self._packets:
                self._cursor = None  # a long silence (hold, VAD): re-prefetch when audio resumes
        else:
            self._empty_pops = 0
        return frame
