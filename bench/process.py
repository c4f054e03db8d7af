"""Post-call processing speed: 5-minute stereo recordings fetched over loopback, normalized and stored.

Starts `callplane serve` (SQLite, in-process workers) with 1 and then 2 concurrent jobs, serves a generated
5-minute stereo WAV from a loopback HTTP server, submits a batch of calls through the Invoca API and waits
until every one is `completed`. Transcription is turned off (CALLPLANE_TRANSCRIPTION_ENABLED=false) so this
measures fetching and normalization; bench/transcribe.py measures the pipeline with transcription.

    .venv/bin/python bench/process.py [--calls 8] [--minutes 5] [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

CALLPLANE = [sys.executable, "-m", "callplane"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_recording(path: Path, minutes: float) -> None:
    seconds = minutes * 60
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate=16000:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"anoisesrc=color=pink:sample_rate=16000:amplitude=0.1:duration={seconds}",
            "-filter_complex",
            "[0:a][1:a]join=inputs=2:channel_layout=stereo[a]",
            "-map",
            "[a]",
            str(path),
        ],
        check=True,
    )


def run(concurrency: int, args: argparse.Namespace, recording_url: str) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="callplane-process-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")} | {
        "CALLPLANE_DATA_DIR": str(data_dir),
        "CALLPLANE_LOG_LEVEL": "WARNING",
        "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "CALLPLANE_WORKER_CONCURRENCY": str(concurrency),
        "CALLPLANE_WORKER_POLL_SECONDS": "0.05",
        "CALLPLANE_TRANSCRIPTION_ENABLED": "false",
    }
    database = None
    if args.backend == "postgresql":
        database = f"callplane_process_{secrets.token_hex(4)}"
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'CREATE DATABASE "{database}"'], check=True
        )
        env["CALLPLANE_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{database}"
    port = free_port()
    server = subprocess.Popen(
        [*CALLPLANE, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        demo = json.loads(subprocess.run([*CALLPLANE, "demo-setup"], env=env, check=True, capture_output=True).stdout)
        token = demo["invoca"]["oauth_token"]
        with httpx.Client(base_url=base, timeout=30) as client:

            def submit() -> str:
                response = client.post(
                    "/api/2022-03-01/calls.json",
                    headers={"Authorization": token},
                    json={
                        "call": {
                            "external_call_unique_id": secrets.token_hex(8),
                            "start_time": 1460404800,
                            "destination_phone_number": 9093900003,
                            "calling_phone_number": 8779257384,
                            "advertiser_campaign_id_from_network": 86,
                            "call_direction": "inbound",
                            "recording_url": recording_url,
                        }
                    },
                )
                response.raise_for_status()
                return str(response.json()["cuid"])

            def wait(ids: list[str]) -> None:
                pending = set(ids)
                while pending:
                    for call_id in list(pending):
                        status = client.get(f"/v1/calls/{call_id}", headers={"Authorization": f"Bearer {token}"}).json()
                        if status["status"] == "failed":
                            raise RuntimeError(status["status_reason"])
                        if status["status"] == "completed":
                            pending.discard(call_id)
                    time.sleep(0.02)

            started = time.perf_counter()
            single = submit()
            wait([single])
            single_latency = time.perf_counter() - started
            started = time.perf_counter()
            wait([submit() for _ in range(args.calls)])
            wall = time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        if database:
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'DROP DATABASE "{database}" WITH (FORCE)'],
                check=False,
            )
    audio_seconds = args.calls * args.minutes * 60
    return {
        "concurrency": concurrency,
        "wall_s": wall,
        "x_realtime": audio_seconds / wall,
        "single_call_s": single_latency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as origin:
        make_recording(Path(origin) / "call.wav", args.minutes)
        files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=origin))
        threading.Thread(target=files.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{files.server_address[1]}/call.wav"
        print(
            f"machine: {os.cpu_count()} cores; backend {args.backend}; {args.calls} calls of "
            f"{args.minutes:g}-minute 16 kHz stereo WAV; transcription turned off"
        )
        print(f"{'jobs':>4} {'wall s':>8} {'x realtime':>11} {'single call accepted->completed s':>34}")
        for concurrency in (1, 2):
            row = run(concurrency, args, url)
            print(
                f"{row['concurrency']:>4.0f} {row['wall_s']:>8.2f} {row['x_realtime']:>11.0f} "
                f"{row['single_call_s']:>34.2f}",
                flush=True,
            )
        files.shutdown()


if __name__ == "__main__":
    main()
