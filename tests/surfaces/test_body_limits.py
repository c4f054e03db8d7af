"""Request bodies are bounded per surface before anything parses or authenticates them, and cut off when they stall.

Each surface answers in its own error body (docs/decisions.md "Request bodies"). The memory test runs the real
`callplane serve` in a process of its own, so its RSS is the server's alone.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import ADMIN_TOKEN

from callplane.core.ingestion.schemas import MAX_EXTRAS_BYTES
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)

MIB = 1024 * 1024
JSON_LIMIT = MIB  # CALLPLANE_REQUEST_BODY_MAX_BYTES's default
UPLOAD_LIMIT = 32 * MIB + 64 * 1024  # a 32 MiB audio file and its multipart form
CALLS_IN_PROGRESS_UPDATE_LIMIT = 64 * 1024
WRONG_TOKEN = "wrong-token"


@dataclass(frozen=True)
class Target:
    """A route with a request body, and how its surface writes a refused body."""

    surface: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"

    def too_large(self, limit: int) -> dict[str, Any]:
        if self.surface == "zipteams":
            return {"success": False, "message": "Payload too large. The maximum request payload size is 5MB."}
        return self.body(413, f"The request body is larger than {limit} bytes.")

    def body(self, status: int, text: str) -> dict[str, Any]:
        if self.surface == "calls_in_progress":
            return {"error": {413: "PayloadTooLarge", 408: "RequestTimeout"}[status], "message": text}
        if self.surface == "invoca":
            return {"errors": {"class": {413: "PayloadTooLarge", 408: "RequestTimeout"}[status], "invalid_data": text}}
        if self.surface == "infobip":
            message_id = {413: "PAYLOAD_TOO_LARGE", 408: "REQUEST_TIMEOUT"}[status]
            return {"requestError": {"serviceException": {"messageId": message_id, "text": text}}}
        if self.surface == "ccai":
            return {"message": text}
        return {"detail": text}


def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"callplane:{token}".encode()).decode()


# Routes that read their body before they authenticate (the token may be in the body, or FastAPI reads a body model
# before running the dependency that checks the token).
INVOCA_CALLS = Target("invoca", "/api/2022-03-01/calls.json", {"Authorization": WRONG_TOKEN})
SIGNAL_API = Target("invoca", "/api/2018-02-01/transactions.json", {"Authorization": WRONG_TOKEN})
CALLS_IN_PROGRESS = Target(
    "calls_in_progress", "/api/2022-08-01/calls_in_progress.json", {"Authorization": WRONG_TOKEN}, "PUT"
)
INFOBIP_CALLS = Target("infobip", "/calls/1/calls", {"Authorization": f"App {WRONG_TOKEN}"})
NATIVE = Target("native", "/v1/webhook-endpoints", {"Authorization": f"Bearer {WRONG_TOKEN}"})
ADMIN = Target("native", "/v1/admin/accounts", {"Authorization": f"Bearer {WRONG_TOKEN}"})
READ_BEFORE_AUTH = [INVOCA_CALLS, SIGNAL_API, CALLS_IN_PROGRESS, INFOBIP_CALLS, NATIVE, ADMIN]
# Routes that authenticate first: unauthenticated, they are refused by their Content-Length alone.
AUTH_FIRST = [
    Target("zipteams", "/partner/ingest/batch-call", {"Authorization": f"Bearer {WRONG_TOKEN}", "x-partner-id": "p"}),
    Target("zipteams", "/api/v1/partner/ingest/batch-call", {"Authorization": f"Bearer {WRONG_TOKEN}"}),
    Target("ccai", "/apps/api/v1/calls", {"Authorization": _basic(WRONG_TOKEN)}),
]
UPLOAD = Target(
    "infobip", "/calls/1/files", {"Authorization": f"App {WRONG_TOKEN}", "Content-Type": "multipart/form-data; b=x"}
)


def _limit(target: Target) -> int:
    if target.surface == "zipteams":
        return 5 * MIB
    if "calls_in_progress" in target.path:
        return CALLS_IN_PROGRESS_UPDATE_LIMIT
    return UPLOAD_LIMIT if target is UPLOAD else JSON_LIMIT


def _stream(total: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """`total` bytes from a generator: httpx sends them chunked unless a Content-Length is given."""
    block = b"x" * chunk
    for start in range(0, total, chunk):
        yield block[: min(chunk, total - start)]


def _send(client: httpx.Client, target: Target, total: int, *, declared: bool, **headers: str) -> httpx.Response:
    if declared:
        headers["Content-Length"] = str(total)
    return client.request(target.method, target.path, headers=target.headers | headers, content=_stream(total))


@pytest.mark.parametrize("target", [*READ_BEFORE_AUTH, *AUTH_FIRST, UPLOAD], ids=lambda t: t.path)
def test_a_declared_length_over_the_limit_is_the_surfaces_413(client: httpx.Client, target: Target) -> None:
    limit = _limit(target)
    response = _send(client, target, limit + 1, declared=True)
    assert response.status_code == 413
    assert response.json() == target.too_large(limit)
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize("target", READ_BEFORE_AUTH, ids=lambda t: t.path)
def test_a_chunked_body_over_the_limit_is_cut_off_with_the_surfaces_413(client: httpx.Client, target: Target) -> None:
    response = _send(client, target, 4 * JSON_LIMIT, declared=False)
    assert response.status_code == 413
    assert response.json() == target.too_large(_limit(target))


def test_authenticated_chunked_bodies_over_the_limit_are_cut_off_too(client: httpx.Client, admin: Admin) -> None:
    partner = admin.partner()
    batch = _send(client, AUTH_FIRST[0], 6 * MIB, declared=False, **partner.headers)
    assert (batch.status_code, batch.json()) == (413, AUTH_FIRST[0].too_large(5 * MIB))
    ccai = _send(client, AUTH_FIRST[2], 2 * JSON_LIMIT, declared=False, Authorization=_basic(admin.network().token))
    assert (ccai.status_code, ccai.json()) == (413, AUTH_FIRST[2].too_large(JSON_LIMIT))


def test_bodies_under_the_limit_still_work_streamed_or_not(client: httpx.Client, admin: Admin) -> None:
    network = admin.network()
    padding = "p" * (MAX_EXTRAS_BYTES - 100)  # an unknown field, kept in the call's extras
    call = {
        "external_call_unique_id": "under-the-limit",
        "start_time": "2022-03-25 09:31:29",
        "destination_phone_number": 9093900003,
        "calling_phone_number": 8779257384,
        "advertiser_campaign_id_from_network": network.campaign_external_id,
        "call_direction": "inbound",
        "recording_url": "https://recordings.example.com/10002.wav",
        "padding": padding,
    }
    raw = json.dumps({"call": call}).encode()
    chunked = client.post(
        "/api/2022-03-01/calls.json",
        headers={"Authorization": network.token, "Content-Type": "application/json"},
        content=(raw[start : start + 1000] for start in range(0, len(raw), 1000)),
    )
    assert chunked.status_code == 201
    stored = client.get(f"/v1/calls/{chunked.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"})
    assert stored.json()["extras"] == {"padding": padding}
    again = client.post("/api/2022-03-01/calls.json", headers={"Authorization": network.token}, content=raw)
    assert again.status_code == 202  # the same call, sent with a Content-Length


def test_unknown_fields_over_the_extras_limit_are_refused(client: httpx.Client, admin: Admin) -> None:
    network = admin.network()
    call = {
        "external_call_unique_id": "big-extras",
        "start_time": "2022-03-25 09:31:29",
        "destination_phone_number": 9093900003,
        "calling_phone_number": 8779257384,
        "advertiser_campaign_id_from_network": network.campaign_external_id,
        "call_direction": "inbound",
        "recording_url": "https://recordings.example.com/10002.wav",
        "notes": "n" * MAX_EXTRAS_BYTES,
    }
    invoca = client.post("/api/2022-03-01/calls.json", headers={"Authorization": network.token}, json={"call": call})
    assert invoca.status_code == 403
    problem = f"'call' unknown fields may hold at most {MAX_EXTRAS_BYTES} bytes of JSON"
    assert invoca.json() == {"errors": {"class": "RecordInvalid", "invalid_data": f"Validation failed: {problem}"}}

    partner = admin.partner()
    item = {
        "call": {
            "id": "big-extras",
            "recording_url": "https://example.com/recordings/call123.mp3",
            "start_time": "2023-01-01T10:00:00Z",
            "end_time": "2023-01-01T10:30:00Z",
            "contact_number": "+1234567890",
        },
        "notes": "n" * MAX_EXTRAS_BYTES,
    }
    batch = client.post("/partner/ingest/batch-call", headers=partner.headers, json={"data": [item]})
    assert batch.status_code == 422
    assert batch.json()["errors"] == [
        {"field": "data[0]", "message": f"unknown fields may hold at most {MAX_EXTRAS_BYTES} bytes of JSON"}
    ]
    listed = client.get("/v1/calls", headers={"Authorization": f"Bearer {partner.token}"})
    assert listed.json()["calls"] == []


def test_a_twenty_megabyte_unknown_field_never_reaches_the_call(client: httpx.Client, admin: Admin) -> None:
    network = admin.network()
    body = b'{"call": {"external_call_unique_id": "huge", "notes": "' + b"n" * (20 * MIB) + b'"}}'
    response = client.post("/api/2022-03-01/calls.json", headers={"Authorization": network.token}, content=body)
    assert response.status_code == 413
    listed = client.get("/v1/calls", headers={"Authorization": f"Bearer {network.token}"})
    assert listed.json()["calls"] == []


def test_validation_errors_do_not_echo_the_input(client: httpx.Client) -> None:
    name = "n" * 500_000
    response = client.post(
        "/v1/admin/accounts", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, json={"kind": "x", "name": name}
    )
    assert response.status_code == 422
    assert len(response.content) < 1000
    errors = response.json()["detail"]
    assert {tuple(error["loc"]) for error in errors} == {("body", "kind"), ("body", "name")}
    assert all(set(error) <= {"type", "loc", "msg", "ctx"} for error in errors)


# ---- stalled bodies: a server of their own with a short read timeout and smaller limits --------------------------


def _small_settings(data_dir: Path, database_url: str | None) -> Settings:
    return Settings(
        environment="test",
        data_dir=data_dir,
        database_url=database_url,
        admin_token="body-limits-admin",
        log_level="WARNING",
        workers_enabled=False,
        request_body_max_bytes=64 * 1024,
        request_body_read_timeout_seconds=0.5,
    )


@pytest.fixture(scope="module")
def impatient(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose bodies may stall for half a second, on the same database kind as `server`."""
    data_dir = tmp_path_factory.mktemp("impatient")
    if server.settings.is_sqlite:
        with running_server(_small_settings(data_dir, None)) as running:
            yield running
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url, running_server(_small_settings(data_dir, url)) as running:
        yield running


