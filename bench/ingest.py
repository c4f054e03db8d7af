"""Ingestion throughput and latency over loopback, on SQLite and PostgreSQL, beside its floor.

Starts `callplane serve` as a real process, creates a demo tenant, then drives it with wrk (a C load
generator, on the same 2-core machine): single calls at several connection counts, and 50-call batches.
Every request carries a fresh external id, so each one is a real insert (key + call + job + event + signal +
custom data, one transaction, committed before the 201), and a different caller number (10,000 in turn: more than
the phone parser's cache holds) to the same tracking number.

On PostgreSQL the same wrk script, connections, duration and number of server processes also drive the floor,
`bench/floor_ingest_app.py` (Starlette + asyncpg writing the same rows in one transaction, no auth or
validation), in the same run, alternating with callplane; the ratio of the two is the figure that counts on a
shared machine.

    .venv/bin/python bench/ingest.py [--duration 10] [--workers 2] [--connections 8] [--rounds 2]
        [--backends sqlite,postgresql] [--no-batch]

Needs `wrk` (Debian package `wrk`: apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchlib import free_port, start_profile

ROOT = Path(__file__).resolve().parent.parent
CALLPLANE = [sys.executable, "-m", "callplane"]

SINGLE_LUA = r"""
local prefix = "%(prefix)s"
local thread_count = 0
setup = function(thread) thread:set("tid", thread_count); thread_count = thread_count + 1 end
local counter = 0
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "%(token)s"}
request = function()
  counter = counter + 1
  local body = '{"call": {"external_call_unique_id": "' .. prefix .. "-" .. tid .. "-" .. counter ..
    '", "start_time": "2022-03-25 09:31:29", "destination_phone_number": 9093900003, ' ..
    '"calling_phone_number": 877925' .. string.format("%%04d", counter %% 10000) .. ', ' ..
    '"advertiser_campaign_id_from_network": %(campaign)s, ' ..
    '"call_direction": "inbound", "recording_url": "https://example.com/r.wav"}, ' ..
    '"signals": [{"name": "Sale", "value": "yes"}], "custom_data": [{"name": "account_type", "value": "gold"}]}'
  return wrk.format("POST", "/api/2022-03-01/calls.json", headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "bad_status": %%d, "socket_errors": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
"""

BATCH_LUA = r"""
local prefix = "%(prefix)s"
local thread_count = 0
setup = function(thread) thread:set("tid", thread_count); thread_count = thread_count + 1 end
local counter = 0
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(token)s",
  ["x-partner-id"] = "123", ["x-tenant-id"] = "tenant1", ["x-sub-tenant-id"] = "subtenant1"}
