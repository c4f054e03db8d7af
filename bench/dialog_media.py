"""What a dialog's media costs on the shared 20 ms clock: bridged pairs of RTP channels on loopback (no SIP),
first bridged only, then with a prompt both parties hear (`SharedPrompt`, mixed into each leg's sent audio),
then also recorded as a dialog (composed: the parent's MONO mix; per call: a HEARD file on each leg).

Each pair's channels send to each other over loopback, so every leg encodes, sends, receives and decodes
real RTP each tick; the prompt is a looped 4 s tone. Figures: the process's CPU as a percentage of one core,
the share of wall time spent inside clock ticks, tick lateness and skipped ticks, per mode and level.

The floor, in the same run right after each row: `bench/rtp_floor.py`, a minimal numpy mixer on the same clock
doing the same per-leg work (decode, forward to the peer, mix the prompt, encode, send; the same recordings), all
legs at once. Ratio = floor CPU / callplane CPU (1.00 = callplane costs no more than the floor).

Run: .venv/bin/python bench/dialog_media.py [--dialogs 100] [--seconds 4] [--full]   (--full: 100,200,300 for 6 s)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import load_average, own_cpu_seconds, ratio
from rtp_floor import FloorWork, measure_floor

from callplane.media.audio import PcmPlayer, RecordingChannels, WavRecorder
from callplane.media.channel import MediaChannel, SharedPrompt
from callplane.media.clock import MediaClock
from callplane.media.g711 import PayloadType
from callplane.media.sdp import Negotiated

MODES = ("bridge", "bridge+prompt", "bridge+prompt+composed", "bridge+prompt+per-call")
FLOOR_WORK = {
    "bridge": FloorWork(bridge=True),
    "bridge+prompt": FloorWork(bridge=True, play=True),
    "bridge+prompt+composed": FloorWork(bridge=True, play=True, record="composed"),
    "bridge+prompt+per-call": FloorWork(bridge=True, play=True, record="heard"),
}


async def _level(dialogs: int, mode: str, seconds: float, workdir: Path) -> dict[str, float]:
    clock = MediaClock(keep_lateness_samples=100_000)
    clock.start()
    t = np.arange(8000 * 4) / 8000.0
    tone = (6000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    channels: list[MediaChannel] = []
    recorders: list[WavRecorder] = []
    prompts: list[SharedPrompt] = []
    for index in range(2 * dialogs):
        channel = MediaChannel(clock=clock, on_digit=lambda digit: None, label=str(index))
        await channel.open("127.0.0.1", (30000, 60000))
        channels.append(channel)
    loop = asyncio.get_running_loop()
    for parent, child in zip(channels[0::2], channels[1::2], strict=True):
        for me, other in ((parent, child), (child, parent)):
            me.configure(Negotiated(PayloadType.PCMU, 101, "127.0.0.1", other.local_port, "sendrecv"))
        parent.bridge_peer, child.bridge_peer = child, parent
        if "prompt" in mode:
            prompt = SharedPrompt(PcmPlayer(tone, loop_count=1000), loop.create_future())
            clock.add(prompt)
            parent.add_shared(prompt)
            child.add_shared(prompt)
            prompts.append(prompt)
        if mode.endswith("composed"):
            recorder = WavRecorder(workdir / f"c{parent.label}.wav", RecordingChannels.MONO)
            parent.add_sink(recorder)
            recorders.append(recorder)
        if mode.endswith("per-call"):
            for leg in (parent, child):
                recorder = WavRecorder(workdir / f"h{leg.label}.wav", RecordingChannels.HEARD)
                leg.add_sink(recorder)
                recorders.append(recorder)
    await asyncio.sleep(1.0)
    clock.stats.lateness_ms.clear()
    cpu_before, wall_before, busy_before = own_cpu_seconds(), time.monotonic(), clock.stats.busy_seconds
    skipped_before = clock.stats.skipped_ticks
    await asyncio.sleep(seconds)
    wall = time.monotonic() - wall_before
    result = {
        "cpu": 100 * (own_cpu_seconds() - cpu_before) / wall,
        "busy": 100 * (clock.stats.busy_seconds - busy_before) / wall,
        "skipped": float(clock.stats.skipped_ticks - skipped_before),
        **clock.stats.lateness_percentiles(),
    }
    for prompt in prompts:
        prompt.finish(completed=False)
    for channel in channels:
        channel.close()
    for recorder in recorders:
        recorder.close()
    await clock.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogs", default="100", help="bridged pairs per level")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per level and mode")
    parser.add_argument("--full", action="store_true", help="100, 200 and 300 dialogs for 6 s each")
    args = parser.parse_args()
    if args.full:
        args.dialogs, args.seconds = "100,200,300", 6.0
    print(f"{load_average()} before")
    print(
        "| dialogs | mode | CPU (% of one core) | per dialog | tick busy | lateness p50 / p99 / max (ms) | skipped "
        "| floor CPU | floor per dialog | floor lateness p99 (ms) | ratio (CPU) | load |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        for dialogs in (int(value) for value in args.dialogs.split(",") if value):
            for mode in MODES:
                workdir = Path(scratch) / f"{dialogs}-{mode}"
                workdir.mkdir()
                row = asyncio.run(_level(dialogs, mode, args.seconds, workdir))
                floor = asyncio.run(measure_floor(2 * dialogs, args.seconds, FLOOR_WORK[mode], workdir))
                print(
                    f"| {dialogs} | {mode} | {row['cpu']:.1f} % | {row['cpu'] / dialogs:.3f} % | {row['busy']:.1f} % "
                    f"| {row['p50']:.2f} / {row['p99']:.2f} / {row['max']:.1f} | {row['skipped']:.0f} "
                    f"| {floor['cpu']:.1f} % | {floor['cpu'] / dialogs:.3f} % | {floor['p99']:.2f} "
                    f"| {ratio(floor['cpu'], row['cpu'])} | {load_average()[5:]} |",
                    flush=True,
                )
    print(f"{load_average()} after")


if __name__ == "__main__":
    main()
