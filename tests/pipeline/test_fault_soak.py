"""Fault soak: `callplane serve` (API + in-process pipeline and delivery workers) is killed with SIGKILL three times,
at random points of a seeded schedule, while clients submit Invoca single calls and Zipteams batches, the pipeline
fetches and normalizes their recordings, and webhooks and batch callbacks go out. On SQLite and PostgreSQL.

What must hold afterwards (issue 12), checked in the database and at the receiver:
- every call the clients planned was acknowledged (2xx) in the end: a request cut off by a kill, or refused while the
  server was down, is sent again, as a real client does; ingestion is idempotent on the external id;
- every acknowledged call exists exactly once (Invoca: under the `cuid` it was acknowledged with);
- it reached a terminal status exactly once: status `completed`, one job that succeeded, and exactly one terminal
  event (`call.processed`) in its history;
- it produced exactly one terminal webhook, and a batch call exactly one callback.

"Exactly one terminal webhook" under at-least-once delivery (docs/webhooks.md): the platform produces one terminal
*event* per call, i.e. one delivery row per endpoint, whose id is the `webhook-id` header of every attempt. A kill
between the POST and the write of its result re-sends the same delivery with the same `webhook-id`, so a receiver may
see one event more than once; receivers dedupe on `webhook-id`, and so does this test: per call, the set of distinct
`webhook-id`s of accepted terminal webhooks must be exactly {that delivery's id}, and `call.received` likewise. How
many requests repeated an id is printed, not asserted. A few first attempts are answered 503 (seeded), so the retry
path runs under the kills too.

Bounded: transcription is off (the stage records why and the call still completes), the recording is a real 2 s
stereo WAV from a loopback HTTP server, and the sizes below are counts, not durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import random
import socket
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callplane.core.calls.models import Call
from callplane.core.events.models import Event
from callplane.core.jobs.models import Job
from callplane.core.webhooks.models import Delivery
from callplane.core.webhooks.signing import verify
from callplane.db.engine import create_engine
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from callplane.testing.soak import NotificationReceiver, ServeProcess, loopback_certificate
from tests.pipeline.conftest import make_tone

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fault_soak")]  # one soak at a time

SEED = 20261207
INVOCA_CALLS = 40  # with 4 batches of 10: 80 calls, about 2 minutes a database on a loaded 2-core CI machine
BATCHES = 4
BATCH_SIZE = 10
CLIENTS = 4
DRAIN_TIMEOUT_S = 150
ADMIN_TOKEN = "soak-admin"


@dataclass
class Submission:
    kind: str  # "invoca" or "batch"
    external_ids: list[str]
    body: dict[str, Any]


@dataclass
class Ledger:
    """What the clients saw; shared by the client threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    cuids: dict[str, str] = field(default_factory=dict)  # Invoca external id -> cuid acknowledged
    batch_acknowledged: set[str] = field(default_factory=set)
    acknowledged: int = 0  # submissions
    cut_off: Counter[str] = field(default_factory=Counter)  # transport errors, 5xx and 429 by kind: sent again
    unexpected: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[str]:
    """The recording every call points at: a real stereo WAV over loopback HTTP."""
    root = tmp_path / "origin"
    root.mkdir()
    make_tone(root / "call.wav", left_hz=440, right_hz=1000, seconds=2.0)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/call.wav"
    server.shutdown()
    server.server_close()


def _plan(rng: random.Random, recording_url: str, callback_url: str, campaign: str) -> list[Submission]:
    plan = [
        Submission(
            "invoca",
            [f"inv-{index}"],
            {
                "call": {
                    "external_call_unique_id": f"inv-{index}",
                    "start_time": 1460404800 + index,
                    "destination_phone_number": 9093900003,
                    "calling_phone_number": 8779257384,
                    "advertiser_campaign_id_from_network": campaign,
                    "call_direction": rng.choice(["inbound", "outbound"]),
                    "recording_url": recording_url,
                }
            },
        )
        for index in range(INVOCA_CALLS)
    ]
    for batch in range(BATCHES):
        ids = [f"bat-{batch}-{item}" for item in range(BATCH_SIZE)]
        plan.append(
            Submission(
                "batch",
                ids,
                {
                    "data": [
                        {
                            "call": {
                                "id": external_id,
                                "recording_url": recording_url,
                                "start_time": "2023-01-01T10:00:00Z",
                                "end_time": "2023-01-01T10:00:02Z",
                                "contact_number": "+1234567890",
                            },
                            "agent": {"id": "a1"},
                            "customer": {"id": "c1"},
                            "callback_url": callback_url,
                            "metadata": {"batch": batch},
                        }
                        for external_id in ids
                    ]
                },
            )
        )
    rng.shuffle(plan)
    return plan


