"""Command round trip through the relay (`serve --role api` -> media node) against the in-process path.

Two real processes share one database: `callplane serve` with the engine (node `bench-node`: it carries the call
and answers its commands in-process) and `callplane serve --role api` (no engine: it relays each command through
voice_node_commands + NOTIFY to the node and waits for the outcome). sipp places one call to the node; the same
command (`POST /calls/1/calls/{id}/stop-play`, which touches the engine and writes nothing) is sent N times to
each process, sequentially and then C at a time. Figures are HTTP round trips as a client sees them.

The floor, in the same run on the same database (PostgreSQL): a minimal LISTEN/NOTIFY round trip with the same
writes and no HTTP, no engine, no ORM. A sender (this process, asyncpg) inserts a command row and NOTIFYs the
node in one statement, then waits for the outcome's NOTIFY; a node (a second process, `--floor-node`) LISTENs,
claims the pending rows with one UPDATE ... RETURNING, writes each outcome and NOTIFYs it (synchronous_commit off,
as callplane's command rows are). Set beside what the relay adds to a command (relayed minus in-process, p50):
ratio = floor round trip / relay's added time (1.00 = the relay costs no more than the round trip itself).

Run: .venv/bin/python bench/relay.py [--commands 200] [--concurrency 8] [--sqlite]
     (PostgreSQL: a scratch database on CALLPLANE_TEST_POSTGRES_URL or 127.0.0.1:5432; --sqlite: the poll path,
     no floor)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from benchlib import load_average, percentile, ratio
from sipp_floor import caller_scenario

from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database

ADMIN = "relay-bench-admin"
SCENARIO = caller_scenario("", hangs_up=False)  # holds the call until the bench hangs it up


def _port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _database(sqlite: bool) -> Iterator[str | None]:
    if sqlite:
        yield None
        return
    with scratch_postgres_database(os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)) as url:
        yield url


async def _measure(client: httpx.AsyncClient, path: str, count: int, concurrency: int) -> tuple[list[float], float]:
    """Round trips (ms) of `count` POSTs, `concurrency` in flight; and the wall time (s)."""
    latencies: list[float] = []
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            started = time.perf_counter()
            response = await client.post(path)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


FLOOR_TABLE = """CREATE TABLE IF NOT EXISTS relay_floor (
    id bigserial PRIMARY KEY, node text NOT NULL, state text NOT NULL, command text NOT NULL, outcome text
)"""
RELAXED = "set_config('synchronous_commit', 'off', true)"
FLOOR_SEND = f"""WITH c AS (INSERT INTO relay_floor (node, state, command) VALUES ('floor', 'pending', $1) RETURNING id)
SELECT id, {RELAXED}, pg_notify('relay_floor_commands', 'floor') FROM c"""
FLOOR_CLAIM = "UPDATE relay_floor SET state = 'running' WHERE node = 'floor' AND state = 'pending' RETURNING id"
FLOOR_DONE = f"""WITH d AS (UPDATE relay_floor SET state = 'done', outcome = '{{}}' WHERE id = $1 RETURNING id)
SELECT {RELAXED}, pg_notify('relay_floor_outcomes', id::text) FROM d"""


async def floor_node(dsn: str) -> None:
    """The node side of the floor: on each NOTIFY, claim the pending rows, store each outcome and NOTIFY it."""
    listener, worker = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    wake = asyncio.Event()
    await listener.add_listener("relay_floor_commands", lambda *_: wake.set())
    print("listening", flush=True)  # the sender starts only then: a NOTIFY before LISTEN would be lost
    while True:
        await wake.wait()
        wake.clear()
        for row in await worker.fetch(FLOOR_CLAIM):
            await worker.execute(FLOOR_DONE, row["id"])


async def floor_round_trips(dsn: str, count: int, concurrency: int) -> tuple[list[float], float]:
    """Round trips (ms) of `count` commands through the floor node, `concurrency` in flight; and the wall time (s)."""
    waiting: dict[int, asyncio.Future[None]] = {}
    listener = await asyncpg.connect(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    await listener.add_listener(
        "relay_floor_outcomes", lambda _c, _p, _ch, payload: waiting.pop(int(payload)).set_result(None)
    )
    latencies: list[float] = []
    queue = iter(range(count))

    async def sender() -> None:
        async with pool.acquire() as connection:
            for _ in queue:
                started = time.perf_counter()
                async with connection.transaction():
                    # the future is registered before the commit sends the NOTIFY, so no outcome is missed
                    command_id = await connection.fetchval(FLOOR_SEND, '{"op": "stop-play"}')
                    done = waiting[command_id] = asyncio.get_running_loop().create_future()
                await asyncio.wait_for(done, 30)
                latencies.append((time.perf_counter() - started) * 1000)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started
    finally:
        await pool.close()
        await listener.close()


async def _floor_report(dsn: str, args: argparse.Namespace, relay_added_p50: dict[int, float]) -> None:
    connection = await asyncpg.connect(dsn)
    await connection.execute(FLOOR_TABLE)
    await connection.close()
    await floor_round_trips(dsn, 20, 1)  # warm up: connections, prepared statements, the node's LISTEN
    for concurrency in levels(args):
        latencies, wall = await floor_round_trips(dsn, args.commands, concurrency)
        p50 = percentile(latencies, 0.5)
        print(
            f"{'floor (LISTEN/NOTIFY round trip)':<34}{concurrency:>10}{len(latencies):>6}{p50:>9.2f}"
            f"{percentile(latencies, 0.99):>9.2f}{statistics.fmean(latencies):>9.2f}{len(latencies) / wall:>8.0f}"
            f"   relay adds {relay_added_p50[concurrency]:.2f} ms at p50; "
            f"ratio {ratio(p50, relay_added_p50[concurrency])}; {load_average()}"
        )


def _run(args: argparse.Namespace, workdir: Path, database_url: str | None) -> None:
    node_port, api_port, sip_port = _port(socket.SOCK_STREAM), _port(socket.SOCK_STREAM), _port(socket.SOCK_DGRAM)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")},
        "CALLPLANE_ENVIRONMENT": "development",
        "CALLPLANE_DATA_DIR": str(workdir / "data"),
        "CALLPLANE_ADMIN_TOKEN": ADMIN,
        "CALLPLANE_SECRET_KEY": "cmVsYXktYmVuY2gtZml4ZWQta2V5LTMyLWJ5dGVzISE=",
        "CALLPLANE_WORKERS_ENABLED": "false",
        "CALLPLANE_LOG_LEVEL": "WARNING",
        "CALLPLANE_VOICE_NODE_ID": "bench-node",
        "CALLPLANE_SIP_PORT": str(sip_port),
        **({"CALLPLANE_DATABASE_URL": database_url} if database_url else {}),
    }
    callplane = [sys.executable, "-m", "callplane"]
    subprocess.run([*callplane, "migrate"], env=env, check=True, capture_output=True)
    logs = (workdir / "node.log").open("wb"), (workdir / "api.log").open("wb")
    node = subprocess.Popen(
        [*callplane, "serve", "--port", str(node_port)],
        env={**env, "CALLPLANE_VOICE_ENABLED": "true"},
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    api_args = [*callplane, "serve", "--role", "api", "--port", str(api_port)]
    api = subprocess.Popen(api_args, env=env, stdout=logs[1], stderr=subprocess.STDOUT)
    sipp = None
    try:
        node_url, api_url = f"http://127.0.0.1:{node_port}", f"http://127.0.0.1:{api_port}"
        for url in (node_url, api_url):
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                time.sleep(0.1)
        admin = httpx.Client(base_url=node_url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        account = admin.post("/v1/admin/accounts", json={"kind": "network", "name": "relay"}).json()
        token = admin.post(f"/v1/admin/accounts/{account['id']}/tokens", json={"name": "relay"}).json()["token"]
        native = httpx.Client(base_url=node_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        app = {"Authorization": f"App {token}"}
        configuration = httpx.post(f"{node_url}/calls/1/configurations", json={"name": "relay"}, headers=app).json()
        native.post(f"/v1/voice/configurations/{configuration['id']}/routes", json={"called_user": "relay"})
        scenario = workdir / "caller.xml"
        scenario.write_text(SCENARIO)
        sipp = subprocess.Popen(
            ["sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(_port(socket.SOCK_DGRAM)), "-m", "1",
             "-s", "relay", "-nostdin", f"127.0.0.1:{sip_port}"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        call_id = None
        for _ in range(300):
            found = httpx.get(f"{node_url}/calls/1/calls", headers=app).json()["results"]
            if found:
                call_id = found[0]["id"]
                break
            time.sleep(0.1)
        if call_id is None:
            raise RuntimeError("the call did not arrive")
        httpx.post(f"{node_url}/calls/1/calls/{call_id}/answer", json={}, headers=app).raise_for_status()
        time.sleep(1.0)
        print(f"relay bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {'SQLite (poll)' if args.sqlite else 'PostgreSQL'}")
        targets = (("in-process (node's own API)", node_url), ("relayed (serve --role api)", api_url))
        p50 = asyncio.run(_report(targets, f"/calls/1/calls/{call_id}/stop-play", app, args))
        if database_url is not None:
            (local, _), (relayed, _) = targets
            added = {c: p50[(relayed, c)] - p50[(local, c)] for c in levels(args)}
            floor = subprocess.Popen(
                [sys.executable, __file__, "--floor-node", database_url], stdout=subprocess.PIPE, text=True
            )
            try:
                assert floor.stdout is not None and floor.stdout.readline() == "listening\n"
                asyncio.run(_floor_report(database_url, args, added))
            finally:
                floor.terminate()
                floor.wait(timeout=10)
        httpx.post(f"{api_url}/calls/1/calls/{call_id}/hangup", json={}, headers=app).raise_for_status()
    finally:
        if sipp is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                sipp.wait(timeout=10)
            sipp.kill()
        for process in (api, node):
            process.terminate()
        for process in (api, node):
            process.wait(timeout=60)
        for log in logs:
            log.close()


def levels(args: argparse.Namespace) -> tuple[int, int]:
    return (1, args.concurrency)


async def _report(
    targets: tuple[tuple[str, str], ...], path: str, headers: dict[str, str], args: argparse.Namespace
) -> dict[tuple[str, int], float]:
    """Prints each target's round trips at 1 and at C in flight; returns the p50s by (target, in flight)."""
    print(f"{'path':<34}{'in flight':>10}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'cmd/s':>8}")
    p50: dict[tuple[str, int], float] = {}
    limits = httpx.Limits(max_connections=64)
    for name, url in targets:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:
            await _measure(client, path, 20, 1)  # warm up connections and caches
            for concurrency in levels(args):
                latencies, wall = await _measure(client, path, args.commands, concurrency)
                p50[(name, concurrency)] = percentile(latencies, 0.5)
                print(
                    f"{name:<34}{concurrency:>10}{len(latencies):>6}{p50[(name, concurrency)]:>9.2f}"
                    f"{percentile(latencies, 0.99):>9.2f}{statistics.fmean(latencies):>9.2f}"
                    f"{len(latencies) / wall:>8.0f}   {load_average()}"
                )
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=200, help="commands per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="commands in flight in the second measurement")
    parser.add_argument("--sqlite", action="store_true", help="SQLite: no NOTIFY, the node's poll finds commands")
    parser.add_argument("--floor-node", metavar="DSN", help=argparse.SUPPRESS)  # the floor's node process
    args = parser.parse_args()
    if args.floor_node:
        asyncio.run(floor_node(args.floor_node))
        return
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as work, _database(args.sqlite) as url:
        _run(args, Path(work), url)


if __name__ == "__main__":
    main()
