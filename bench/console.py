"""The console's call list with 100,000 calls: server time of its first page (goal: < 300 ms), per filter.

    .venv/bin/python bench/console.py [--calls 100000] [--runs 30] [--backends sqlite postgresql]

For each backend: migrates a fresh database, stores ``--calls`` calls of one tenant (one campaign, a fifth of them
with a detected signal, mixed statuses), starts the server in this process, signs in to the console with the
tenant's token and with the admin token, and requests ``/console/calls`` (the first page, 50 calls) unfiltered and
with each filter ``--runs`` times, one at a time. The time is the server's own (the request log's ``ms``: routing,
the session check, the queries, the template), not the client's. Prints p50 / p99 in ms and the load average.

The floor, same run: the SQL one such request sent (recorded with `replay_floor.Capture`), replayed straight on the
same database ``--runs`` times (asyncpg / sqlite3, no HTTP, no session, no ORM, no template): the ratio floor/server
is what the console costs around its own queries; the statement count is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import re
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from benchlib import load_average, percentile
from replay_floor import Capture, replay_times
from sqlalchemy import insert

from callplane.core.calls.models import Call, CallSignal
from callplane.db.base import new_id
from callplane.db.engine import create_engine
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.server import running_server, scratch_postgres_database

ADMIN_TOKEN = "bench-console-admin"
PAGES = {
    "all calls": "/console/calls",
    "status=failed": "/console/calls?status=failed",
    "signal=Sale": "/console/calls?signal=Sale",
    "campaign=86": "/console/calls?campaign=86",
    "number": "/console/calls?number=%2B18005550042",
    "started this week": "/console/calls?started_from={week_ago}",
}


class ServerTimes(logging.Handler):
    """The request log's server-side milliseconds per request path."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {})
        if fields.get("path", "").startswith("/console/calls"):
            self.times.append(float(fields["ms"]))


async def seed(settings: Settings, account_id: str, campaign_id: str, count: int) -> None:
    engine = create_engine(settings)
    now = datetime.now(UTC)
    rng = random.Random(7)
    async with engine.begin() as connection:
        for start in range(0, count, 5000):
            calls, signals = [], []
            for index in range(start, min(count, start + 5000)):
                call_id = new_id()
                at = now - timedelta(seconds=index * 30)
                calls.append(
                    {
                        "id": call_id,
                        "account_id": account_id,
                        "campaign_id": campaign_id,
                        "origin": "single_ingest",
                        "status": rng.choice(["completed", "completed", "completed", "failed", "queued"]),
                        "direction": rng.choice(["inbound", "outbound"]),
                        "from_e164": f"+1800555{index % 10000:04d}",
                        "to_e164": "+19093900003",
                        "started_at": at,
                        "received_at": at,
                        "updated_at": at,
                        "duration_ms": rng.randrange(10_000, 600_000),
                        "agent": {},
                        "customer": {},
                        "call_metadata": {},
                        "extras": {},
                    }
                )
                if index % 5 == 0:
                    signals.append({"id": new_id(), "call_id": call_id, "account_id": account_id, "name": "Sale"})
            await connection.execute(insert(Call), calls)
            await connection.execute(insert(CallSignal), signals)
    await engine.dispose()


def sign_in(client: httpx.Client, token: str) -> None:
    form = client.get("/console/login")
    match = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert match is not None
    origin = str(client.base_url).rstrip("/")
    answer = client.post(
        "/console/login",
        data={"token": token, "csrf": match[1], "next": "/console/calls"},
        headers={"Origin": origin},
    )
    assert answer.status_code == 303, answer.text


def measure(
    base_url: str, token: str, times: ServerTimes, runs: int, database_url: str | None, sqlite_path: Path
) -> None:
    week_ago = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    with httpx.Client(base_url=base_url, timeout=120) as client:
        sign_in(client, token)
        for name, path in PAGES.items():
            client.get(path.format(week_ago=week_ago))  # warm: the first request compiles the template
            times.times.clear()
            for _ in range(runs):
                answer = client.get(path.format(week_ago=week_ago))
                assert answer.status_code == 200, (path, answer.status_code)
            p50, p99 = percentile(times.times, 0.5), percentile(times.times, 0.99)
            with Capture().recording() as statements:
                client.get(path.format(week_ago=week_ago))
            floor = [1000 * s for s in asyncio.run(replay_times(list(statements), database_url, sqlite_path, runs))]
            f50, f99 = percentile(floor, 0.5), percentile(floor, 0.99)
            print(
                f"    {name:<18} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms | floor ({len(statements)} statements) "
                f"p50 {f50:6.1f} ms   p99 {f99:6.1f} ms | floor/server p50 {f50 / p50:.2f}"
            )


def run(backend: str, calls: int, runs: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    sqlite_path = data_dir / "callplane.db"  # the embedded default's file (used when there is no database URL)

    def on(database_url: str | None) -> None:
        settings = Settings(
            environment="test",
            data_dir=data_dir,
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            log_level="INFO",
            workers_enabled=False,
        )
        times = ServerTimes()
        logging.getLogger("callplane.http").addHandler(times)
        logging.getLogger("callplane.http").setLevel(logging.INFO)
        with running_server(settings) as server:
            admin = Admin(server.base_url, ADMIN_TOKEN)
            network = admin.network()
            started = time.perf_counter()
            asyncio.run(seed(settings, network.account_id, network.campaign_id, calls))
            print(f"{backend}: {calls:,} calls stored in {time.perf_counter() - started:.0f} s ({load_average()})")
            print("  tenant token:")
            measure(server.base_url, network.token, times, runs, database_url, sqlite_path)
            print("  admin token (every account):")
            measure(server.base_url, ADMIN_TOKEN, times, runs, database_url, sqlite_path)
            print(f"  ({load_average()})")
            admin.client.close()
        logging.getLogger("callplane.http").removeHandler(times)

    if backend == "sqlite":
        on(None)
    else:
        with scratch_postgres_database() as url:
            on(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    arguments = parser.parse_args()
    for backend in arguments.backends:
        run(backend, arguments.calls, arguments.runs)


if __name__ == "__main__":
    main()
