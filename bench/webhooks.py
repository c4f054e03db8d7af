"""Webhook delivery throughput to a loopback receiver, on SQLite and PostgreSQL, beside its floor.

Enqueues ``--count`` signed webhook deliveries (one endpoint, one transaction per 500), then times
``DeliveryWorker.run_once`` loops until the outbox is empty, with 1 and with N workers in this process (each
with its own engine, as separate processes would have). The receiver is uvicorn in a separate process
answering 204 to every POST, so the figure is callplane's cost: claim, decrypt, sign, POST, record.

The floor, in the same run right after each callplane figure: a plain httpx loop (one `httpx.AsyncClient` per
worker, the same number of requests in flight: 4 per worker) POSTing the same bodies, read back from the outbox,
to the same receiver, each signed with HMAC-SHA256 like callplane's (no database, no claim, no record).

    .venv/bin/python bench/webhooks.py [--count 3000] [--workers 1,4] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from benchlib import free_port
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.models import AccountKind
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.tenancy.service import create_account
from callplane.core.webhooks import service
from callplane.core.webhooks.models import Delivery, DeliveryStatus
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.settings import Settings
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from callplane.workers.delivery import USER_AGENT, DeliveryConfig, DeliveryWorker

RECEIVER_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
"""


@contextmanager
def receiver(workdir: Path) -> Iterator[str]:
    (workdir / "bench_receiver.py").write_text(RECEIVER_APP)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench_receiver:app", "--port", str(port), "--log-level", "warning",
         "--no-access-log", "--http", "httptools", "--loop", "uvloop"],
        cwd=workdir,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.terminate()
        process.wait(timeout=10)


CONCURRENCY = 4  # requests in flight per worker, callplane's and the floor's


async def floor(url: str, bodies: list[bytes], workers: int) -> float:
    """A plain httpx loop: the same bodies to the same receiver, signed, CONCURRENCY in flight per client."""
    key = os.urandom(32)
    clients = [httpx.AsyncClient(trust_env=False) for _ in range(workers)]
    gates = [asyncio.Semaphore(CONCURRENCY) for _ in range(workers)]

    async def post(index: int, body: bytes) -> None:
        async with gates[index % workers]:
            msg_id, timestamp = f"msg_{index}", str(int(time.time()))
            digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": msg_id,
                "webhook-timestamp": timestamp,
                "webhook-signature": "v1," + base64.b64encode(digest).decode(),
            }
            response = await clients[index % workers].post(url, content=body, headers=headers)
            assert response.status_code == 204

    try:
        started = time.perf_counter()
        await asyncio.gather(*(post(index, body) for index, body in enumerate(bodies)))
        return len(bodies) / (time.perf_counter() - started)
    finally:
        for client in clients:
            await client.aclose()


async def run(settings: Settings, url: str, count: int, workers: int) -> tuple[float, float]:
    box = SecretBox(Fernet.generate_key().decode())
    engines = [create_engine(settings) for _ in range(workers)]
    factories = [create_session_factory(e) for e in engines]
    try:
        async with factories[0]() as session, session.begin():
            account = await create_account(session=session, kind=AccountKind.PARTNER, name=f"bench {time.time()}")
            await service.create_endpoint(session=session, secret_box=box, account_id=account.id, url=url)
        for start in range(0, count, 500):
            async with factories[0]() as session, session.begin():
                for i in range(start, min(count, start + 500)):
                    await service.enqueue_event(
                        session=session,
                        account_id=account.id,
                        event_type="call.completed",
                        payload={"call_id": f"call-{i}", "status": "completed", "processing_time": 45.2},
                    )
        config = DeliveryConfig(batch_size=32, concurrency=CONCURRENCY)
        policy = TargetPolicy.from_config(["127.0.0.1/32"])

        async def drain(sessions: async_sessionmaker[AsyncSession]) -> None:
            async with DeliveryWorker(sessions=sessions, secret_box=box, policy=policy, config=config) as worker:
                while await worker.run_once():
                    pass

        started = time.perf_counter()
        await asyncio.gather(*(drain(f) for f in factories))
        elapsed = time.perf_counter() - started
        async with factories[0]() as session:
            delivered = await session.scalar(
                select(func.count()).where(
                    Delivery.account_id == account.id, Delivery.status == DeliveryStatus.DELIVERED
                )
            )
        assert delivered == count, f"only {delivered} of {count} delivered"
        async with factories[0]() as session:
            payloads = (await session.scalars(select(Delivery.payload).where(Delivery.account_id == account.id))).all()
        bodies = [json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() for payload in payloads]
        return count / elapsed, await floor(url, bodies, workers)
    finally:
        for engine in engines:
            await engine.dispose()


@contextmanager
def database(backend: str, data_dir: Path) -> Iterator[Settings]:
    if backend == "sqlite":
        settings = Settings(environment="test", data_dir=data_dir, log_level="WARNING")
        upgrade(settings)
        yield settings
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url:
        settings = Settings(environment="test", data_dir=data_dir, database_url=url, log_level="WARNING")
        upgrade(settings)
        yield settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}")
    print(
        f"{'backend':<11} {'workers':>7} {'deliveries':>10} {'callplane/s':>11} {'floor/s':>8} {'ratio':>6} {'load':>5}"
    )
    with tempfile.TemporaryDirectory() as tmp, receiver(Path(tmp)) as url:
        for backend in args.backends.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                with database(backend, Path(tmp) / f"{backend}-{workers}") as settings:
                    rate, floor_rate = asyncio.run(run(settings, url, args.count, workers))
                print(
                    f"{backend:<11} {workers:>7} {args.count:>10} {rate:>11.0f} {floor_rate:>8.0f} "
                    f"{rate / floor_rate:>6.2f} {os.getloadavg()[0]:>5.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
