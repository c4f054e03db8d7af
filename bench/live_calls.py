"""Calls In Progress lookup latency with many live calls in the store, over real HTTP.

    .venv/bin/python bench/live_calls.py [--calls 5000] [--requests 300] [--backends sqlite postgresql] [--full]

For each backend: migrates a fresh database, seeds ``--calls`` live promo-number calls (core Call, voice call
ESTABLISHED in an ESTABLISHED dialog, tracking row, one custom data value each), starts ``callplane serve`` as
its own process (no engine, no workers), then asks
``GET /api/2022-08-01/calls_in_progress/current_calls.json`` ``--requests`` times by transaction id and
``--requests`` times by calling/destination phone pair (random live calls, one keep-alive connection, one
request at a time) and prints p50 / p90 / p99 / max in milliseconds, requests per second and the server
process's CPU time per request (user + system, from /proc: what a lookup costs whatever else loads the machine).
Every answer is checked to hold exactly the call asked for.

The floor, in the same run on the same database right after: `bench/replay_floor.py` as its own process (a
minimal Starlette app, one process like the server), replaying the SQL callplane sent for one lookup of each kind
(recorded from an in-process server after a warm-up) with the key swapped for the call asked for (the transaction
id, or the calling number already in E.164: the floor parses nothing), the same requests one at a time over one
keep-alive connection. Ratio = floor p50 / callplane p50, and floor CPU / callplane CPU per request.
``--full``: 100,000 live calls and 2,000 requests per lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from benchlib import free_port, load_average, percentile, process_cpu_seconds, ratio
from replay_floor import Capture, Statement
from sqlalchemy import insert

from callplane.core.call_tracking.models import PromoNumber, TrackedCall
from callplane.core.calls.models import Call, CallCustomData
from callplane.core.tenancy import service as tenancy
from callplane.core.tenancy.models import AccountKind, OrganizationKind
from callplane.core.voice.models import CallsConfiguration, VoiceCall, VoiceDialog
from callplane.db.base import utcnow
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.settings import Settings
from callplane.testing.server import running_server

CALLPLANE = [sys.executable, "-m", "callplane"]
DESTINATION = "+18005550100"
CHUNK = 5000


def calling_number(index: int) -> str:
    return f"+1415{2000000 + index:07d}"  # 415-200-0000 onwards: valid NANP numbers


async def seed(settings: Settings, calls: int) -> tuple[str, str, list[tuple[str, str]]]:
    """The tenant, its token and (transaction id, calling number) of every live call."""
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            account = await tenancy.create_account(
                session=session, kind=AccountKind.NETWORK, name="bench", external_id="bench-net"
            )
            advertiser = await tenancy.create_organization(
                session=session, account_id=account.id, kind=OrganizationKind.ADVERTISER, external_id="adv-1"
            )
            campaign = await tenancy.create_campaign(
                session=session, account_id=account.id, organization_id=advertiser.id, external_id="86"
            )
            field = await tenancy.create_custom_data_field(session=session, account_id=account.id, api_name="channel")
            _, token = await tenancy.issue_token(session=session, account_id=account.id)
            configuration = CallsConfiguration(id=str(uuid.uuid4()), account_id=account.id, name="bench")
            session.add(configuration)
            promo = PromoNumber(
                account_id=account.id,
                campaign_id=campaign.id,
                number="+18885550111",
                description="bench",
                destination_type="SIP",
                destination=f"sip:{DESTINATION}@127.0.0.1:5999",
                configuration_id=configuration.id,
            )
            session.add(promo)
            await session.flush()
            ids = (account.id, advertiser.id, campaign.id, promo.id, configuration.id, field.id)
        account_id, advertiser_id, campaign_id, promo_id, configuration_id, field_id = ids
        found: list[tuple[str, str]] = []
        now = utcnow()
        for start in range(0, calls, CHUNK):
            core_rows: list[dict[str, Any]] = []
            voice_rows: list[dict[str, Any]] = []
            dialog_rows: list[dict[str, Any]] = []
            tracked_rows: list[dict[str, Any]] = []
            data_rows: list[dict[str, Any]] = []
            for index in range(start, min(calls, start + CHUNK)):
                call_id, dialog_id = str(uuid.uuid4()), str(uuid.uuid4())
                began = now - timedelta(seconds=index % 3600)
                calling = calling_number(index)
                transaction = secrets.token_hex(8).upper()
                transaction_id = f"{transaction[:8]}-{transaction[8:]}"
                found.append((transaction_id, calling))
                core_rows.append(
                    {
                        "id": call_id, "account_id": account_id, "organization_id": advertiser_id,
                        "campaign_id": campaign_id, "origin": "voice", "direction": "inbound", "from_e164": calling,
                        "to_e164": "+18885550111", "contact_e164": calling, "started_at": began, "status": "processing",
                        "agent": {}, "customer": {}, "call_metadata": {}, "extras": {}, "received_at": began,
                        "updated_at": began,
                    }
                )  # fmt: skip
                voice_rows.append(
                    {
                        "id": call_id, "account_id": account_id, "configuration_id": configuration_id,
                        "direction": "INBOUND", "state": "ESTABLISHED", "endpoint_type": "SIP",
                        "endpoint_user": calling, "from_user": calling, "to_user": "+18885550111",
                        "dialog_id": dialog_id, "custom_data": {}, "node_id": "bench", "max_duration_s": 28800,
                        "created_at": began, "answered_at": began + timedelta(seconds=2),
                    }
                )  # fmt: skip
                dialog_rows.append(
                    {
                        "id": dialog_id, "account_id": account_id, "configuration_id": configuration_id,
                        "state": "ESTABLISHED", "parent_call_id": call_id, "child_hangup_ends_parent": True,
                        "created_at": began + timedelta(seconds=1), "established_at": began + timedelta(seconds=2),
                    }
                )  # fmt: skip
                tracked_rows.append(
                    {
                        "call_id": call_id, "account_id": account_id, "transaction_id": transaction_id,
                        "call_record_id": f"{transaction[:4]}-{transaction[4:]}", "promo_number_id": promo_id,
                        "calling_e164": calling, "called": "+18885550111",
                        "destination": f"sip:{DESTINATION}@127.0.0.1:5999", "destination_e164": DESTINATION,
                        "created_at": began,
                    }
                )  # fmt: skip
                data_rows.append(
                    {
                        "id": str(uuid.uuid4()), "call_id": call_id, "account_id": account_id, "field_id": field_id,
                        "name": "channel", "value": "radio", "source": "promo_number", "created_at": began,
                    }
                )  # fmt: skip
            async with sessions() as session, session.begin():
                for model, rows in (
                    (Call, core_rows),
                    (VoiceCall, voice_rows),
                    (VoiceDialog, dialog_rows),
                    (TrackedCall, tracked_rows),
                    (CallCustomData, data_rows),
                ):
                    await session.execute(insert(model), rows)
        return "bench-net", token, found
    finally:
        await engine.dispose()


PATH = "/api/2022-08-01/calls_in_progress/current_calls.json"


def measure(ask: Callable[[int], str | None], count: int, server_pid: int) -> dict[str, float]:
    """`ask(i)` sends request i, one at a time, and says what was wrong with the answer (None: right)."""
    latencies: list[float] = []
    cpu_before = process_cpu_seconds(server_pid)
    started = time.perf_counter()
    for index in range(count):
        before = time.perf_counter()
        wrong = ask(index)
        latencies.append((time.perf_counter() - before) * 1000)
        if wrong:
            raise AssertionError(wrong)
    elapsed = time.perf_counter() - started
    return {
        "server_cpu_ms": (process_cpu_seconds(server_pid) - cpu_before) * 1000 / len(latencies),
        "p50_ms": statistics.median(latencies),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "per_second": len(latencies) / elapsed,
    }


def asking(client: httpx.Client, queries: list[dict[str, str]], expected: list[str]) -> Callable[[int], str | None]:
    def ask(index: int) -> str | None:
        response = client.get(PATH, params=queries[index])
        if response.status_code == 200 and [c["transaction_id"] for c in response.json()["current_calls"]] == [
            expected[index]
        ]:
            return None
        return f"wrong answer for {queries[index]}: {response.status_code} {response.text[:300]}"

    return ask


def replaying(
    client: httpx.Client, name: str, swaps: list[dict[str, str]], expected: list[str]
) -> Callable[[int], str | None]:
    def ask(index: int) -> str | None:
        response = client.post(f"/replay/{name}", content=orjson.dumps(swaps[index]))
        rows = response.json() if response.status_code == 200 else []
        if rows and all(row.get("transaction_id", expected[index]) == expected[index] for row in rows):
            return None
        return f"floor: wrong answer for {swaps[index]}: {response.status_code} {response.text[:300]}"

    return ask


def capture_lookups(
    settings: Settings, network_id: str, token: str, live: list[tuple[str, str]]
) -> tuple[dict[str, list[Statement]], dict[str, str]]:
    """The SQL of one lookup of each kind from an in-process server, after a warm-up; and the keys it used."""
    (transaction_id, calling), *warm = random.sample(live, 6)
    base = {"organization_type": "Network", "id": network_id}

    def queries(transaction_id: str, calling: str) -> dict[str, dict[str, str]]:
        pair = {"calling_phone_number": calling[2:], "destination_phone_number": "800-555-0100"}
        return {"by_id": base | {"transaction_id": transaction_id}, "by_pair": base | pair}

    capture, recorded = Capture(), {}
    with (
        running_server(settings) as server,
        httpx.Client(base_url=server.base_url, headers={"Authorization": token}) as client,
    ):
        for name, query in queries(transaction_id, calling).items():
            for other in warm:  # token, tenant and plan caches filled, as in the measured server
                client.get(PATH, params=queries(*other)[name]).raise_for_status()
            with capture.recording() as statements:
                client.get(PATH, params=query).raise_for_status()
            recorded[name] = statements
    return recorded, {"by_id": transaction_id, "by_pair": calling}


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.2)


def bench_backend(backend: str, args: argparse.Namespace) -> list[dict[str, object]]:
    data_dir = Path(tempfile.mkdtemp(prefix="callplane-live-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")}
    env |= {"CALLPLANE_DATA_DIR": str(data_dir), "CALLPLANE_LOG_LEVEL": "WARNING", "CALLPLANE_WORKERS_ENABLED": "false"}
    database = None
    if backend == "postgresql":
        database = f"callplane_bench_{secrets.token_hex(4)}"
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'CREATE DATABASE "{database}"'], check=True
        )
        env["CALLPLANE_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{database}"
    settings = Settings(
        environment="development",
        data_dir=data_dir,
        database_url=env.get("CALLPLANE_DATABASE_URL"),
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        upgrade(settings)
        began = time.perf_counter()
        network_id, token, live = asyncio.run(seed(settings, args.calls))
        seeded_s = time.perf_counter() - began
        if backend == "postgresql":
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database or "", "-qc", "ANALYZE"], check=True
            )
        port = free_port()
        server = subprocess.Popen(
            [*CALLPLANE, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        base = {"organization_type": "Network", "id": network_id}
        picks = [random.choice(live) for _ in range(args.requests)]
        expected = [t for t, _ in picks]
        lookups = {
            "by_id": [base | {"transaction_id": t} for t, _ in picks],
            "by_pair": [
                base | {"calling_phone_number": c[2:], "destination_phone_number": "800-555-0100"} for _, c in picks
            ],
        }
        results: dict[str, dict[str, float]] = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": token}, timeout=30) as client:
            warm = random.sample(live, min(len(live), 200))
            warm_queries = [base | {"transaction_id": t} for t, _ in warm]
            measure(asking(client, warm_queries, [t for t, _ in warm]), len(warm), server.pid)  # warm up
            for name, queries in lookups.items():
                results[name] = measure(asking(client, queries, expected), len(queries), server.pid)
        recorded, keys = capture_lookups(
            settings.model_copy(update={"workers_enabled": False, "log_level": "WARNING"}), network_id, token, live
        )
        routes = data_dir / "floor-routes.pickle"
        routes.write_bytes(pickle.dumps(recorded))
        target = (
            ["--database", env["CALLPLANE_DATABASE_URL"]] if database else ["--sqlite", str(data_dir / "callplane.db")]
        )
        floor_port = free_port()
        floor = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("replay_floor.py")), "--serve", str(routes), *target,
             "--port", str(floor_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{floor_port}/")
            with httpx.Client(base_url=f"http://127.0.0.1:{floor_port}", timeout=30) as client:
                swaps = {
                    "by_id": [{keys["by_id"]: t} for t, _ in picks],
                    "by_pair": [{keys["by_pair"]: c} for _, c in picks],
                }
                warm_swaps = [{keys["by_id"]: t} for t, _ in warm]
                measure(replaying(client, "by_id", warm_swaps, [t for t, _ in warm]), len(warm), floor.pid)
                floors = {
                    name: measure(replaying(client, name, swaps[name], expected), len(picks), floor.pid)
                    for name in lookups
                }
        finally:
            floor.terminate()
            floor.wait(timeout=30)
        rows: list[dict[str, object]] = []
        for name, test in (("by_id", "transaction id"), ("by_pair", "phone pair")):
            rows.append(
                {"backend": backend, "live calls": args.calls, "seed s": round(seeded_s, 1), "lookup": test}
                | results[name]
                | {f"floor_{key}": value for key, value in floors[name].items()}
                | {"statements": len(recorded[name]), "load": load_average()}
            )
        return rows
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        if database:
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'DROP DATABASE "{database}" WITH (FORCE)'],
                check=False,
            )
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--full", action="store_true", help="100,000 live calls, 2,000 requests per lookup")
    args = parser.parse_args()
    if args.full:
        args.calls, args.requests = 100_000, 2000
    print(load_average())
    print(
        f"{'backend':<11} {'live calls':>10} {'lookup':<15} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'req/s':>7} {'srv CPU ms/req':>14} | {'floor p50':>9} {'p99':>6} {'CPU ms/req':>10} "
        f"{'stmts':>5} {'ratio p50':>9} {'ratio CPU':>9}"
    )
    for backend in args.backends:
        for row in bench_backend(backend, args):
            print(
                f"{row['backend']:<11} {row['live calls']:>10} {row['lookup']:<15} {row['p50_ms']:>7.2f} "
                f"{row['p90_ms']:>7.2f} {row['p99_ms']:>7.2f} {row['max_ms']:>7.2f} {row['per_second']:>7.0f} "
                f"{row['server_cpu_ms']:>14.2f} | {row['floor_p50_ms']:>9.2f} {row['floor_p99_ms']:>6.2f} "
                f"{row['floor_server_cpu_ms']:>10.2f} {row['statements']:>5} "
                f"{ratio(row['floor_p50_ms'], row['p50_ms']):>9} "  # type: ignore[arg-type]
                f"{ratio(row['floor_server_cpu_ms'], row['server_cpu_ms']):>9}"  # type: ignore[arg-type]
                f"   (seeded in {row['seed s']} s; {row['load']})"
            )


if __name__ == "__main__":
    main()