def _client(base_url: str, pending: deque[Submission], headers: dict[str, dict[str, str]], ledger: Ledger) -> None:
    """Send submissions until none is left; what the server did not acknowledge goes back in the queue."""
    with httpx.Client(base_url=base_url, timeout=15) as client:
        while True:
            with ledger.lock:
                if not pending:
                    return
                submission = pending.popleft()
            failure = ""
            path = "/api/2022-03-01/calls.json" if submission.kind == "invoca" else "/partner/ingest/batch-call"
            try:
                response = client.post(path, headers=headers[submission.kind], json=submission.body)
            except httpx.TransportError as error:
                response = None
                failure = type(error).__name__
            with ledger.lock:
                refused = _record(ledger, submission, response, failure)
                if refused:
                    pending.append(submission)
            # a steady stream, so the first two kills land while submissions still arrive
            time.sleep(0.2 if refused else 0.1)


def _record(ledger: Ledger, submission: Submission, response: httpx.Response | None, failure: str) -> bool:
    """Note the server's answer; True when it was cut off or refused (the submission goes back in the queue)."""
    if response is not None and response.is_success:
        ledger.acknowledged += 1
        if submission.kind == "invoca":
            ledger.cuids[submission.external_ids[0]] = response.json()["cuid"]
        else:
            assert response.json() == {"success": True}, response.text
            ledger.batch_acknowledged.update(submission.external_ids)
        return False
    if response is not None and response.status_code < 500 and response.status_code != 429:
        ledger.unexpected.append(f"{submission.external_ids[0]}: {response.status_code} {response.text}")
        return False
    ledger.cut_off[failure if response is None else str(response.status_code)] += 1
    return True


@dataclass
class Snapshot:
    calls: list[Any]
    jobs: list[Any]
    events: list[Any]
    deliveries: list[Any]


def _snapshot(settings: Settings, account_ids: list[str]) -> Snapshot:
    async def read() -> Snapshot:
        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:

                async def rows(statement: Any) -> list[Any]:
                    return list((await connection.execute(statement)).all())

                c, j, e, d = Call.__table__.c, Job.__table__.c, Event.__table__.c, Delivery.__table__.c
                return Snapshot(
                    calls=await rows(
                        select(c.id, c.account_id, c.origin, c.external_id, c.status).where(
                            c.account_id.in_(account_ids)
                        )
                    ),
                    jobs=await rows(
                        select(j.call_id, j.status, j.attempts, j.max_attempts).where(j.account_id.in_(account_ids))
                    ),
                    events=await rows(select(e.call_id, e.type).where(e.account_id.in_(account_ids))),
                    deliveries=await rows(
                        select(d.id, d.call_id, d.kind, d.event_type, d.status, d.attempts).where(
                            d.account_id.in_(account_ids)
                        )
                    ),
                )
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _drained(snapshot: Snapshot, receiver: NotificationReceiver, expected_calls: int) -> bool:
    accepted = {r.webhook_id for r in receiver.accepted()}
    return (
        len(snapshot.calls) >= expected_calls
        and all(call.status in ("completed", "failed") for call in snapshot.calls)
        and all(job.status in ("succeeded", "failed") for job in snapshot.jobs)
        and all(d.status != "pending" for d in snapshot.deliveries)
        and all(d.id in accepted for d in snapshot.deliveries if d.status == "delivered")
    )


