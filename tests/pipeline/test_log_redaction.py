"""No log record of a real run carries the secrets in the URLs it fetched, delivered to or was called with."""

from __future__ import annotations

import base64
import http.server
import io
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from callplane.logging import log_handler
from tests.pipeline.conftest import Pipeline, invoca_call, make_tone, wait_for_outcome

PASSWORD = "pw-" + secrets.token_hex(6)
SIGNATURE = "sig" + secrets.token_hex(16)
CREDENTIAL = "AKIA" + secrets.token_hex(6).upper()
SECURITY_TOKEN = "FwoG" + secrets.token_hex(8)
HOOK_TOKEN = "hook-" + secrets.token_hex(6)
HOOK_PASSWORD = "hookpw-" + secrets.token_hex(6)
QUERY_KEY = "key-" + secrets.token_hex(6)


class Origin:
    """Serves the recording only with the URL's basic credentials and presigned-style query; takes webhooks."""

    def __init__(self, payload: bytes) -> None:
        self.hooks: list[dict[str, str]] = []
        origin = self
        expected_basic = "Basic " + base64.b64encode(f"rec-user:{PASSWORD}".encode()).decode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                authorized = (
                    self.headers.get("Authorization") == expected_basic
                    and query.get("X-Amz-Signature") == [SIGNATURE]
                    and query.get("X-Amz-Security-Token") == [SECURITY_TOKEN]
                )
                self.send_response(200 if authorized else 403)
                self.send_header("Content-Length", str(len(payload) if authorized else 0))
                self.end_headers()
                if authorized:
                    self.wfile.write(payload)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                if parse_qs(urlsplit(self.path).query).get("token") == [HOOK_TOKEN]:
                    origin.hooks.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Origin]:
    # Mono: the call fails right after the fetch (no transcription to wait for) and its webhook goes out.
    make_tone(tmp_path / "rec.wav", left_hz=500, right_hz=None, seconds=1.0)
    running = Origin((tmp_path / "rec.wav").read_bytes())
    threading.Thread(target=running.server.serve_forever, daemon=True).start()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every record of the process at INFO and above, through the same handler the server installs."""
    stream = io.StringIO()
    handler = log_handler(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _requests_logged(stream: io.StringIO) -> list[tuple[str, str]]:
    records = (json.loads(line) for line in stream.getvalue().splitlines())
    return [(r["path"], r["query"]) for r in records if r["logger"] == "callplane.http" and r["msg"] == "request"]


def test_no_log_record_carries_url_credentials_signatures_or_tokens(
    pipeline: Pipeline, origin: Origin, captured_logs: io.StringIO
) -> None:
    network = pipeline.admin.network()
    bearer = {"Authorization": f"Bearer {network.token}"}
    recording_url = (
        f"http://rec-user:{PASSWORD}@{origin.host}/bucket/rec.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={CREDENTIAL}%2F20261207%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=900"
        f"&X-Amz-Security-Token={SECURITY_TOKEN}&X-Amz-Signature={SIGNATURE}"
    )
    hook_url = f"http://hook-user:{HOOK_PASSWORD}@{origin.host}/hooks/in?token={HOOK_TOKEN}"
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        endpoint = client.post(
            "/v1/webhook-endpoints", headers=bearer, json={"url": hook_url, "event_types": ["call.processing_failed"]}
        )
        assert endpoint.status_code == 201, endpoint.text
        webhook_secret = endpoint.json()["secret"]
        response = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token},
            json={"call": invoca_call(recording_url)},
        )
        assert response.status_code == 201, response.text
        call_id = response.json()["cuid"]
        outcome = wait_for_outcome(client, network.token, call_id)
        assert outcome["status"] == "failed" and "dual-channel" in outcome["status_reason"], outcome
        # A client that puts its key in the query string instead of a header.
        assert client.get(f"/v1/calls/{call_id}", headers=bearer, params={"key": QUERY_KEY}).status_code == 200
        # The request's own log line is written just after its response: wait for it as for the webhook.
        deadline = time.monotonic() + 30
        while not origin.hooks or (f"/v1/calls/{call_id}", "key=[redacted]") not in _requests_logged(captured_logs):
            assert time.monotonic() < deadline, "the webhook or the request's log line never came"
            time.sleep(0.05)
    signature_header = origin.hooks[0]["webhook-signature"]

    records = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    text = captured_logs.getvalue()
    for secret in (
        PASSWORD,
        SIGNATURE,
        CREDENTIAL,
        SECURITY_TOKEN,
        HOOK_TOKEN,
        HOOK_PASSWORD,
        QUERY_KEY,
        network.token,
        webhook_secret,
        signature_header.split(",", 1)[1],
    ):
        assert secret not in text
    # Still useful: the HTTP client's own lines name the host and path of both the fetch and the delivery.
    client_lines = [r["msg"] for r in records if r["logger"] == "httpx"]
    assert any(f"GET http://***@{origin.host}/bucket/rec.wav?" in line for line in client_lines), client_lines
    assert any("X-Amz-Signature=[redacted]" in line and "X-Amz-Expires=900" in line for line in client_lines)
    assert any(f"POST http://***@{origin.host}/hooks/in?token=[redacted]" in line for line in client_lines)
