"""Recording pipeline figures beside their floors: loopback fetch throughput, normalization speed and memory.

    .venv/bin/python bench/recordings.py [--fetch-mb 64] [--minutes 2] [--full]

Prints fetch throughput (MB/s through fetch_http, with the SSRF backend, hashing, fsync and rename; best of 3)
beside its floor, the curl CLI fetching the same file from the same server to local disk (best of 3); and for a
stereo WAV and MP3 of --minutes each: normalization speed in seconds of audio per second of wall time and per CPU
second (this process and its ffmpeg child) beside its floor, the ffmpeg CLI doing the same transform (callplane's
own filter and encoder arguments, without the level metering) on the same file; the ratios (callplane / floor,
1.00 = the floor's speed) and the process's peak RSS. ``--full``: 256 MB and 5-minute inputs.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from benchlib import children_cpu_seconds, ffmpeg_cli_floor, load_average, own_cpu_seconds, peak_rss_mb, ratio

from callplane.core.recordings.audio import normalize_recording
from callplane.core.recordings.fetch import FetchLimits, fetch_http
from callplane.core.recordings.targets import TargetPolicy


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def make_audio(root: Path, minutes: int) -> tuple[Path, Path]:
    seconds = str(minutes * 60)
    wav = root / "call.wav"
    # two different voices' worth of spectrum: a tone plus noise per channel, 44.1 kHz 16-bit like most exports
    subprocess.run(
        ["sox", "-n", "-r", "44100", "-c", "2", "-b", "16", str(wav), "synth", seconds, "sine", "440", "pinknoise"],
        check=True,
    )
    mp3 = root / "call.mp3"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-b:a", "128k", str(mp3)], check=True
    )
    return wav, mp3


def bench_fetch(root: Path, megabytes: int) -> None:
    served = root / "served"
    served.mkdir()
    blob = served / "big.wav"
    with open(blob, "wb") as handle:
        chunk = bytes(range(256)) * 4096
        for _ in range(megabytes):
            handle.write(chunk)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/big.wav"
    policy = TargetPolicy.from_config(["127.0.0.1/32"])
    limits = FetchLimits(max_bytes=2 * megabytes * 1024 * 1024)
    try:
        walls = []
        for attempt in range(3):
            dest = root / f"fetched-{attempt}.wav"
            started = time.perf_counter()
            result = asyncio.run(fetch_http(url, dest=dest, policy=policy, limits=limits))
            walls.append(time.perf_counter() - started)
            dest.unlink()
        floor_walls = []
        for attempt in range(3):
            dest = root / f"curl-{attempt}.wav"
            started = time.perf_counter()
            subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), url], check=True)
            floor_walls.append(time.perf_counter() - started)
            dest.unlink()
        size = result.size_bytes / 1e6
        rate, floor_rate = size / min(walls), size / min(floor_walls)
        print(
            f"fetch {size:.1f} MB over loopback: {rate:7.1f} MB/s (best of 3); floor, curl: {floor_rate:7.1f} MB/s; "
            f"ratio {ratio(rate, floor_rate)}; {load_average()}"
        )
    finally:
        httpd.shutdown()
        httpd.server_close()


def timed_cpu(work: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process and the children it waited for) of ``work``."""
    cpu_before, started = own_cpu_seconds() + children_cpu_seconds(), time.perf_counter()
    work()
    return time.perf_counter() - started, own_cpu_seconds() + children_cpu_seconds() - cpu_before


def bench_normalize(source: Path, root: Path, label: str) -> None:
    for swap in (False, True):
        out = root / f"out-{label}.mp3"
        report = normalize_recording(source, out, swap_channels=swap)  # warm-up: page cache, imports
        audio_s = report.duration_ms / 1000
        wall, cpu = timed_cpu(partial(normalize_recording, source, out, swap_channels=swap))
        floor = ffmpeg_cli_floor(source, root / f"cli-{label}.mp3", swap=swap)
        floor_wall, floor_cpu = timed_cpu(partial(subprocess.run, floor, check=True))
        print(
            f"normalize {label:4s} swap={swap!s:5s} {audio_s:4.0f} s audio: {audio_s / wall:4.0f}x realtime, "
            f"{audio_s / cpu:4.0f} per CPU s; floor, ffmpeg CLI: {audio_s / floor_wall:4.0f}x, "
            f"{audio_s / floor_cpu:4.0f} per CPU s; ratio wall {ratio(floor_wall, wall)}, CPU {ratio(floor_cpu, cpu)}; "
            f"out {report.size_bytes / 1e6:.1f} MB, peak RSS {peak_rss_mb():.0f} MB; {load_average()}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fetch-mb", type=int, default=64)
    parser.add_argument("--minutes", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="a 256 MB fetch and 5-minute inputs")
    args = parser.parse_args()
    if args.full:
        args.fetch_mb, args.minutes = 256, 5
    print(load_average())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bench_fetch(root, args.fetch_mb)
        wav, mp3 = make_audio(root, args.minutes)
        print(
            f"inputs: {wav.stat().st_size / 1e6:.1f} MB WAV 44.1 kHz stereo, {mp3.stat().st_size / 1e6:.1f} MB MP3 128k"
        )
        bench_normalize(wav, root, "wav")
        bench_normalize(mp3, root, "mp3")


if __name__ == "__main__":
    main()
