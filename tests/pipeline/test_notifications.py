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
        self.fail_next = 0  # answer 503 to this many requests first: "down, then up"
        self.refused = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    receiver.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
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
    _wait(lambda: len(receiver.events(outcomes["ok"])) == 2 and len(receiver.events(outcomes["bad"])) == 2)
    # Deliveries are sent concurrently, so they may arrive in any order: look them up by type.
    ok_by_type = {event["type"]: (headers, event) for headers, event in receiver.events(outcomes["ok"])}
    bad_by_type = {event["type"]: event for _, event in receiver.events(outcomes["bad"])}
    assert set(ok_by_type) == {"call.received", "call.processed"}
    assert set(bad_by_type) == {"call.received", "call.processing_failed"}
    ok_headers, ok_event = ok_by_type["call.processed"]
    bad_event = bad_by_type["call.processing_failed"]
    assert ok_event["data"]["status"] == "completed"
    assert "dual-channel" in bad_event["data"]["error"]
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
    # A tone has no speech: its transcript exists (empty); the partner defines no signals, so no analytics.
    assert payload["results"] == {"transcription_available": True, "analytics_available": False}
    assert payload["metadata"] == {"campaign": "Q1", "n": 3}
    assert isinstance(payload["processing_time"], float)


def test_receiver_down_then_up_gets_each_event_once_and_failed_ones_can_be_redelivered(
    pipeline: Pipeline, files: FileServer, receiver: Receiver
) -> None:
    network = pipeline.admin.network()
    headers = {"Authorization": f"Bearer {network.token}"}
    receiver.fail_next = 3
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        client.post(
            "/v1/webhook-endpoints", headers=headers, json={"url": receiver.url, "event_types": ["call.processed"]}
        ).raise_for_status()
        response = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token},
            json={
                "call": {
                    "external_call_unique_id": secrets.token_hex(4),
                    "start_time": 1460404800,
                    "destination_phone_number": 9093900003,
                    "calling_phone_number": 8779257384,
                    "advertiser_campaign_id_from_network": 86,
                    "call_direction": "inbound",
                    "recording_url": files.url("stereo.wav"),
                }
            },
        )
        call_id = response.json()["cuid"]
        wait_for_outcome(client, network.token, call_id)
        _wait(lambda: receiver.events(call_id))
        time.sleep(0.5)  # any duplicate would arrive within the tiny test backoff
        [(first_headers, event)] = receiver.events(call_id)
        assert event["type"] == "call.processed" and receiver.refused == 3
        [delivery] = client.get("/v1/webhook-deliveries", headers=headers, params={"call_id": call_id}).json()[
            "deliveries"
        ]
        assert delivery["status"] == "delivered" and delivery["attempts"] == 4
        again = client.post(f"/v1/webhook-deliveries/{delivery['id']}/redeliver", headers=headers)
        assert again.status_code == 200
        _wait(lambda: len(receiver.events(call_id)) == 2)
        second_headers = receiver.events(call_id)[1][0]
        assert second_headers["webhook-id"] == first_headers["webhook-id"]  # receivers can dedupe
        other = pipeline.admin.network()
        forbidden = client.post(
            f"/v1/webhook-deliveries/{delivery['id']}/redeliver", headers={"Authorization": f"Bearer {other.token}"}
        )
        assert forbidden.status_code == 404


def test_plain_http_webhooks_need_an_allow_listed_host(pipeline: Pipeline) -> None:
    network = pipeline.admin.network()
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        response = client.post(
            "/v1/webhook-endpoints",
            headers={"Authorization": f"Bearer {network.token}"},
            json={"url": "http://hooks.example.com/x"},
        )
        assert response.status_code == 422
