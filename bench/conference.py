"""Conferences (mixes, media/mixer.py) on one core of the media engine, against plain bridged calls as the floor.

Three measurements, printed as tables:

1. The mixer alone: one `Mix` of N members ticked in a loop (every member's frame is a tone, nobody muted), so
   the cost of mixing per tick and per participant, with no sockets. Its floor, in the same run: the same
   arithmetic on a ready-made int16 matrix in numpy (sum, minus own row, clip, cast), with none of the per-member
   Python work. A bridge's equivalent is zero (each leg sends the other's inbound frame as it is).
2. Conferences on the clock: `--mixes` levels of `--party`-member mixes. Every member is a MediaChannel (jitter
   buffer, G.711 decode and encode, one RTP packet each way every 20 ms) on the engine's one `MediaClock`, in its
   mix; its far end is a "phone" in a separate load-generator process pinned to CPU 1 that streams a tone (each
   member of a mix its own frequency) and never reads what it gets back. This process (the engine) is pinned to
   CPU 0. CPU is this process's (all threads), measured over `--seconds` after a second of warm-up; tick lateness
   is the clock's own (how late each 20 ms tick started).
3. The floor, in the same run: plain 2-party bridged calls (`bridge_peer`, as `bridge()` sets it) at `--bridges`
   levels, with the same generator, channels and clock.

"Carried" is the largest level whose p99 tick lateness stays inside one 20 ms frame; "by CPU" is 100 % of a core
over the CPU one conference (or call) took. With `--record`, every mix records the room and one file per member,
and every bridged call one MONO file (what its first leg heard and sent). A level past the lateness limit ends
that kind's ramp.

Run: .venv/bin/python bench/conference.py [--mixes 20,40,60,80,100] [--bridges 50,100,150,200,250]
     [--party 5] [--seconds 5] [--record] [--realtime]

`--realtime` (root) runs the engine and the phones SCHED_FIFO: on a machine shared with other work, the clock's
lateness otherwise measures the others' load (at a load average of 10 on two cores the engine got a fifth of its
core and missed 20 ms at 20 conferences using 18 % CPU); the CPU figures barely move either way.

The machine is shared with other work: the load average is printed beside every row, and the lateness figures
move with it far more than the CPU figures do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from benchlib import load_average, own_cpu_seconds, ratio

from callplane.media import g711
from callplane.media.audio import RecordingChannels, WavRecorder
from callplane.media.channel import MediaChannel
from callplane.media.clock import MediaClock
from callplane.media.g711 import PayloadType
from callplane.media.jitter import FRAME_SAMPLES
from callplane.media.mixer import Mix
from callplane.media.sdp import Negotiated

LATENESS_LIMIT_MS = 20.0
_FREQUENCIES = (300.0, 500.0, 700.0, 1100.0, 1300.0, 1700.0, 1900.0, 2300.0)


def _tone_frames(frequency: float, frames: int = 50) -> list[np.ndarray]:
    t = np.arange(frames * FRAME_SAMPLES) / 8000.0
    samples = (6000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
    return [samples[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES] for index in range(frames)]


# ---- the load generator (CPU 1): one phone per engine channel -----------------------------------


def _realtime() -> None:
    """SCHED_FIFO (root): the pinned process runs before every ordinary process on its core, as on a core of its
    own; the kernel still leaves the others 5 % of each second (sched_rt_runtime_us)."""
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))


def run_phones(count: int, party: int, realtime: bool) -> None:
    """Bind `count` UDP sockets, print their ports, read the engine's ports, then stream a PCMU tone from each
    socket to its channel every 20 ms until killed. What comes back stays unread (the kernel drops it)."""
    os.sched_setaffinity(0, {1})
    if realtime:
        _realtime()
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        sockets.append(sock)
    print(json.dumps([sock.getsockname()[1] for sock in sockets]), flush=True)
    targets = [("127.0.0.1", int(port)) for port in json.loads(sys.stdin.readline())]
    payloads = [
        [g711.encode(frame, PayloadType.PCMU) for frame in _tone_frames(_FREQUENCIES[index % len(_FREQUENCIES)])]
        for index in range(party)
    ]
    header = struct.Struct("!BBHII")
    tick = 0
    deadline = time.monotonic()
    while True:
        for index, (sock, target) in enumerate(zip(sockets, targets, strict=True)):
            packet = header.pack(0x80, PayloadType.PCMU, tick & 0xFFFF, (tick * FRAME_SAMPLES) & 0xFFFFFFFF, index)
            try:
                sock.sendto(packet + payloads[index % party][tick % 50], target)
            except BlockingIOError:
                pass
        tick += 1
        deadline += 0.020
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.1:  # far behind (the machine is busy): skip ahead rather than burst
            deadline = time.monotonic()


# ---- the engine side (CPU 0) ---------------------------------------------------------------------


@dataclass
class Row:
    units: int
    legs: int
    cpu: float  # % of one core
    busy: float  # % of wall time inside clock ticks
    rx_per_leg_s: float
    p50: float
    p99: float
    max: float
    skipped: int
    load: str

    @property
    def per_unit(self) -> float:
        return self.cpu / self.units

    @property
    def per_leg(self) -> float:
        return self.cpu / self.legs

    @property
    def on_time(self) -> bool:
        return self.p99 <= LATENESS_LIMIT_MS


async def _level(kind: str, units: int, party: int, seconds: float, record: bool, realtime: bool, workdir: Path) -> Row:
    legs = units * (party if kind == "mix" else 2)
    generator = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--phones", str(legs), "--party", str(party if kind == "mix" else 2),
        *(["--realtime"] if realtime else []), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert generator.stdin is not None and generator.stdout is not None
    phone_ports = json.loads(await generator.stdout.readline())
    clock = MediaClock(keep_lateness_samples=1_000_000)
    channels: list[MediaChannel] = []
    mixes: list[Mix] = []
    recorders: list[WavRecorder] = []
    try:
        for index in range(legs):
            channel = MediaChannel(clock=clock, on_digit=lambda digit: None, label=str(index))
            await channel.open("127.0.0.1", (20000, 60000))
            channel.configure(Negotiated(PayloadType.PCMU, None, "127.0.0.1", phone_ports[index], "sendrecv"))
            channels.append(channel)
        if kind == "mix":
            for number in range(units):
                mix = Mix(f"mix-{number}", on_prompt_finished=lambda playback_id, completed: None)
                clock.add(mix)
                for offset, channel in enumerate(channels[number * party : (number + 1) * party]):
                    mix.add(f"{number}-{offset}", channel)
                if record:
                    mix.start_recording(workdir / f"mix-{number}.wav", workdir / f"mix-{number}")
                mixes.append(mix)
        else:
            for first, second in zip(channels[0::2], channels[1::2], strict=True):
                first.bridge_peer, second.bridge_peer = second, first
                if record:
                    recorder = WavRecorder(workdir / f"call-{first.label}.wav", RecordingChannels.MONO)
                    first.add_sink(recorder)
                    recorders.append(recorder)
        generator.stdin.write((json.dumps([channel.local_port for channel in channels]) + "\n").encode())
        await generator.stdin.drain()
        clock.start()
        await asyncio.sleep(1.0)  # warm-up: every jitter buffer primed
        clock.stats.lateness_ms.clear()
        received_before = sum(channel.stats.packets_received for channel in channels)
        cpu_before, wall_before, busy_before = own_cpu_seconds(), time.monotonic(), clock.stats.busy_seconds
        skipped_before = clock.stats.skipped_ticks
        await asyncio.sleep(seconds)
        wall = time.monotonic() - wall_before
        cpu = 100 * (own_cpu_seconds() - cpu_before) / wall
        busy = 100 * (clock.stats.busy_seconds - busy_before) / wall
        received = sum(channel.stats.packets_received for channel in channels) - received_before
        lateness = clock.stats.lateness_percentiles()
        return Row(
            units, legs, cpu, busy, received / legs / wall, lateness["p50"], lateness["p99"], lateness["max"],
            clock.stats.skipped_ticks - skipped_before, load_average()[5:],
        )  # fmt: skip
    finally:
        await clock.stop()
        for mix in mixes:
            mix.stop_recording()
        for recorder in recorders:
            recorder.close()
        for channel in channels:
            channel.close()
        generator.kill()
        await generator.wait()


def _ramp(
    kind: str, levels: list[int], party: int, seconds: float, record: bool, realtime: bool, workdir: Path
) -> list[Row]:
    rows: list[Row] = []
    for units in levels:
        level_dir = workdir / f"{kind}-{units}"
        level_dir.mkdir()
        row = asyncio.run(_level(kind, units, party, seconds, record, realtime, level_dir))
        rows.append(row)
        print(
            f" {units:6d}  {row.legs:5d}  {row.cpu:6.1f}  {row.per_unit:8.3f}%  {row.per_leg:8.3f}%  {row.busy:6.1f}"
            f"  {row.rx_per_leg_s:6.1f}  {row.p50:6.2f}/{row.p99:6.2f}/{row.max:6.1f}  {row.skipped:7d}  {row.load}",
            flush=True,
        )
        if not row.on_time:
            break
    return rows


def _mixer_micro(party: int, ticks: int) -> tuple[float, float]:
    """Microseconds per tick: one Mix of `party` talking members, and the bare numpy arithmetic (the floor)."""
    clock = MediaClock()
    mix = Mix("micro", on_prompt_finished=lambda playback_id, completed: None)
    frames = [_tone_frames(_FREQUENCIES[index % len(_FREQUENCIES)], 1)[0] for index in range(party)]
    for index, frame in enumerate(frames):
        channel = MediaChannel(clock=clock, on_digit=lambda digit: None)
        channel.inbound_frame = frame
        mix.add(str(index), channel)
    started = time.process_time()  # CPU time: on a shared machine wall time counts the others' work too
    for _ in range(ticks):
        mix.pull_inbound()
        mix.push_outbound()
    mixed = (time.process_time() - started) / ticks * 1e6
    matrix = np.stack(frames)
    started = time.process_time()
    for _ in range(ticks):
        sent = matrix.astype(np.int32)
        heard = sent.sum(axis=0) - sent
        np.minimum(heard, 32767, out=heard)
        np.maximum(heard, -32768, out=heard)
        heard.astype(np.int16)
    floor = (time.process_time() - started) / ticks * 1e6
    return mixed, floor


def _clock_only(kind: str, legs: int, party: int, ticks: int) -> float:
    """CPU microseconds per leg per tick of `clock.tick()` with `legs` channels bridged in pairs or in mixes of
    `party`: each far end's frame is handed in directly (a fresh tone frame per tick instead of RTP through the
    jitter buffer), and every channel encodes and sends its packet to one UDP socket nobody reads."""
    clock = MediaClock()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    channels: list[MediaChannel] = []
    used: dict[str, float] = {}

    async def build() -> None:
        for index in range(legs):
            channel = MediaChannel(clock=clock, on_digit=lambda digit: None, label=str(index))
            await channel.open("127.0.0.1", (20000, 60000))
            channel.configure(Negotiated(PayloadType.PCMU, None, "127.0.0.1", sink.getsockname()[1], "sendrecv"))
            frames = _tone_frames(_FREQUENCIES[index % party])

            def pull(channel: MediaChannel = channel, frames: list[np.ndarray] = frames) -> None:
                channel.inbound_frame = frames[channel.stats.packets_sent % 50].copy()  # as decode makes a new one

            channel.pull_inbound = pull  # type: ignore[method-assign]
            channels.append(channel)
        if kind == "mix":
            for number in range(legs // party):
                mix = Mix(f"mix-{number}", on_prompt_finished=lambda playback_id, completed: None)
                clock.add(mix)
                for offset, channel in enumerate(channels[number * party : (number + 1) * party]):
                    mix.add(f"{number}-{offset}", channel)
        else:
            for first, second in zip(channels[0::2], channels[1::2], strict=True):
                first.bridge_peer, second.bridge_peer = second, first
        for _ in range(50):
            clock.tick()
        started = time.process_time()
        for _ in range(ticks):
            clock.tick()
        used[kind] = (time.process_time() - started) / ticks / legs * 1e6
        for channel in channels:
            channel.close()

    asyncio.run(build())
    sink.close()
    return used[kind]


def _carried(rows: list[Row]) -> Row:
    """The largest level on time (the first level when none was): its CPU per unit and per leg are the figures."""
    on_time = [row for row in rows if row.on_time]
    return max(on_time, key=lambda row: row.units) if on_time else rows[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixes", default="20,40,60,80,100", help="concurrent conferences per level")
    parser.add_argument("--bridges", default="50,100,150,200,250", help="concurrent bridged calls per level (floor)")
    parser.add_argument("--party", type=int, default=5, help="members per conference")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per level")
    parser.add_argument("--record", action="store_true", help="record every conference (room + members) and call")
    parser.add_argument(
        "--realtime", action="store_true", help="SCHED_FIFO for the engine and the phones (root): a core to itself"
    )
    parser.add_argument("--phones", type=int, default=0, help=argparse.SUPPRESS)  # the load generator's own mode
    args = parser.parse_args()
    if args.phones:
        run_phones(args.phones, args.party, args.realtime)
        return
    os.sched_setaffinity(0, {0})
    if args.realtime:
        _realtime()
    print(
        f"engine pinned to CPU 0, phones (load generator) to CPU 1{', both SCHED_FIFO' if args.realtime else ''};"
        f" {os.cpu_count()} CPUs;"
        f" Python {sys.version.split()[0]}; numpy {np.__version__}; {load_average()}"
    )
    print("\n1. the mixer alone (one mix, every member talking; floor: the same numpy arithmetic on one matrix)")
    print(" members  CPU us/tick  us/member  % core/member | floor us/tick  ratio")
    for members in sorted({2, 3, args.party, 10, 20}):
        mixed, floor = _mixer_micro(members, 20_000)
        print(
            f" {members:7d}  {mixed:11.1f}  {mixed / members:9.2f}  {mixed / members / 200:12.4f}%"
            f" | {floor:13.1f}  {ratio(floor, mixed):>5}",
            flush=True,
        )
    print(
        f"\n1b. per leg on the clock, far ends handed in directly (no RTP in), packets sent to a sink:"
        f" {args.party}-party conferences beside bridged calls (the floor)"
    )
    print("   legs  conference us/leg  bridged us/leg  mixing us/leg  % core/participant  ratio")
    for legs in (100, 300):
        legs -= legs % (2 * args.party)
        bridged = _clock_only("bridge", legs, 2, 500)
        conference = _clock_only("mix", legs, args.party, 500)
        print(
            f" {legs:6d}  {conference:17.2f}  {bridged:14.2f}  {conference - bridged:13.2f}"
            f"  {(conference - bridged) / 200:18.4f}%  {ratio(bridged, conference):>5}",
            flush=True,
        )
    header = "  units   legs    CPU%  per unit  per leg   busy%  rx/leg/s  late p50/p99/max ms  skipped  load"
    with tempfile.TemporaryDirectory(prefix="conference-bench-") as scratch:
        workdir = Path(scratch)
        recorded = ", recorded (room + one file per member)" if args.record else ""
        print(f"\n2. {args.party}-party conferences on the clock{recorded}; units = conferences")
        print(header)
        mixes = _ramp("mix", [int(value) for value in args.mixes.split(",") if value], args.party, args.seconds,
                      args.record, args.realtime, workdir)  # fmt: skip
        print(f"\n3. floor: 2-party bridged calls{', each recorded (MONO)' if args.record else ''}; units = calls")
        print(header)
        bridges = _ramp("bridge", [int(value) for value in args.bridges.split(",") if value], 2, args.seconds,
                        args.record, args.realtime, workdir)  # fmt: skip
    mix, bridge = _carried(mixes), _carried(bridges)
    print(
        f"\nsummary: {args.party}-party conferences carried on time (p99 lateness <= {LATENESS_LIMIT_MS:.0f} ms):"
        f" {mix.units if mix.on_time else 0} (by CPU at that level {100 / mix.per_unit:.0f});"
        f" bridged calls (floor): {bridge.units if bridge.on_time else 0} (by CPU {100 / bridge.per_unit:.0f})."
        f" CPU per participant at those levels: conference {mix.per_leg:.3f} %, bridged call {bridge.per_leg:.3f} %"
        f" (floor/figure {ratio(bridge.per_leg, mix.per_leg)}); the mixer's share {mix.per_leg - bridge.per_leg:+.3f} %"
        f" per participant. {load_average()}"
    )


if __name__ == "__main__":
    main()
