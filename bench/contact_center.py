"""The contact-center call API and its queue loop under a long queue, on SQLite and PostgreSQL.

Starts a real server on loopback (no engine: nothing is dialed), builds a contact center through the admin API
(one menu whose only agent is unavailable), then measures, one request at a time:
- `POST /apps/api/v1/calls` (Voice Inbound) while the queue grows to `--calls` calls (each a real insert: call,
  core Call, end user, participant), the latencies of the first and of the last 10 %;
- `GET /apps/api/v1/calls/{id}`, `GET /apps/api/v1/calls?per=100` and `GET /apps/api/v1/wait_times` with the queue full;
- one pass of the runtime's loop (fire due scheduled calls + dispatch) over that queue when no agent can take a
  call: what every engine process pays each `CALLPLANE_CONTACT_CENTER_POLL_SECONDS`.

The floor, in the same run on the same database right after: `bench/replay_floor.py`, a minimal Starlette app in
this process (as callplane's server is) replaying the SQL callplane sent for one request of each kind (recorded
then), with fresh keys for the rows it writes, over the same HTTP client; each request's latency beside
callplane's, and the ratio of the p50s (floor / callplane: 1.00 = callplane costs no more than its own SQL). The
loop pass's floor is the SQL of one pass replayed straight on the database (no HTTP), as many times.

    .venv/bin/python bench/contact_center.py [--calls 200] [--backends sqlite,postgresql] [--full]  (--full: 2000)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
from benchlib import free_port, load_average, ratio
from replay_floor import Capture, Statement, floor_app, replay_times, serve_in_thread

from callplane.db.engine import create_engine, create_session_factory
from callplane.live.contact_center import ContactCenterRuntime, LegInbox
from callplane.live.control import VoiceService
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, running_server, scratch_postgres_database

ADMIN_TOKEN = "bench-admin"
COUNTS = (200, 30, 100)  # GET call, GET calls ?per=100, GET wait_times


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {p50 * 1000:7.2f} ms  p99 {p99 * 1000:7.2f} ms  (n={len(ordered)})"


def replayed(floor: httpx.Client, name: str) -> None:
    response = floor.post(f"/replay/{name}")
    assert response.status_code == 200, response.text


def beside_floor(label: str, samples: list[float], floor: list[float], statements: int) -> str:
    mine, least = statistics.median(samples), statistics.median(floor)
    return (
        f"{label}{percentiles(samples)} | floor ({statements} statements) {percentiles(floor)} "
        f"| ratio {ratio(least, mine)} | {load_average()}"
    )


def timed(work: Callable[[], Any], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return samples


@contextlib.contextmanager
def database(backend: str) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    with scratch_postgres_database(os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)) as url:
        yield url


def run(backend: str, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(backend) as url:
        settings = Settings(
            environment="test",
            data_dir=Path(tmp),
            database_url=url,
            admin_token=ADMIN_TOKEN,
            log_level="WARNING",
            workers_enabled=False,
        )
        with running_server(settings) as server:
            admin = Admin(server.base_url, ADMIN_TOKEN)
            account = admin.network()
            base = f"/accounts/{account.account_id}/contact-center"
            admin.post(f"{base}/outbound-numbers", {"number": "+1 339-219-5276"})
            agent = admin.post(f"{base}/agents", {"email": "a@x.io", "endpoint_user": "a", "endpoint_host": "h"})
            menu = admin.post(f"{base}/menus", {"name": "Support", "agent_ids": [agent["id"]]})["id"]
            auth = httpx.BasicAuth("bench", account.token)
            with httpx.Client(base_url=server.base_url, auth=auth, timeout=30) as api:
                body = {"call_type": "Voice Inbound (API)", "menu_id": menu, "end_user_number": "+1 859-657-9625"}
                ids: list[int] = []

                def create() -> None:
                    response = api.post("/apps/api/v1/calls", json=body)
                    assert response.status_code == 201, response.text
                    ids.append(response.json()["id"])

                accepted = timed(create, calls)
                one = ids[len(ids) // 2]
                requests: dict[str, Callable[[], Any]] = {
                    "get": lambda: api.get(f"/apps/api/v1/calls/{one}"),
                    "list": lambda: api.get("/apps/api/v1/calls", params={"per": 100}),
                    "wait_times": lambda: api.get("/apps/api/v1/wait_times"),
                }
                mine = {name: timed(requests[name], count) for name, count in zip(requests, COUNTS, strict=True)}
                capture, recorded = Capture(), {}
                for name, request in {"create": create, **requests}.items():
                    with capture.recording() as statements:
                        request()
                    recorded[name] = statements
            admin.client.close()

        async def passes() -> tuple[list[float], list[Statement]]:
            engine = create_engine(settings)
            try:
                # Nothing is dialed when no agent is available, so the loop needs no engine here.
                runtime = ContactCenterRuntime(
                    sessions=create_session_factory(engine), voice=cast(VoiceService, None), legs=LegInbox()
                )
                samples = []
                for _ in range(50):
                    started = time.perf_counter()
                    await runtime.fire_due()
                    await runtime.dispatch()
                    samples.append(time.perf_counter() - started)
                with Capture().recording() as statements:
                    await runtime.fire_due()
                    await runtime.dispatch()
                return samples, statements
            finally:
                await engine.dispose()

        loop, loop_sql = asyncio.run(passes())
        # the floor last (its reads before its writes): the calls it queues would lengthen the queue read
        sqlite_path = None if url else Path(tmp) / "callplane.db"
        loop_floor = asyncio.run(replay_times(loop_sql, url, sqlite_path, len(loop)))
        port = free_port()
        with (
            serve_in_thread(floor_app(recorded, url, sqlite_path), port) as floor_url,
            httpx.Client(base_url=floor_url, timeout=30) as floor,
        ):
            least = {name: timed(functools.partial(replayed, floor, name), count)
                     for name, count in zip([*requests, "create"], [*COUNTS, calls], strict=True)}  # fmt: skip
        tenth = max(1, calls // 10)
        print(f"[{backend}] POST inbound call, first {tenth}:  {percentiles(accepted[:tenth])}")
        print(f"[{backend}] POST inbound call, last {tenth}:   {percentiles(accepted[-tenth:])}")
        print(
            beside_floor(
                f"[{backend}] POST inbound call, all:      ", accepted, least["create"], len(recorded["create"])
            )
        )
        for name, label in (("get", "GET call:                "), ("list", "GET calls ?per=100:      "),
                            ("wait_times", "GET wait_times:          ")):  # fmt: skip
            print(beside_floor(f"[{backend}] {label}  ", mine[name], least[name], len(recorded[name])))
        print(beside_floor(f"[{backend}] loop pass, {calls} queued, no agent: ", loop, loop_floor, len(loop_sql)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--full", action="store_true", help="2000 calls in the queue")
    args = parser.parse_args()
    if args.full:
        args.calls = 2000
    print(load_average())
    for backend in args.backends.split(","):
        run(backend, args.calls)


if __name__ == "__main__":
    main()
