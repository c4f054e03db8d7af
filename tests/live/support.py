"""The control plane on the in-memory engine: a real server on loopback built by `create_app(settings,
call_engine=FakeCallEngine())`, with its workers (the webhook outbox delivers), on SQLite or PostgreSQL, and a
loopback webhook receiver."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from callplane.app import create_app
from callplane.db.migrate import upgrade
from callplane.settings import Settings
from callplane.testing.engine import FakeCallEngine
from callplane.testing.factories import Admin, Network
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database

ADMIN_TOKEN = "live-admin"
TERMINAL = ("CALL_FINISHED", "CALL_FAILED")
T = TypeVar("T")


def live_settings(data_dir: Path, database_url: str | None) -> Settings:
    return Settings(
        environment="test",
        data_dir=data_dir,
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        log_level="WARNING",
        fetch_allowed_networks=["127.0.0.1/32"],  # the far ends' addresses pass the outbound target policy
        workers_enabled=True,  # the outbox delivers the events
        transcription_enabled=False,
        delivery_poll_seconds=0.05,
        voice_enabled=True,
        voice_node_id="fake-node",
        voice_relay_poll_seconds=0.1,
        contact_center_poll_seconds=0.1,
        contact_center_ring_timeout_seconds=5,
    )


@dataclass
class LiveServer:
    base_url: str
    fake: FakeCallEngine
    admin: Admin
    settings: Settings


@contextmanager
def serving(settings: Settings, fake: FakeCallEngine | None) -> Iterator[str]:
    """The app with `fake` as its engine (None: settings decide), served by uvicorn in a thread on a loopback port;
    yields its base URL."""
    upgrade(settings)
    app = create_app(settings, call_engine=fake)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def live_server(database: str, data_dir: Path) -> Iterator[LiveServer]:
    fake = FakeCallEngine()
    if database == "sqlite":
        settings = live_settings(data_dir, None)
        with serving(settings, fake) as base_url:
            yield LiveServer(base_url, fake, Admin(base_url, ADMIN_TOKEN), settings)
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url:
        settings = live_settings(data_dir, url)
        with serving(settings, fake) as base_url:
            yield LiveServer(base_url, fake, Admin(base_url, ADMIN_TOKEN), settings)


def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = 30) -> T:
    """Poll until `probe` returns something truthy (state that no event announces to a test thread)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout_s}s: {what}")


# ---- the webhook receiver -------------------------------------------------------------------------


@dataclass
class Receiver:
    """A loopback HTTP server that keeps every event POSTed to it and serves `files` to GETs (play by URL)."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, call_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            bodies = [json.loads(body) for _, body in self.received]
        return [body for body in bodies if call_id is None or body.get("callId") == call_id]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            time.sleep(0.01)
        raise AssertionError(f"no matching event within {timeout_s}s; got {[e['type'] for e in self.events()]}")

    def wait_type(self, call_id: str, event_type: str, timeout_s: float = 30) -> dict[str, Any]:
        return self.wait_for(lambda e: e.get("callId") == call_id and e["type"] == event_type, timeout_s)

    def types(self, call_id: str) -> list[str]:
        return [event["type"] for event in self.events(call_id)]

    def single_terminal(self, call_id: str) -> dict[str, Any]:
        """The call's terminal event. That it stays the only one is checked for every call at once when the
        receiver closes (`duplicate_terminals`), rather than by waiting in each test."""
        return self.wait_for(lambda e: e.get("callId") == call_id and e["type"] in TERMINAL)

    def duplicate_terminals(self) -> dict[str, list[str]]:
        """Calls with more than one terminal event: their event types."""
        counts: dict[str, int] = {}
        for event in self.events():
            if event["type"] in TERMINAL:
                counts[event["callId"]] = counts.get(event["callId"], 0) + 1
        return {call_id: self.types(call_id) for call_id, count in counts.items() if count > 1}


@contextmanager
def receiving() -> Iterator[Receiver]:
    sink = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with sink.lock:
                sink.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            body = sink.files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("content-type", "audio/wav")
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


# ---- an account's Calls API application ---------------------------------------------------------


@dataclass
class CallsApp:
    """One account: its Infobip-style client (App key), its native client (Bearer), a calls configuration whose
    events go to the receiver, and the signing secret of that subscription."""

    http: httpx.Client
    native: httpx.Client
    configuration_id: str
    secret: str
    token: str

    def route(self, called_user: str) -> None:
        routed = self.native.post(
            f"/v1/voice/configurations/{self.configuration_id}/routes", json={"called_user": called_user}
        )
        assert routed.status_code == 201, routed.text

    def create_call(self, to_user: str, **fields: Any) -> str:
        body = {
            "endpoint": {"type": "SIP", "username": to_user, "host": "127.0.0.1:5999"},
            "callsConfigurationId": self.configuration_id,
            **fields,
        }
        created = self.http.post("/calls/1/calls", json=body)
        assert created.status_code == 201, created.text
        call_id: str = created.json()["id"]
        return call_id


@contextmanager
def calls_app(server: LiveServer, receiver: Receiver, account: Network) -> Iterator[CallsApp]:
    """A fresh calls configuration (what the tests list by) on the given account."""
    with (
        httpx.Client(base_url=server.base_url, headers={"Authorization": f"App {account.token}"}, timeout=30) as api,
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {account.token}"}, timeout=30
        ) as native,
    ):
        created = api.post("/calls/1/configurations", json={"name": "live"})
        assert created.status_code == 201, created.text
        configuration_id = created.json()["id"]
        subscription = native.post(
            f"/v1/voice/configurations/{configuration_id}/subscriptions", json={"url": receiver.url}
        )
        assert subscription.status_code == 201, subscription.text
        yield CallsApp(api, native, configuration_id, subscription.json()["secret"], account.token)
