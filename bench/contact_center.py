"""The contact-center call API and its queue loop under a long queue, on SQLite and PostgreSQL.

Starts a real server on loopback (no engine: nothing is dialed), builds a contact center through the admin API
(one menu whose only agent is unavailable), then measures, one request at a time:
- `POST /apps/api/v1/calls` (Voice Inbound) while the queue grows to `--calls` calls (each a real insert: call,
  core Call, end user, participant), the latencies of the first and of the last 10 %;
- `GET /apps/api/v1/calls/{id}`, `GET /apps/api/v1/calls?per=100` and `GET /apps/api/v1/wait_times` with the queue full;
- one pass of the runtime's loop (fire due scheduled calls + dispatch) over that queue when no agent can take a
  call: what every engine process pays each `CALLPLANE_CONTACT_CENTER_POLL_SECONDS`.

    .venv/bin/python bench/contact_center.py [--calls 2000] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx

from callplane.db.engine import create_engine, create_session_factory
from callplane.live.contact_center import ContactCenterRuntime
from callplane.live.control import VoiceService
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, running_server, scratch_postgres_database

ADMIN_TOKEN = "bench-admin"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {p50 * 1000:7.2f} ms  p99 {p99 * 1000:7.2f} ms  (n={len(ordered)})"


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
        settings = Settings(  # type: ignore[call-arg]
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
                tenth = max(1, calls // 10)
                print(f"[{backend}] POST inbound call, first {tenth}:  {percentiles(accepted[:tenth])}")
                print(f"[{backend}] POST inbound call, last {tenth}:   {percentiles(accepted[-tenth:])}")
                one = ids[len(ids) // 2]
                got = timed(lambda: api.get(f"/apps/api/v1/calls/{one}"), 200)
                print(f"[{backend}] GET call:                   {percentiles(got)}")
                listed = timed(lambda: api.get("/apps/api/v1/calls", params={"per": 100}), 30)
                print(f"[{backend}] GET calls ?per=100:         {percentiles(listed)}")
                waits = timed(lambda: api.get("/apps/api/v1/wait_times"), 100)
                print(f"[{backend}] GET wait_times:             {percentiles(waits)}")
            admin.client.close()

        async def passes() -> list[float]:
            engine = create_engine(settings)
            try:
                # Nothing is dialed when no agent is available, so the loop needs no engine here.
                runtime = ContactCenterRuntime(sessions=create_session_factory(engine), voice=cast(VoiceService, None))
                samples = []
                for _ in range(50):
                    started = time.perf_counter()
                    await runtime.fire_due()
                    await runtime.dispatch()
                    samples.append(time.perf_counter() - started)
                return samples
            finally:
                await engine.dispose()

        print(f"[{backend}] loop pass, {calls} queued, no agent: {percentiles(asyncio.run(passes()))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        run(backend, args.calls)


if __name__ == "__main__":
    main()
