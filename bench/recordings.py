"""Recording pipeline figures: loopback fetch throughput, normalization speed and memory.

    .venv/bin/python bench/recordings.py [--fetch-mb 256] [--minutes 5]

Prints fetch throughput (MB/s through fetch_http, with the SSRF backend, hashing, fsync and rename), and
for a stereo WAV and MP3 of --minutes each: normalization speed in seconds of audio per second of wall
time, the plain ffmpeg CLI doing the same transcode for comparison, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from callplane.core.recordings.audio import normalize_recording
from callplane.core.recordings.fetch import FetchLimits, fetch_http
from callplane.core.recordings.targets import TargetPolicy


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        for attempt in range(3):
            dest = root / f"fetched-{attempt}.wav"
            started = time.perf_counter()
            result = asyncio.run(fetch_http(url, dest=dest, policy=policy, limits=limits))
            wall = time.perf_counter() - started
            megabytes_done = result.size_bytes / 1e6
            print(f"fetch  {megabytes_done:7.1f} MB over loopback: {wall:6.2f} s  {megabytes_done / wall:7.1f} MB/s")
            dest.unlink()
    finally:
        httpd.shutdown()
        httpd.server_close()


def bench_normalize(source: Path, root: Path, label: str) -> None:
    for swap in (False, True):
        started = time.perf_counter()
        report = normalize_recording(source, root / f"out-{label}.mp3", swap_channels=swap)
        wall = time.perf_counter() - started
        audio_s = report.duration_ms / 1000
        print(
            f"normalize {label:4s} swap={swap!s:5s} {audio_s:6.0f} s audio in {wall:5.2f} s: "
            f"{audio_s / wall:6.0f}x realtime, out {report.size_bytes / 1e6:.1f} MB, peak RSS {peak_rss_mb():.0f} MB"
        )
    started = time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-ar", "8000", "-ac", "2",
         "-c:a", "libmp3lame", "-b:a", "32k", str(root / f"cli-{label}.mp3")],
        check=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    print(f"ffmpeg CLI {label:4s} same transcode, no metering:  {wall:5.2f} s: {audio_s / wall:6.0f}x realtime")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fetch-mb", type=int, default=256)
    parser.add_argument("--minutes", type=int, default=5)
    args = parser.parse_args()
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