def _one(values: list[Any]) -> Any:
    assert len(values) == 1, values
    return values[0]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sigkill_three_times_under_load_loses_and_duplicates_nothing(
    database: str, tmp_path: Path, origin: str
) -> None:
    rng = random.Random(f"{SEED}-{database}")
    cert_pem, key_pem = loopback_certificate(tmp_path)
    data_dir = tmp_path / "data"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")} | {
        "CALLPLANE_ENVIRONMENT": "test",
        "CALLPLANE_DATA_DIR": str(data_dir),
        "CALLPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
        "CALLPLANE_LOG_LEVEL": "WARNING",
        "CALLPLANE_WORKERS_ENABLED": "true",
        "CALLPLANE_TRANSCRIPTION_ENABLED": "false",
        "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "CALLPLANE_WORKER_POLL_SECONDS": "0.05",
        "CALLPLANE_JOB_LEASE_SECONDS": "3",
        "CALLPLANE_JOB_BACKOFF_BASE_SECONDS": "0.1",
        "CALLPLANE_JOB_BACKOFF_CAP_SECONDS": "0.5",
        "CALLPLANE_DELIVERY_POLL_SECONDS": "0.05",
        "CALLPLANE_DELIVERY_TIMEOUT_SECONDS": "2",
        "CALLPLANE_DELIVERY_LEASE_SECONDS": "3",
        "CALLPLANE_DELIVERY_BACKOFF_BASE_SECONDS": "0.1",
        "CALLPLANE_DELIVERY_BACKOFF_CAP_SECONDS": "0.5",
        "SSL_CERT_FILE": str(cert_pem),  # the delivery worker trusts the loopback receiver's certificate
    }
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(NotificationReceiver(cert_pem, key_pem, seed=SEED, refuse_first_per_mille=50))
        database_url = None
        if database == "postgresql":
            admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
            database_url = stack.enter_context(scratch_postgres_database(admin_url))
            environment["CALLPLANE_DATABASE_URL"] = database_url
        settings = Settings(environment="test", data_dir=data_dir, database_url=database_url)
        serve = ServeProcess(environment, _free_port(), tmp_path / "serve.log")
        stack.callback(serve.stop)
        serve.start()
        _soak(serve, receiver, settings, origin, rng)


