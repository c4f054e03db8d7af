"""Post-call processing speed beside its floor: 5-minute stereo recordings, accepted -> completed.

Generates one 5-minute two-speaker call (espeak-ng, a different voice per channel) and derives four inputs from it
with the ffmpeg CLI: 44.1 kHz WAV, 48 kHz WAV, MP3 (128 kbit/s) and M4A (AAC 128 kbit/s). Starts `callplane serve`
(in-process worker, `--jobs` at a time, transcription off, default poll interval) and, per input, submits `--calls`
outbound calls (so channels are swapped) through the Invoca API with a loopback `recording_url`, and waits until
all are `completed`: fetch, format check, normalization to 8 kHz stereo MP3 with level metering, storage, events.

The floor, in the same run on the same files: the ffmpeg CLI doing the same transform (same channel swap, 8 kHz,
stereo MP3 at callplane's encoder settings: the filter and encoder arguments are callplane's own), `--jobs` at a
time, from local disk. Ratio = callplane x real time / floor x real time (higher is better, 1.0 = the CLI's speed).
"per core" is audio seconds per CPU second: the server process with its ffmpeg children, against the CLI's.

    .venv/bin/python bench/process.py [--calls 6] [--jobs 2] [--minutes 5] [--rounds 1] [--backend sqlite|postgresql]
        [--formats wav44,wav48,mp3,m4a] [--poll-seconds S]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
from benchlib import ffmpeg_cli_floor, free_port

CALLPLANE = [sys.executable, "-m", "callplane"]
TICK = os.sysconf("SC_CLK_TCK")
LINES_A = (
    "Thank you for calling the service desk, this is Anna speaking. How can I help you today? "
    "Let me look up your account. I can see the order here, it shipped yesterday and should arrive on Friday. "
    "Is there anything else I can do for you? "
)
LINES_B = (
    "Hi, I am calling about an order I placed last week. It has not arrived yet and I would like to know where it "
    "is. Could you also change the delivery address to my office, please? That would be great, thank you. "
)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


def make_sources(root: Path, minutes: float) -> dict[str, Path]:
    """Speech on both channels (two espeak-ng voices, looped to length), then the four input formats."""
    seconds = minutes * 60
    voices = []
    for name, voice, speed, text in (("a", "en-us", "160", LINES_A), ("b", "en+f3", "150", LINES_B)):
        path = root / f"voice-{name}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-w", str(path), text * 4], check=True)
        voices.append(path)
    sources = {"wav44": root / "call-44k.wav"}
    ffmpeg(
        *("-stream_loop", "-1", "-i", voices[0], "-stream_loop", "-1", "-i", voices[1]),
        "-filter_complex",
        f"[0:a][1:a]join=inputs=2:channel_layout=stereo,atrim=0:{seconds},aresample=44100",
        *("-c:a", "pcm_s16le", sources["wav44"]),
    )
    sources["wav48"] = root / "call-48k.wav"
    ffmpeg("-i", sources["wav44"], "-ar", "48000", "-c:a", "pcm_s16le", sources["wav48"])
    sources["mp3"] = root / "call.mp3"
    ffmpeg("-i", sources["wav44"], "-c:a", "libmp3lame", "-b:a", "128k", sources["mp3"])
    sources["m4a"] = root / "call.m4a"
    ffmpeg("-i", sources["wav44"], "-c:a", "aac", "-b:a", "128k", sources["m4a"])
    return sources


def floor(source: Path, out_dir: Path, calls: int, jobs: int) -> tuple[float, float]:
    """The ffmpeg CLI alone, `jobs` at a time: wall seconds and CPU seconds."""

    def one(index: int) -> None:
        subprocess.run(ffmpeg_cli_floor(source, out_dir / f"floor-{index}.mp3", swap=True), check=True)

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, range(calls)))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def process_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a process itself and of its waited-for children (the ffmpeg processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = [int(value) for value in fields[11:15]]  # utime, stime, cutime, cstime
    return (ticks[0] + ticks[1]) / TICK, (ticks[2] + ticks[3]) / TICK


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir = Path(tempfile.mkdtemp(prefix="callplane-process-"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")} | {
            "CALLPLANE_DATA_DIR": str(self.data_dir),
            "CALLPLANE_LOG_LEVEL": "WARNING",
            "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
            "CALLPLANE_WORKER_CONCURRENCY": str(args.jobs),
            "CALLPLANE_TRANSCRIPTION_ENABLED": "false",
        }
        if args.poll_seconds is not None:
            self.env["CALLPLANE_WORKER_POLL_SECONDS"] = str(args.poll_seconds)
        self.database: str | None = None
        if args.backend == "postgresql":
            self.database = f"callplane_process_{secrets.token_hex(4)}"
            self._psql(f'CREATE DATABASE "{self.database}"')
            self.env["CALLPLANE_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{self.database}"
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [*CALLPLANE, "serve", "--port", str(port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        demo = json.loads(
            subprocess.run([*CALLPLANE, "demo-setup"], env=self.env, check=True, capture_output=True).stdout
        )
        self.token = demo["invoca"]["oauth_token"]
        self.client = httpx.Client(base_url=self.base, timeout=30)

    @staticmethod
    def _psql(sql: str) -> None:
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)

    def submit(self, url: str) -> str:
        response = self.client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": self.token},
            json={
                "call": {
                    "external_call_unique_id": secrets.token_hex(8),
                    "start_time": 1460404800,
                    "destination_phone_number": 9093900003,
                    "calling_phone_number": 8779257384,
                    "advertiser_campaign_id_from_network": 86,
                    "call_direction": "outbound",
                    "recording_url": url,
                }
            },
        )
        response.raise_for_status()
        return str(response.json()["cuid"])

    def wait(self, ids: list[str]) -> list[dict[str, object]]:
        """Every call's final state: one list request every 0.5 s (the server's own timestamps give the times, so
        this only needs to be light on the server, whose CPU is measured)."""
        pending, done = set(ids), {}
        while pending:
            time.sleep(0.5)
            listed = self.client.get(
                "/v1/calls", params={"limit": 500}, headers={"Authorization": f"Bearer {self.token}"}
            ).json()["calls"]
            for call in listed:
                if call["id"] in pending and call["status"] == "failed":
                    raise RuntimeError(call["status_reason"])
                if call["id"] in pending and call["status"] == "completed":
                    pending.discard(call["id"])
                    done[call["id"]] = call
        return [done[call_id] for call_id in ids]

    def run(self, url: str, calls: int) -> dict[str, float]:
        single = self.wait([self.submit(url)])[0]
        cpu_before = process_cpu(self.process.pid)
        ids = [self.submit(url) for _ in range(calls)]
        finished = self.wait(ids)
        cpu_after = process_cpu(self.process.pid)
        received = [datetime.fromisoformat(str(c["received_at"])) for c in finished]
        completed = [datetime.fromisoformat(str(c["updated_at"])) for c in finished]
        latencies = [(end - start).total_seconds() for start, end in zip(received, completed, strict=True)]
        return {
            "wall_s": (max(completed) - min(received)).total_seconds(),
            "cpu_s": sum(cpu_after) - sum(cpu_before),
            "python_cpu_s": cpu_after[0] - cpu_before[0],
            "ffmpeg_cpu_s": cpu_after[1] - cpu_before[1],
            "single_s": (
                datetime.fromisoformat(str(single["updated_at"])) - datetime.fromisoformat(str(single["received_at"]))
            ).total_seconds(),
            "median_s": statistics.median(latencies),
        }

    def close(self) -> None:
        self.client.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        if self.database:
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'DROP DATABASE "{self.database}" WITH (FORCE)'],
                check=False,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--formats", default="wav44,wav48,mp3,m4a")
    parser.add_argument("--poll-seconds", type=float, default=None, help="CALLPLANE_WORKER_POLL_SECONDS (default: 0.5)")
    args = parser.parse_args()
    formats = args.formats.split(",")
    with tempfile.TemporaryDirectory() as origin:
        root = Path(origin)
        sources = make_sources(root, args.minutes)
        files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=origin))
        threading.Thread(target=files.serve_forever, daemon=True).start()
        audio_s = args.calls * args.minutes * 60
        print(
            f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"backend {args.backend}; {args.calls} outbound calls of {args.minutes:g} minutes per input, "
            f"{args.jobs} at a time, transcription off"
        )
        print(f"floor: {' '.join(ffmpeg_cli_floor(Path('SOURCE'), Path('OUT.mp3'), swap=True))}")
        header = (
            f"{'input':<6} {'MB':>5} | {'callplane wall s':>16} {'xRT':>5} {'xRT/core':>8} {'median s':>8} "
            f"{'single s':>8} {'py/ff cpu s/call':>16} | {'floor wall s':>12} {'xRT':>5} {'xRT/core':>8} "
            f"{'cpu s/call':>10} | {'ratio':>5} {'cpu ratio':>9}"
        )
        server = Server(args)
        try:
            print(header, flush=True)
            for _ in range(args.rounds):
                for label in formats:
                    source = sources[label]
                    url = f"http://127.0.0.1:{files.server_address[1]}/{source.name}"
                    ours = server.run(url, args.calls)
                    floor_wall, floor_cpu = floor(source, root, args.calls, args.jobs)
                    xrt, floor_xrt = audio_s / ours["wall_s"], audio_s / floor_wall
                    per_core, floor_per_core = audio_s / ours["cpu_s"], audio_s / floor_cpu
                    print(
                        f"{label:<6} {source.stat().st_size / 1e6:>5.1f} | {ours['wall_s']:>16.2f} {xrt:>5.0f} "
                        f"{per_core:>8.0f} {ours['median_s']:>8.2f} {ours['single_s']:>8.2f} "
                        f"{ours['python_cpu_s'] / args.calls:>7.2f} / {ours['ffmpeg_cpu_s'] / args.calls:>6.2f} | "
                        f"{floor_wall:>12.2f} {floor_xrt:>5.0f} {floor_per_core:>8.0f} {floor_cpu / args.calls:>10.2f} "
                        f"| {xrt / floor_xrt:>5.2f} "
                        f"{per_core / floor_per_core:>9.2f}",
                        flush=True,
                    )
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            server.close()
            files.shutdown()


if __name__ == "__main__":
    main()