def _raw_request(base_url: str, request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send bytes as they are and read the answer until the server closes the connection."""
    url = httpx.URL(base_url)
    with socket.create_connection((url.host, url.port or 80), timeout=30) as raw:
        raw.sendall(request)
        answer = b"".join(iter(lambda: raw.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.parametrize("target", READ_BEFORE_AUTH, ids=lambda t: t.path)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_stalled_body_is_the_surfaces_408(impatient: RunningServer, target: Target, framing: str) -> None:
    headers = "".join(f"{name}: {value}\r\n" for name, value in target.headers.items())
    if framing == "chunked":
        start = f"{target.method} {target.path} HTTP/1.1\r\nHost: x\r\n{headers}Transfer-Encoding: chunked\r\n\r\n"
        request = start.encode() + b'5\r\n{"a":\r\n'  # one chunk, then nothing
    else:
        start = f"{target.method} {target.path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 1000\r\n\r\n"
        request = start.encode() + b'{"a":'
    status, response_headers, body = _raw_request(impatient.base_url, request)
    assert status == 408
    assert body == target.body(408, "The request body was not received within 0.5 seconds.")
    assert response_headers["connection"] == "close"


def test_the_limit_is_a_setting(impatient: RunningServer) -> None:
    with httpx.Client(base_url=impatient.base_url, timeout=30) as client:
        target = INVOCA_CALLS
        over = _send(client, target, 64 * 1024 + 1, declared=False)
        assert (over.status_code, over.json()) == (413, target.too_large(64 * 1024))
        under = client.post(target.path, headers=target.headers, json={"call": {"notes": "n" * 60_000}})
        assert under.status_code == 401  # read, parsed, then refused for its token


# ---- 300 MB unauthenticated bodies against the real `callplane serve` ---------------------------------------------


@pytest.fixture
def database_url(server: RunningServer) -> Iterator[str | None]:
    """The same database kind as the session's server fixture: None for SQLite, else a scratch database."""
    if server.settings.is_sqlite:
        yield None
        return
    with scratch_postgres_database(os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)) as url:
        yield url