request = function()
  counter = counter + 1
  local items = {}
  for i = 1, 50 do
    items[i] = '{"call": {"id": "' .. prefix .. "-" .. tid .. "-" .. counter .. "-" .. i ..
      '", "recording_url": "https://example.com/r.mp3", "start_time": "2023-01-01T10:00:00Z", ' ..
      '"end_time": "2023-01-01T10:30:00Z", "contact_number": "+1234567890"}, ' ..
      '"agent": {"id": "a1", "email": "agent@example.com", "name": "John Doe"}, ' ..
      '"customer": {"id": "c1", "name": "Jane Smith"}, "callback_url": "https://partner.example.com/cb", ' ..
      '"metadata": {"campaign": "Q1", "source": "Website"}}'
  end
  return wrk.format("POST", "/partner/ingest/batch-call", headers, '{"data": [' .. table.concat(items, ",") .. ']}')
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "bad_status": %%d, "socket_errors": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
"""


def create_postgres_database() -> tuple[str, str]:
    name = f"callplane_bench_{secrets.token_hex(4)}"
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'CREATE DATABASE "{name}"'], check=True)
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_postgres_database(name: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'DROP DATABASE "{name}" WITH (FORCE)'], check=False
    )


def run_wrk(lua: str, port: int, connections: int, duration: int, threads: int = 1) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        output = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(script.name)
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result: dict[str, float] = json.loads(line[len("RESULT ") :])
    result["per_second"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the server's workers), from /proc (Linux)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        pending += [int(child) for child in children]
    return total


def wait_ready(port: int, path: str, method: str = "GET") -> None:
    deadline = time.monotonic() + 300  # importing callplane took over a minute on the loaded shared VM
    while True:
        try:
            if httpx.request(method, f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bench_backend(backend: str, args: argparse.Namespace) -> list[dict[str, object]]:
    data_dir = Path(tempfile.mkdtemp(prefix="callplane-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")}
    # The per-partner rate limit (120 batches a minute by default) would cap the batch runs.
    env |= {
        "CALLPLANE_DATA_DIR": str(data_dir),
        "CALLPLANE_LOG_LEVEL": "WARNING",
        "CALLPLANE_BATCH_RATE_LIMIT_PER_MINUTE": "100000000",
        # The API alone is measured; processing would also try to fetch the example recordings.
        "CALLPLANE_WORKERS_ENABLED": "false",
    }
    database = url = None
    if backend == "postgresql":
        database, url = create_postgres_database()
        env["CALLPLANE_DATABASE_URL"] = url
    port = free_port()
    server = subprocess.Popen(
        [*CALLPLANE, "serve", "--port", str(port), "--workers", str(args.workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    floor: subprocess.Popen[bytes] | None = None
    rows: list[dict[str, object]] = []
    try:
        wait_ready(port, "/readyz")
        demo = json.loads(subprocess.run([*CALLPLANE, "demo-setup"], env=env, check=True, capture_output=True).stdout)
        values = {
            "token": demo["invoca"]["oauth_token"],
            "campaign": demo["invoca"]["advertiser_campaign_id_from_network"],
        }
        targets = [("callplane", port, server.pid)]
        if url is not None and args.floor:
            # Same database, same tenant, same number of processes; uvicorn picks uvloop and httptools for
            # both, as it does for `callplane serve`.
            floor_port = free_port()
            floor = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"), "floor_ingest_app:app",
                    "--port", str(floor_port), "--workers", str(args.workers), "--no-access-log",
                    "--log-level", "warning",
                ],
                env=env | {"FLOOR_DATABASE_URL": url, "FLOOR_CAMPAIGN": str(values["campaign"])},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_ready(floor_port, "/api/2022-03-01/calls.json", "GET")
            targets.append(("floor", floor_port, floor.pid))
        for _, target_port, _ in targets:
            run_wrk(SINGLE_LUA % (values | {"prefix": "warm"}), target_port, 8, 3)  # warm caches and pools
        for round_number in range(1, args.rounds + 1):
            for connections in args.connections:
                # callplane, then the floor right after it: the same load from other work, as near as can be.
                for app, target_port, pid in targets:
                    lua = SINGLE_LUA % (values | {"prefix": secrets.token_hex(4)})
                    cpu_before = tree_cpu_seconds(pid)
                    profile = None
                    if args.profile and round_number == 1:  # py-spy on every server process of this run
                        output = args.profile / f"ingest-{backend}-{app}-{connections}.txt"
                        profile = start_profile(pid, output, args.duration - 1)
                    result = run_wrk(lua, target_port, connections, args.duration)
                    if profile is not None:
                        profile.wait()
                    # Server CPU per request: what the load on the shared machine does not change much.
                    cpu_ms = (tree_cpu_seconds(pid) - cpu_before) * 1000 / max(1, result["requests"])
                    rows.append(
                        {"app": app, "backend": backend, "test": "single call", "connections": connections}
                        | {"round": round_number, "load": os.getloadavg()[0], "cpu_ms": cpu_ms}
                        | result
                    )
        if args.batch:
            batch_values = {"token": demo["batch"]["token"]}
            for connections in (1, 4):
                lua = BATCH_LUA % (batch_values | {"prefix": secrets.token_hex(4)})
                result = run_wrk(lua, port, connections, args.duration)
                rows.append(
                    {"app": "callplane", "backend": backend, "test": "50-call batch", "connections": connections}
                    | {"round": 1, "load": os.getloadavg()[0]}
                    | result
                )
    finally:
        stop(server)
        if floor is not None:
            stop(floor)
        if database:
            drop_postgres_database(database)
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def print_row(row: dict[str, Any]) -> None:
    calls = row["per_second"] * (50 if row["test"] == "50-call batch" else 1)
    print(
        f"{row['app']:<9} {row['backend']:<11} {row['test']:<14} {row['connections']:>5} {row['round']:>5} "
        f"{row['per_second']:>8.0f} {calls:>8.0f} {row['p50_us'] / 1000:>7.1f} {row['p90_us'] / 1000:>7.1f} "
        f"{row['p99_us'] / 1000:>7.1f} {row['bad_status'] + row['socket_errors']:>7} {row['load']:>5.1f}",
        flush=True,
    )


def print_ratios(rows: list[dict[str, Any]]) -> None:
    """callplane / floor for each pair of runs taken one right after the other."""
    floors = {(r["backend"], r["connections"], r["round"]): r for r in rows if r["app"] == "floor"}
    pairs = [
        (r, floors[key])
        for r in rows
        if r["app"] == "callplane" and (key := (r["backend"], r["connections"], r["round"])) in floors
    ]
    if not pairs:
        return
    print()
    print("single calls, callplane beside its floor (same wrk script, connections, duration and process count)")
    print(
        f"{'conns':>5} {'round':>5}  {'callplane calls/s  p50/p99 ms':<30} {'floor calls/s  p50/p99 ms':<27} ratio"
        "  server CPU ms/call (callplane / floor)"
    )
    for mine, floor in pairs:
        print(
            f"{mine['connections']:>5} {mine['round']:>5}  "
            f"{mine['per_second']:>8.0f}  {mine['p50_us'] / 1000:>6.1f} / {mine['p99_us'] / 1000:<6.1f}      "
            f"{floor['per_second']:>8.0f}  {floor['p50_us'] / 1000:>6.1f} / {floor['p99_us'] / 1000:<6.1f}   "
            f"{mine['per_second'] / floor['per_second']:>5.2f}  {mine['cpu_ms']:.2f} / {floor['cpu_ms']:.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="server processes (callplane's and the floor's)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--connections", default="8", help="comma-separated wrk connection counts")
    parser.add_argument("--rounds", type=int, default=2, help="callplane/floor pairs per connection count")
    parser.add_argument("--no-floor", dest="floor", action="store_false", help="skip the floor app")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy each server in round 1 into this folder")
    parser.add_argument("--no-batch", dest="batch", action="store_false", help="skip the 50-call batch runs")
    args = parser.parse_args()
    args.connections = [int(c) for c in args.connections.split(",")]
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (Debian package `wrk`)")
    print(
        f"machine: {os.cpu_count()} cores; server processes: {args.workers}; wrk (1 thread) on the same machine; "
        f"{args.duration}s per run; load average at start {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'app':<9} {'backend':<11} {'test':<14} {'conns':>5} {'round':>5} {'req/s':>8} {'calls/s':>8} "
        f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'errors':>7} {'load':>5}"
    )
    rows: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        for row in bench_backend(backend, args):
            print_row(row)
            rows.append(row)
    print_ratios(rows)


if __name__ == "__main__":
    main()
