"""How many concurrent calls one core of the media engine sustains.

Two measurements, both printed as tables:

1. `sipp` load (default): the engine process is pinned to CPU 0 and sipp to CPU 1. sipp places calls at a
   target concurrency; every call is answered, hears a looped prompt, is recorded (MONO WAV) and has a DTMF
   collection pending, while sipp streams a 20 ms PCMA tone for the whole call and then hangs up. We sample
   the engine's CPU (all threads: sippy reactor, sippy UDP workers, asyncio) while concurrency is at target.
2. `--synthetic`: no SIP at all. Pairs of MediaChannels stream to each other over loopback through the one
   shared clock (decode, jitter buffer, player, encode, send, recorder), to find the ceiling of the RTP path.

The floors, in the same run right after each row: for (1), sipp calling sipp with the same caller scenario, the
callee on CPU 0 answering and echoing every RTP packet (`bench/sipp_floor.py`, as bench/voice.py's floor); its CPU
per concurrent call beside the engine's. For (2), `bench/rtp_floor.py`: a minimal numpy mixer on the same clock
doing the same per-stream work (decode, play the prompt, encode, send, record MONO), all streams at once. Ratio =
floor CPU / callplane CPU per call or stream (1.00 = callplane costs no more than the floor).

Run: .venv/bin/python bench/media.py [--levels 50,100] [--hold 5] [--synthetic 200] [--full]
     (--full: --levels 50,100,200,300 --hold 8 --synthetic 200,400,800)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from benchlib import free_udp_port, load_average, own_cpu_seconds, process_cpu_seconds, ratio
from rtp_floor import FloorWork, measure_floor
from sipp_floor import FLOOR_CALLEE, caller_scenario, sipp_counter, sipp_current_calls, tone_pcap

os.sched_setaffinity(0, {0})  # before sippy starts any thread: every engine thread inherits CPU 0

from callplane.media.audio import PcmPlayer, RecordingChannels, WavRecorder  # noqa: E402 - after pinning
from callplane.media.channel import MediaChannel  # noqa: E402
from callplane.media.clock import MediaClock  # noqa: E402
from callplane.media.engine import CallEnded, EngineConfig, IncomingCall, SpeechSource  # noqa: E402
from callplane.media.g711 import PayloadType  # noqa: E402
from callplane.media.sdp import Negotiated  # noqa: E402

LOAD_SCENARIO = caller_scenario(
    '  <nop><action><exec play_pcap_audio="PCAP"/></action></nop>\n  <pause milliseconds="HOLD_MS"/>\n'
)


def _sipp_caller(scenario: Path, target: int, hold_s: float, sip_port: int) -> list[str]:
    """sipp on CPU 1 holding `target` calls of the load scenario, 2 x target in all."""
    return [
        "taskset", "-c", "1", "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mp", str(free_udp_port() & ~1), f"127.0.0.1:{sip_port}", "-s", "bench",
        "-l", str(target), "-r", f"{max(1.0, target / hold_s):.2f}", "-m", str(target * 2), "-nostdin",
        "-timeout", f"{int(hold_s * 8 + 60)}s",
    ]  # fmt: skip


async def _sipp_floor_level(target: int, hold_s: float, workdir: Path) -> tuple[float, int, int, int]:
    """The same caller against sipp echoing every packet (CPU 0): median CPU % per call at target, peak, ok, failed."""
    callee, stat_file, sip_port = workdir / "floor-callee.xml", workdir / "callee-stat.csv", free_udp_port()
    callee.write_text(FLOOR_CALLEE)
    answering = await asyncio.create_subprocess_exec(
        "taskset", "-c", "0", "sipp", "-sf", str(callee), "-i", "127.0.0.1", "-p", str(sip_port),
        "-mp", str(free_udp_port() & ~1), "-rtp_echo", "-m", str(target * 2), "-nostdin",
        "-trace_stat", "-stf", str(stat_file), "-fd", "1", "-timeout", f"{int(hold_s * 8 + 60)}s",
        cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(0.5)
    calling = await asyncio.create_subprocess_exec(
        *_sipp_caller(workdir / "load.xml", target, hold_s, sip_port),
        cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    samples: list[float] = []
    peak = 0
    cpu_before, wall_before = process_cpu_seconds(answering.pid), time.monotonic()
    while calling.returncode is None and answering.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(calling.wait(), 1.0)
        with contextlib.suppress(OSError):  # the callee may have ended with the last call
            cpu_now, wall_now = process_cpu_seconds(answering.pid), time.monotonic()
            concurrency = sipp_current_calls(stat_file)
            peak = max(peak, concurrency)
            if concurrency >= 0.9 * target:
                samples.append(100 * (cpu_now - cpu_before) / (wall_now - wall_before) / concurrency)
            cpu_before, wall_before = cpu_now, wall_now
    output = (await calling.stdout.read()).decode(errors="replace") if calling.stdout else ""
    await calling.wait()
    try:
        await asyncio.wait_for(answering.wait(), 10)
    except TimeoutError:
        answering.terminate()
        await answering.wait()
    per_call = statistics.median(samples) if samples else float("nan")
    return per_call, peak, sipp_counter(output, "Successful call"), sipp_counter(output, "Failed call")


@dataclass
class LevelResult:
    target: int
    peak: int
    answered: int
    sipp_ok: int
    sipp_failed: int
    cpu_percent: float
    tick_busy_percent: float
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    skipped_ticks: int
    rss_mb: float


async def _sipp_level(target: int, hold_s: float, workdir: Path) -> LevelResult:
    from callplane.media.sip import SippyCallEngine  # imported after pinning; sippy starts threads

    low = 20000
    engine = SippyCallEngine(
        EngineConfig(sip_port=free_udp_port(), rtp_port_range=(low, low + 8000), cache_dir=workdir / "cache")
    )
    await engine.start()
    engine.clock.stats.lateness_ms.clear()
    events = engine.subscribe()
    prompt = SpeechSource("Thank you for calling. Please hold while we connect you.")
    await engine.load(prompt)
    answered = 0
    live: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def handle(call_id: str) -> None:
        try:
            await engine.answer(call_id)
            await engine.start_recording(call_id, workdir / f"{call_id}.wav", RecordingChannels.MONO)
            await engine.play(call_id, prompt, loop_count=1000)
            await engine.collect_dtmf(call_id, max_length=4, terminator="#", first_digit_timeout_s=3600)
        except Exception:  # a call that ended under us is normal in a load test
            pass

    async def dispatcher() -> None:
        nonlocal answered
        while True:
            event = await events.get()
            if isinstance(event, IncomingCall):
                answered += 1
                live.add(event.call_id)
                task = asyncio.create_task(handle(event.call_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif isinstance(event, CallEnded):
                live.discard(event.call_id)
                path = workdir / f"{event.call_id}.wav"
                path.unlink(missing_ok=True)

    pcap = workdir / "tone.pcap"
    tone_pcap(pcap, hold_s)
    scenario = workdir / "load.xml"
    scenario.write_text(LOAD_SCENARIO.replace("PCAP", str(pcap)).replace("HOLD_MS", str(int(hold_s * 1000))))
    sipp = await asyncio.create_subprocess_exec(
        *_sipp_caller(scenario, target, hold_s, engine.config.sip_port),
        cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    runner = asyncio.create_task(dispatcher())
    samples: list[float] = []
    busy_samples: list[float] = []
    peak = 0
    steady_skipped = 0  # ticks skipped while at target (the ramp's bursts are not the steady state)
    skipped_before = engine.clock.stats.skipped_ticks
    cpu_before, wall_before, busy_before = own_cpu_seconds(), time.monotonic(), engine.clock.stats.busy_seconds
    collecting_lateness = False
    while sipp.returncode is None:
        await asyncio.sleep(1.0)
        cpu_now, wall_now, busy_now = own_cpu_seconds(), time.monotonic(), engine.clock.stats.busy_seconds
        concurrency = engine.clock.channel_count
        peak = max(peak, concurrency)
        skipped_now = engine.clock.stats.skipped_ticks
        if concurrency >= 0.9 * target:
            steady_skipped += skipped_now - skipped_before
            samples.append(100 * (cpu_now - cpu_before) / (wall_now - wall_before))
            busy_samples.append(100 * (busy_now - busy_before) / (wall_now - wall_before))
            if not collecting_lateness:
                engine.clock._keep_lateness = 1_000_000  # only steady-state ticks count
                collecting_lateness = True
        elif collecting_lateness:
            engine.clock._keep_lateness = 0
        cpu_before, wall_before, busy_before, skipped_before = cpu_now, wall_now, busy_now, skipped_now
        try:
            await asyncio.wait_for(sipp.wait(), 0.001)
        except TimeoutError:
            pass
    output = (await sipp.stdout.read()).decode(errors="replace") if sipp.stdout else ""
    ok = sipp_counter(output, "Successful call")
    failed = sipp_counter(output, "Failed call")
    lateness = engine.clock.stats.lateness_percentiles()
    skipped = steady_skipped
    runner.cancel()
    for task in list(tasks):
        task.cancel()
    await engine.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return LevelResult(
        target, peak, answered, ok, failed,
        statistics.median(samples) if samples else float("nan"),
        statistics.median(busy_samples) if busy_samples else float("nan"),
        lateness["p50"], lateness["p99"], lateness["max"], skipped, rss_mb,
    )  # fmt: skip


async def _synthetic_level(streams: int, seconds: float, workdir: Path) -> dict[str, float]:
    """Pairs of channels on loopback, each playing to the other and recording both directions."""
    clock = MediaClock(keep_lateness_samples=100_000)
    clock.start()
    t = np.arange(8000 * 4) / 8000.0
    prompt = (6000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    channels: list[MediaChannel] = []
    recorders: list[WavRecorder] = []
    for index in range(streams):
        channel = MediaChannel(clock=clock, on_digit=lambda digit: None, label=str(index))
        await channel.open("127.0.0.1", (30000, 60000))
        channels.append(channel)
    for first, second in zip(channels[0::2], channels[1::2], strict=True):
        for me, other in ((first, second), (second, first)):
            me.configure(Negotiated(PayloadType.PCMU, 101, "127.0.0.1", other.local_port, "sendrecv"))
            me.play(PcmPlayer(prompt, loop_count=1000))
            recorder = WavRecorder(workdir / f"s{me.label}.wav", RecordingChannels.MONO)
            me.add_sink(recorder)
            recorders.append(recorder)
    await asyncio.sleep(1.0)
    clock.stats.lateness_ms.clear()
    cpu_before, wall_before, busy_before = own_cpu_seconds(), time.monotonic(), clock.stats.busy_seconds
    ticks_before, skipped_before = clock.stats.ticks, clock.stats.skipped_ticks
    await asyncio.sleep(seconds)
    cpu = 100 * (own_cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
    busy = 100 * (clock.stats.busy_seconds - busy_before) / (time.monotonic() - wall_before)
    ticks = clock.stats.ticks - ticks_before
    received = sum(channel.stats.packets_received for channel in channels)
    sent = sum(channel.stats.packets_sent for channel in channels)
    lateness = clock.stats.lateness_percentiles()
    for channel in channels:
        channel.close()
    for recorder in recorders:
        recorder.close()
    await clock.stop()
    return {
        "streams": streams, "cpu": cpu, "busy": busy, "ticks_per_s": ticks / seconds,
        "rx": received, "tx": sent, "p50": lateness["p50"], "p99": lateness["p99"], "max": lateness["max"],
        "skipped": clock.stats.skipped_ticks - skipped_before,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="50,100", help="target concurrent calls for the sipp runs")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds each sipp call lasts")
    parser.add_argument("--synthetic", default="200", help="RTP streams for the no-SIP runs, e.g. 200,400,800")
    parser.add_argument("--synthetic-seconds", type=float, default=4.0)
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() after imports and a higher gen-0 threshold (fewer pauses)"
    )
    parser.add_argument("--full", action="store_true", help="levels 50-300 of 8 s calls; 200, 400 and 800 streams")
    args = parser.parse_args()
    if args.full:
        args.levels, args.hold, args.synthetic, args.synthetic_seconds = "50,100,200,300", 8.0, "200,400,800", 6.0
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
    if shutil.which("sipp") is None and args.levels:
        sys.exit("sipp (Debian sip-tester) is needed for the load runs")
    print(
        f"engine pinned to CPU 0; sipp pinned to CPU 1; {os.cpu_count()} CPUs; Python {sys.version.split()[0]};"
        f" gc thresholds {gc.get_threshold()}{' after gc.freeze()' if args.gc_freeze else ''}"
    )
    with tempfile.TemporaryDirectory(prefix="media-bench-") as scratch:
        workdir = Path(scratch)
        if args.levels:
            print("\nsipp load: answer + looped TTS prompt + MONO recording + pending DTMF collection per call")
            print(" target  peak  answered  sipp ok/failed  engine CPU%  per call  tick busy%  "
                  "late p50/p99/max ms  skipped  RSS MB | floor per call  ok/failed  ratio  load")  # fmt: skip
            for level in (int(value) for value in args.levels.split(",") if value):
                level_dir = workdir / f"level{level}"
                level_dir.mkdir()
                result = asyncio.run(_sipp_level(level, args.hold, level_dir))
                per_call = result.cpu_percent / max(result.peak, 1)
                floor, _, floor_ok, floor_failed = asyncio.run(_sipp_floor_level(level, args.hold, level_dir))
                print(
                    f" {result.target:6d}  {result.peak:4d}  {result.answered:8d}"
                    f"  {result.sipp_ok:6d}/{result.sipp_failed:<7d}"
                    f"  {result.cpu_percent:10.1f}  {per_call:7.2f}%  {result.tick_busy_percent:9.1f}"
                    f"  {result.lateness_p50_ms:6.2f}/{result.lateness_p99_ms:5.2f}/{result.lateness_max_ms:6.1f}"
                    f"  {result.skipped_ticks:7d}  {result.rss_mb:6.0f}"
                    f" | {floor:13.3f}%  {floor_ok:4d}/{floor_failed:<4d}"
                    f"  {ratio(floor, per_call):>5}  {load_average()[5:]}",
                    flush=True,
                )
        if args.synthetic:
            print("\nsynthetic (no SIP): RTP stream pairs on loopback through the shared clock, player + recorder each")
            print(" streams  CPU%   per stream  tick busy%  ticks/s  rx pkts  tx pkts  late p50/p99/max ms  skipped"
                  " | floor CPU%  per stream  late p99 ms  ratio  load")  # fmt: skip
            for streams in (int(value) for value in args.synthetic.split(",") if value):
                level_dir = workdir / f"synthetic{streams}"
                level_dir.mkdir()
                row = asyncio.run(_synthetic_level(streams, args.synthetic_seconds, level_dir))
                work = FloorWork(play=True, record="mixed")
                floor_row = asyncio.run(measure_floor(streams, args.synthetic_seconds, work, level_dir))
                print(
                    f" {streams:7d}  {row['cpu']:5.1f}  {row['cpu'] / streams:9.3f}%  {row['busy']:9.1f}"
                    f"  {row['ticks_per_s']:7.1f}  {row['rx']:7.0f}  {row['tx']:7.0f}"
                    f"  {row['p50']:6.2f}/{row['p99']:5.2f}/{row['max']:6.1f}  {row['skipped']:7.0f}"
                    f" | {floor_row['cpu']:9.1f}  {floor_row['cpu'] / streams:9.3f}%  {floor_row['p99']:11.2f}"
                    f"  {ratio(floor_row['cpu'], row['cpu']):>5}  {load_average()[5:]}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
