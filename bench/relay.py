"""Command round trip through the relay (`serve --role api` -> media node) against the in-process path.

Two real processes share one database: `callplane serve` with the engine (node `bench-node`: it carries the call
and answers its commands in-process) and `callplane serve --role api` (no engine: it relays each command through
voice_node_commands + NOTIFY to the node and waits for the outcome). sipp places one call to the node; the same
command (`POST /calls/1/calls/{id}/stop-play`, which touches the engine and writes nothing) is sent N times to
each process, sequentially and then C at a time. Figures are HTTP round trips as a client sees them.

Run: .venv/bin/python bench/relay.py [--commands 300] [--concurrency 8] [--sqlite]
     (PostgreSQL: a scratch database on CALLPLANE_TEST_POSTGRES_URL or 127.0.0.1:5432; --sqlite: the poll path)
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

import httpx

from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database

ADMIN = "relay-bench-admin"
SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="relay bench caller">
  <send retrans="500"><![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[local_ip_type] [local_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000

    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv request="BYE" timeout="900000"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
</scenario>
"""


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


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


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
        asyncio.run(_report(targets, f"/calls/1/calls/{call_id}/stop-play", app, args))
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


async def _report(
    targets: tuple[tuple[str, str], ...], path: str, headers: dict[str, str], args: argparse.Namespace
) -> None:
    print(f"{'path':<34}{'in flight':>10}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'cmd/s':>8}")
    limits = httpx.Limits(max_connections=64)
    for name, url in targets:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:
            await _measure(client, path, 20, 1)  # warm up connections and caches
            for concurrency in (1, args.concurrency):
                latencies, wall = await _measure(client, path, args.commands, concurrency)
                print(
                    f"{name:<34}{concurrency:>10}{len(latencies):>6}{_percentile(latencies, 0.5):>9.2f}"
                    f"{_percentile(latencies, 0.99):>9.2f}{statistics.fmean(latencies):>9.2f}"
                    f"{len(latencies) / wall:>8.0f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=300, help="commands per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="commands in flight in the second measurement")
    parser.add_argument("--sqlite", action="store_true", help="SQLite: no NOTIFY, the node's poll finds commands")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as work, _database(args.sqlite) as url:
        _run(args, Path(work), url)


if __name__ == "__main__":
    main()
