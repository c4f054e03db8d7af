"""The floor of the media benchmarks: a minimal numpy RTP mixer on callplane's own 20 ms clock.

Legs are UDP sockets on loopback (asyncio datagram endpoints), in pairs that send to each other, as the
benchmarks' MediaChannels do. One tickable on callplane's `MediaClock` does every leg's work at once in numpy:
decode the last packet each leg received (the G.711 tables), build what each leg sends (a looped prompt, what its
peer received, or both mixed), encode, send one RTP packet per leg; a recording is one WAV per recorded leg, its
frames buffered and written about once a second. No jitter buffer, no DTMF detection, no per-call objects: what
decoding, mixing, encoding, recording and 50 packets a second each way cost in Python.

Used by `bench/media.py --synthetic` and `bench/dialog_media.py`.
"""

from __future__ import annotations

import asyncio
import struct
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from benchlib import own_cpu_seconds

from callplane.media import g711
from callplane.media.clock import MediaClock
from callplane.media.g711 import PayloadType

FRAME = 160  # samples in 20 ms at 8 kHz
PCMU = PayloadType.PCMU


@dataclass(frozen=True)
class FloorWork:
    """What each leg does per tick, matching one callplane mode."""

    play: bool = False  # send the looped prompt (media.py --synthetic: every channel plays)
    bridge: bool = False  # send what the pair's other leg received (a bridge)
    record: str = ""  # "mixed": every leg, sent + received; "composed": the first leg of a pair; "heard": every leg


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.last = bytes([g711.SILENCE_BYTE[PCMU]]) * FRAME
        self.received = 0

    def itself(self) -> _Inbox:  # the endpoint's protocol factory
        return self

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.last = data[12:]
        self.received += 1


class _Mixer:
    """Every leg's 20 ms at once: the one tickable on the clock."""

    def __init__(self, legs: int, work: FloorWork, prompt: npt.NDArray[np.int16], workdir: Path) -> None:
        self.work, self.prompt, self.position = work, prompt, 0
        self.inboxes = [_Inbox() for _ in range(legs)]
        self.transports: list[asyncio.DatagramTransport] = []
        self.remotes: list[tuple[str, int]] = []
        self.peer = np.arange(legs) ^ 1  # pairs: 0-1, 2-3, ...
        self.received = np.zeros((legs, FRAME), dtype=np.int16)
        self.sequence = 0
        recorded: dict[str, range] = {"mixed": range(legs), "composed": range(0, legs, 2), "heard": range(legs)}
        self.recorded = np.array(list(recorded.get(work.record, range(0))), dtype=np.intp)
        self.files = [wave.open(str(workdir / f"floor-{leg}.wav"), "wb") for leg in self.recorded]
        for file in self.files:
            file.setnchannels(1)
            file.setsampwidth(2)
            file.setframerate(8000)
        self.pending: list[npt.NDArray[np.int16]] = []

    def pull_inbound(self) -> None:
        joined = b"".join(inbox.last for inbox in self.inboxes)
        self.received = g711.decode(joined, PCMU).reshape(len(self.inboxes), FRAME)

    def push_outbound(self) -> None:
        sent = self.received[self.peer].astype(np.int32) if self.work.bridge else np.zeros_like(self.received, np.int32)
        if self.work.play:
            start = self.position % (len(self.prompt) - FRAME)
            sent += self.prompt[start : start + FRAME]
            self.position += FRAME
        sent16 = np.clip(sent, -32768, 32767).astype(np.int16)
        payloads = g711.encode(sent16, PCMU)
        self.sequence += 1
        for leg, (transport, remote) in enumerate(zip(self.transports, self.remotes, strict=True)):
            header = struct.pack("!BBHII", 0x80, PCMU, self.sequence & 0xFFFF, self.sequence * FRAME, leg)
            transport.sendto(header + payloads[leg * FRAME : (leg + 1) * FRAME], remote)
        if self.files:
            self._record(sent)

    def _record(self, sent: npt.NDArray[np.int32]) -> None:
        heard = self.received[self.recorded]
        if self.work.record != "heard":
            heard = np.clip(sent[self.recorded] + heard, -32768, 32767).astype(np.int16)
        self.pending.append(heard)
        if len(self.pending) >= 50:  # about once a second, as callplane's recorder writes
            self.flush()

    def flush(self) -> None:
        if self.pending:
            frames = np.concatenate(self.pending, axis=1)
            for row, file in enumerate(self.files):
                file.writeframes(frames[row].tobytes())
            self.pending.clear()

    def fail(self, error: BaseException) -> None:
        raise error

    def close(self) -> None:
        self.flush()
        for file in self.files:
            file.close()
        for transport in self.transports:
            transport.close()


async def measure_floor(legs: int, seconds: float, work: FloorWork, workdir: Path) -> dict[str, float]:
    """`legs` legs (pairs) for `seconds` after a second of warm-up: CPU % of one core, tick busy %, lateness."""
    loop = asyncio.get_running_loop()
    clock = MediaClock(keep_lateness_samples=100_000)
    t = np.arange(8000 * 4) / 8000.0
    mixer = _Mixer(legs, work, (6000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16), workdir)
    for inbox in mixer.inboxes:
        transport, _ = await loop.create_datagram_endpoint(inbox.itself, local_addr=("127.0.0.1", 0))
        mixer.transports.append(transport)
    addresses = [transport.get_extra_info("sockname")[:2] for transport in mixer.transports]
    mixer.remotes = [addresses[int(peer)] for peer in mixer.peer]
    clock.add(mixer)
    clock.start()
    try:
        await asyncio.sleep(1.0)
        clock.stats.lateness_ms.clear()
        cpu_before, wall_before, busy_before = own_cpu_seconds(), time.monotonic(), clock.stats.busy_seconds
        skipped_before, received_before = clock.stats.skipped_ticks, sum(i.received for i in mixer.inboxes)
        await asyncio.sleep(seconds)
        wall = time.monotonic() - wall_before
        return {
            "cpu": 100 * (own_cpu_seconds() - cpu_before) / wall,
            "busy": 100 * (clock.stats.busy_seconds - busy_before) / wall,
            "skipped": float(clock.stats.skipped_ticks - skipped_before),
            "rx_per_leg_s": (sum(i.received for i in mixer.inboxes) - received_before) / wall / legs,
            **clock.stats.lateness_percentiles(),
        }
    finally:
        await clock.stop()
        mixer.close()