def _soak(
    serve: ServeProcess, receiver: NotificationReceiver, settings: Settings, origin: str, rng: random.Random
) -> None:
    admin = Admin(serve.base_url, ADMIN_TOKEN)
    network = admin.network()
    partner = admin.partner(rate_limit_per_minute=100_000)
    admin.client.close()
    secrets_by_account: dict[str, str] = {}
    for account_id, token in ((network.account_id, network.token), (partner.account_id, partner.token)):
        created = httpx.post(
            f"{serve.base_url}/v1/webhook-endpoints",
            headers={"Authorization": f"Bearer {token}"},
            json={"url": f"{receiver.base_url}/hooks/{account_id}"},
        )
        assert created.status_code == 201, created.text
        secrets_by_account[account_id] = created.json()["secret"]

    plan = _plan(rng, origin, f"{receiver.base_url}/callbacks", network.campaign_external_id)
    total_calls = INVOCA_CALLS + BATCHES * BATCH_SIZE
    pending = deque(plan)
    ledger = Ledger()
    headers = {"invoca": {"Authorization": network.token}, "batch": partner.headers}
    clients = [
        threading.Thread(target=_client, args=(serve.base_url, pending, headers, ledger), daemon=True)
        for _ in range(CLIENTS)
    ]
    started = time.monotonic()
    for thread in clients:
        thread.start()

    # Kill points: two while submissions are arriving (a random share of them acknowledged), one after the last
    # submission while the workers are still busy (a random share of the terminal webhooks received).
    kill_log: list[str] = []
    for kill, (low, high) in enumerate([(0.15, 0.4), (0.55, 0.8), (0.5, 0.9)]):
        share = rng.uniform(low, high)
        deadline = time.monotonic() + 120
        while True:
            with ledger.lock:
                acknowledged = ledger.acknowledged
            terminal = receiver.distinct_accepted("call.processed")
            if kill < 2 and acknowledged >= share * len(plan):
                break
            if kill == 2 and acknowledged == len(plan) and terminal >= share * total_calls:
                break
            assert time.monotonic() < deadline, f"no progress before kill {kill + 1}"
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.3))
        serve.kill()
        kill_log.append(f"kill {kill + 1} at {time.monotonic() - started:.1f}s: {acknowledged}/{len(plan)} submissions")
        restart = time.monotonic()
        serve.start()
        kill_log.append(f"  ready again after {time.monotonic() - restart:.1f}s")
    for thread in clients:
        thread.join(timeout=120)
    kill_log.append(f"clients done at {time.monotonic() - started:.1f}s")
    assert not ledger.unexpected, ledger.unexpected
    assert ledger.acknowledged == len(plan)

    account_ids = [network.account_id, partner.account_id]
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    snapshot = _snapshot(settings, account_ids)
    while not _drained(snapshot, receiver, total_calls) and time.monotonic() < deadline:
        time.sleep(1)
        snapshot = _snapshot(settings, account_ids)
    accepted = receiver.accepted()
    print(
        *kill_log,
        f"{time.monotonic() - started:.1f}s in all",
        f"requests cut off or refused, then sent again: {dict(ledger.cut_off)}; "
        f"{len(receiver.receipts()) - len(accepted)} first attempts refused by the receiver; "
        f"{receiver.redelivered()} accepted requests repeated a webhook-id; "
        f"job attempts {sorted(Counter(job.attempts for job in snapshot.jobs).items())}",
        sep="\n",
    )

    # Exactly once: every planned call exists once, Invoca calls under the cuid they were acknowledged with.
    assert ledger.cut_off.total() > 0  # the kills did cut requests off
    assert set(ledger.cuids) == {f"inv-{index}" for index in range(INVOCA_CALLS)}
    assert len(ledger.batch_acknowledged) == BATCHES * BATCH_SIZE
    by_key: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for call in snapshot.calls:
        by_key[(call.account_id, call.external_id)].append(call)
    assert len(snapshot.calls) == total_calls, f"{len(snapshot.calls)} calls stored for {total_calls} planned"
    for external_id, cuid in ledger.cuids.items():
        assert [c.id for c in by_key[(network.account_id, external_id)]] == [cuid], external_id
    for external_id in ledger.batch_acknowledged:
        assert len(by_key[(partner.account_id, external_id)]) == 1, external_id

    # A terminal status once: completed, one job that succeeded, one terminal event.
    jobs = defaultdict(list)
    for job in snapshot.jobs:
        jobs[job.call_id].append(job)
    events: dict[str, Counter[str]] = defaultdict(Counter)
    for event in snapshot.events:
        events[event.call_id][event.type] += 1
    for call in snapshot.calls:
        assert call.status == "completed", call
        job = _one(jobs[call.id])
        assert job.status == "succeeded" and job.attempts <= job.max_attempts, job
        assert events[call.id]["call.processed"] == 1 and events[call.id]["call.processing_failed"] == 0, (
            call.id,
            events[call.id],
        )

    # One terminal webhook (and callback) produced per call, and that one is what the receiver accepted.
    deliveries: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for delivery in snapshot.deliveries:
        deliveries[(delivery.call_id, delivery.kind, delivery.event_type)].append(delivery)
    seen: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    external_to_call = {c.external_id: c.id for c in snapshot.calls if c.account_id == partner.account_id}
    for receipt in accepted:
        body = json.loads(receipt.body)
        if receipt.path == "/callbacks":
            seen[(external_to_call[body["call_id"]], "callback", body["status"])].add(receipt.webhook_id)
            continue
        account_id = receipt.path.rsplit("/", 1)[1]
        verify(secrets_by_account[account_id], receipt.headers, receipt.body)  # raises on a bad signature
        seen[(body["data"]["call_id"], "webhook", body["type"])].add(receipt.webhook_id)
    for call in snapshot.calls:
        expected = [("webhook", "call.received"), ("webhook", "call.processed")]
        if call.origin == "batch_ingest":
            expected.append(("callback", "call.processed"))
        for kind, event_type in expected:
            delivery = _one(deliveries[(call.id, kind, event_type)])
            assert delivery.status == "delivered", delivery
            received_as = "completed" if kind == "callback" else event_type
            assert seen[(call.id, kind, received_as)] == {delivery.id}, (call.id, kind, event_type)
        for kind, event_type in [("webhook", "call.processing_failed"), ("callback", "call.processing_failed")]:
            assert not deliveries[(call.id, kind, event_type)], (call.id, kind, event_type)
    assert sum(len(ids) for ids in seen.values()) == len(snapshot.deliveries)  # nothing the platform did not write
