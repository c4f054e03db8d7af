"""A processed or failed call reaches the tenant's webhook endpoint (signed) and the batch callback outbox."""

from __future__ import annotations

import asyncio
import http.server
import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callplane.core.webhooks.models import Delivery
from callplane.core.webhooks.signing import verify
from callplane.db.engine import create_engine, create_session_factory
from tests.pipeline.conftest import FileServer, Pipeline, wait_for_outcome


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self, call_id: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        found = []
        for headers, body in self.received:
            parsed = json.loads(body)
            if parsed["data"].get("call_id") == call_id:
                found.append((headers, parsed))
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def _wait(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_signed_webhooks_for_processed_and_failed_calls(
    pipeline: Pipeline, files: FileServer, receiver: Receiver
) -> None:
    network = pipeline.admin.network()
    headers = {"Authorization": f"Bearer {network.token}"}
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        created = client.post("/v1/webhook-endpoints", headers=headers, json={"url": receiver.url})
        assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
        secret = created.json()["secret"]
        listed = client.get("/v1/webhook-endpoints", headers=headers).json()["webhook_endpoints"]
        assert [e["id"] for e in listed] == [created.json()["id"]] and "secret" not in listed[0]
        outcomes = {}
        for name, recording in (("ok", files.url("stereo.wav")), ("bad", files.url("mono.wav"))):
            response = client.post(
                "/api/2022-03-01/calls.json",
                headers={"Authorization": network.token},
                json={
                    "call": {
                        "external_call_unique_id": f"{name}-{secrets.token_hex(4)}",
                        "start_time": 1460404800,
                        "destination_phone_number": 9093900003,
                        "calling_phone_number": 8779257384,
                        "advertiser_campaign_id_from_network": 86,
                        "call_direction": "inbound",
                        "recording_url": recording,
                    }
                },
            )
            call_id = response.json()["cuid"]
            outcomes[name] = call_id
            wait_for_outcome(client, network.token, call_id)
    _wait(lambda: receiver.events(outcomes["ok"]) and receiver.events(outcomes["bad"]))
    [(ok_headers, ok_event)] = receiver.events(outcomes["ok"])
    [(_, bad_event)] = receiver.events(outcomes["bad"])
    assert ok_event["type"] == "call.processed" and ok_event["data"]["status"] == "completed"
    assert bad_event["type"] == "call.processing_failed" and "dual-channel" in bad_event["data"]["error"]
    raw = next(body for h, body in receiver.received if h is ok_headers)
    verify(secret, ok_headers, raw)  # raises if the signature is wrong


def test_batch_callback_is_queued_with_the_documented_shape(pipeline: Pipeline, files: FileServer) -> None:
    partner = pipeline.admin.partner()
    call_external_id = secrets.token_hex(5)
    item = {
        "call": {
            "id": call_external_id,
            "recording_url": files.url("stereo.wav"),
            "start_time": "2023-01-01T10:00:00Z",
            "end_time": "2023-01-01T10:00:03Z",
            "contact_number": "+1234567890",
        },
        "callback_url": "https://127.0.0.3/callback",
        "metadata": {"campaign": "Q1", "n": 3},
    }
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        assert client.post("/partner/ingest/batch-call", headers=partner.headers, json={"data": [item]}).json() == {
            "success": True
        }
        [listed] = client.get("/v1/calls", headers={"Authorization": f"Bearer {partner.token}"}).json()["calls"]
        assert wait_for_outcome(client, partner.token, listed["id"])["status"] == "completed"

    async def callbacks() -> list[Delivery]:
        engine = create_engine(pipeline.server.settings)
        try:
            async with create_session_factory(engine)() as session:
                return list(await session.scalars(select(Delivery).where(Delivery.call_id == listed["id"])))
        finally:
            await engine.dispose()

    [callback] = asyncio.run(callbacks())
    assert callback.kind == "callback" and callback.url == "https://127.0.0.3/callback"
    assert callback.max_attempts == 4  # the first try and 3 retries
    payload = callback.payload
    assert set(payload) == {"call_id", "status", "processing_time", "error", "results", "metadata"}
    assert payload["call_id"] == call_external_id and payload["status"] == "completed" and payload["error"] is None
    assert payload["results"] == {"transcription_available": False, "analytics_available": False}
    assert payload["metadata"] == {"campaign": "Q1", "n": 3}
    assert isinstance(payload["processing_time"], float)
