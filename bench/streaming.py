"""Media streaming: how many concurrent 48 kHz media streams one core carries with no missed frame, beside the same
calls without streaming (the floor), in one run.

The engine side runs in this process, pinned to CPU 0: N call legs as MediaChannels in pairs on loopback through
the one shared clock, each playing a looped prompt to the other (as bench/media.py --synthetic). In the streamed
run every leg also has a `MediaStream` tap (media/streaming.py: 8 -> 48 kHz resampling, the JSON preamble, 1920-byte
frames over a WebSocket) to a counting WebSocket server in a child process pinned to CPU 1 (this script with
--serve), so the server's work is not ours. The floor is the same legs for the same time without streams.

Per level: CPU % of core 0 (this process), tick busy %, tick lateness p99, skipped ticks, and the frames: every
tick of every leg is one frame to send; "missed" = frames the streams dropped (backpressure or not connected once
connected) + frames the server did not receive by the end, over the measured window. A level passes when nothing
was missed and no tick was skipped. The goal is >= 100 streams on one core. Beside it, the CPU microseconds one leg
costs per tick run (with and without its stream) and what a whole core would carry at that cost: on a shared
machine the process may get only part of CPU 0, so the pass/fail verdict then says more about the machine than
about the code, while the cost per tick does not.

The live-transcription latency figure belongs to helper "speech" (bench/live_transcription.py): the marked section
`live_transcription_section()` below calls its hook when that module provides one.

Run: .venv/bin/python bench/streaming.py [--levels 50,100,150] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from benchlib import free_port, load_average, own_cpu_seconds, ratio

SERVE = "--serve" in sys.argv
os.sched_setaffinity(0, {1} if SERVE else {0})  # the server on CPU 1, the engine on CPU 0

from callplane.media.audio import PcmPlayer  # noqa: E402 - after pinning
from callplane.media.channel import MediaChannel  # noqa: E402
from callplane.media.clock import MediaClock  # noqa: E402
from callplane.media.g711 import PayloadType  # noqa: E402
from callplane.media.sdp import Negotiated  # noqa: E402
from callplane.media.streaming import MediaStream, StreamEnd, StreamTarget  # noqa: E402

FRAME_BYTES_48K = 1920


# ---- the counting server (child process, CPU 1) --------------------------------------------------------------


async def _serve(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    received: dict[str, int] = {}

    async def handle(connection: ServerConnection) -> None:
        preamble = json.loads(await connection.recv())
        call_id = str(preamble["callId"])
        received[call_id] = 0
        async for message in connection:
            if isinstance(message, bytes):
                received[call_id] += len(message) // FRAME_BYTES_48K

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with serve(handle, "127.0.0.1", port, compression=None, max_queue=64):
        print("ready", flush=True)
        await stop.wait()
    print(json.dumps(received), flush=True)


class CountingServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def finish(self) -> dict[str, int]:
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=60)
        counts: dict[str, int] = json.loads(output.strip().splitlines()[-1])
        return counts


# ---- the engine side (this process, CPU 0) -------------------------------------------------------------------


async def run_level(legs: int, seconds: float, *, streamed: bool) -> dict[str, Any]:
    clock = MediaClock(keep_lateness_samples=100_000)
    clock.start()
    t = np.arange(8000 * 4) / 8000.0
    prompt = (6000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    channels: list[MediaChannel] = []
    for index in range(legs):
        channel = MediaChannel(clock=clock, on_digit=lambda digit: None, label=str(index))
        await channel.open("127.0.0.1", (30000, 60000))
        channels.append(channel)
    for first, second in zip(channels[0::2], channels[1::2], strict=True):
        for me, other in ((first, second), (second, first)):
            me.configure(Negotiated(PayloadType.PCMU, 101, "127.0.0.1", other.local_port, "sendrecv"))
            me.play(PcmPlayer(prompt, loop_count=1000))
    server = CountingServer() if streamed else None
    streams: list[MediaStream] = []
    tasks: list[asyncio.Task[StreamEnd]] = []
    if server is not None:
        for channel in channels:
            stream = MediaStream(StreamTarget(f"ws://127.0.0.1:{server.port}/", call_id=channel.label))
            channel.add_tap(stream)
            streams.append(stream)
            tasks.append(asyncio.create_task(stream.run()))
        while not all(stream.connected for stream in streams):
            if any(task.done() for task in tasks):
                raise RuntimeError("a stream could not connect")
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # warm-up
    clock.stats.lateness_ms.clear()
    cpu_before, wall_before, busy_before = own_cpu_seconds(), time.monotonic(), clock.stats.busy_seconds
    ticks_before, skipped_before = clock.stats.ticks, clock.stats.skipped_ticks
    frames_in_before = sum(stream.stats.frames_in for stream in streams)
    dropped_before = sum(s.stats.dropped_backpressure + s.stats.dropped_not_connected for s in streams)
    await asyncio.sleep(seconds)
    wall = time.monotonic() - wall_before
    cpu_seconds = own_cpu_seconds() - cpu_before
    cpu = 100 * cpu_seconds / wall
    busy = 100 * (clock.stats.busy_seconds - busy_before) / wall
    ticks = clock.stats.ticks - ticks_before
    skipped = clock.stats.skipped_ticks - skipped_before
    frames_in = sum(stream.stats.frames_in for stream in streams) - frames_in_before
    dropped = sum(s.stats.dropped_backpressure + s.stats.dropped_not_connected for s in streams) - dropped_before
    lateness = clock.stats.lateness_percentiles()
    for channel in channels:  # the taps stop first: what was queued is sent, then the connections close
        for stream in streams:
            channel.remove_tap(stream)
    await asyncio.sleep(0.5)
    for stream in streams:
        stream.stop()
    await asyncio.gather(*tasks)
    sent = sum(stream.stats.frames_sent for stream in streams)
    tapped = sum(stream.stats.frames_in for stream in streams)
    all_dropped = sum(s.stats.dropped_backpressure + s.stats.dropped_not_connected for s in streams)
    received = sum(server.finish().values()) if server is not None else 0
    for channel in channels:
        channel.close()
    await clock.stop()
    # frames the server should have had: every tapped frame that was not dropped (before connecting included)
    unreceived = max(0, (tapped - all_dropped) - received) if streamed else 0
    return {
        "legs": legs,
        "streamed": streamed,
        "cpu": cpu,
        # CPU time per leg per tick actually run: what one leg costs, whatever share of the core we were given
        "cpu_us_per_leg_tick": 1e6 * cpu_seconds / max(1, ticks) / legs,
        "busy": busy,
        "p99": lateness["p99"],
        "skipped": skipped,
        "ticks_per_s": ticks / wall,
        "frames_in": frames_in,
        "dropped": dropped,
        "unreceived": unreceived,
        "sent": sent,
        "received": received,
    }


# ---- live transcription latency: helper "speech" fills this ------------------------------------------------


def live_transcription_section() -> None:
    """>>> LIVE TRANSCRIPTION LATENCY (owned by helper "speech", bench/live_transcription.py) <<<

    If bench/live_transcription.py provides `streaming_section()`, it is called here so that the media-streaming and
    live-transcription figures come out of one run; otherwise this prints how to get that figure on its own."""
    try:
        import live_transcription
    except ImportError:
        print("\nlive transcription: bench/live_transcription.py not present")
        return
    hook = getattr(live_transcription, "streaming_section", None)
    if hook is None:
        print("\nlive transcription latency: run .venv/bin/python bench/live_transcription.py (its own figure)")
        return
    hook()


# ---- the report ----------------------------------------------------------------------------------------------


def _row(run: dict[str, Any]) -> str:
    missed = run["dropped"] + run["unreceived"]
    verdict = "ok" if missed == 0 and run["skipped"] == 0 else "MISSED"
    return (
        f"{run['legs']:>5} {'stream' if run['streamed'] else 'floor':>7} {run['cpu']:6.1f} {run['busy']:6.1f} "
        f"{run['p99']:7.2f} {run['skipped']:>7} {run['ticks_per_s']:7.2f} {run['frames_in']:>9} "
        f"{run['dropped']:>8} {run['unreceived']:>10} {verdict:>7}"
    )


async def _main(levels: list[int], seconds: float) -> None:
    print(
        f"media streaming bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {load_average()}; "
        "engine on CPU 0, WebSocket server on CPU 1, 48 kHz streams"
    )
    print(" legs     run   cpu%  busy%  p99 ms skipped  tick/s frames_in  dropped unreceived verdict  floor/stream")
    best = 0
    for legs in levels:
        floor = await run_level(legs, seconds, streamed=False)
        print(_row(floor))
        streamed = await run_level(legs, seconds, streamed=True)
        print(_row(streamed) + f"  {ratio(floor['cpu'], streamed['cpu']):>12}")
        floor_us = floor["cpu_us_per_leg_tick"]
        stream_us = streamed["cpu_us_per_leg_tick"]
        print(
            f"      CPU per leg per 20 ms tick: {floor_us:.0f} us without a stream, {stream_us:.0f} us streamed "
            f"(+{stream_us - floor_us:.0f} us per streamed frame): one whole core carries about "
            f"{20_000 / stream_us:.0f} streamed legs ({20_000 / floor_us:.0f} without streams) by CPU"
        )
        if streamed["dropped"] + streamed["unreceived"] == 0 and streamed["skipped"] == 0:
            best = max(best, legs)
        print(f"      {load_average()}", flush=True)
    print(f"\nstreams carried with no missed frame on one core: {best} (goal >= 100)")
    live_transcription_section()


def main() -> None:
    if SERVE:
        asyncio.run(_serve(int(sys.argv[sys.argv.index("--serve") + 1])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="50,100,150", help="concurrent streamed legs (even numbers)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-streaming-"):
        asyncio.run(_main([int(value) for value in args.levels.split(",")], args.seconds))


if __name__ == "__main__":
    main()