@pytest.fixture
def serve(tmp_path: Path, database_url: str | None) -> Iterator[tuple[str, int]]:
    """`callplane serve` in a process of its own: its base URL and process id."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CALLPLANE_")}
    env |= {"CALLPLANE_DATA_DIR": str(tmp_path / "data"), "CALLPLANE_LOG_LEVEL": "WARNING"}
    env |= {"CALLPLANE_WORKERS_ENABLED": "false"}
    if database_url:
        env["CALLPLANE_DATABASE_URL"] = database_url
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "serve.log"
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "callplane", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "callplane serve did not become ready"
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base_url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_300_megabyte_unauthenticated_bodies_leave_the_server_under_10_megabytes(serve: tuple[str, int]) -> None:
    base_url, pid = serve
    targets = [INVOCA_CALLS, SIGNAL_API, INFOBIP_CALLS, NATIVE, ADMIN]
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for target in targets:  # every code path warmed up once before the baseline
            for declared in (True, False):
                assert _send(client, target, 2 * JSON_LIMIT, declared=declared).status_code == 413
        before = _rss_bytes(pid)
        statuses = []
        for target in targets:
            for declared in (True, False):
                statuses.append(_send(client, target, 300 * MIB, declared=declared).status_code)
        after = _rss_bytes(pid)
    assert statuses == [413] * 2 * len(targets)
    assert after - before < 10 * MIB, f"the server grew by {(after - before) / MIB:.1f} MiB"
