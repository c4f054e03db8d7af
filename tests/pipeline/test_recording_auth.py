"""Recording auth configurations created through the admin API are used when the worker fetches."""

from __future__ import annotations

import http.server
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.pipeline.conftest import Pipeline, make_tone, wait_for_outcome

SECRET = "s3cr3t-" + secrets.token_hex(4)


class GuardedOrigin:
    """Serves the recording only to a request that carries the expected credential."""

    def __init__(self, payload: bytes) -> None:
        self.seen: list[str] = []
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                authorized = (
                    self.headers.get("Authorization") == f"Bearer {SECRET}"
                    or self.headers.get("X-Api-Key") == SECRET
                    or query.get("api_key") == [SECRET]
                )
                origin.seen.append("ok" if authorized else "denied")
                self.send_response(200 if authorized else 403)
                self.send_header("Content-Length", str(len(payload) if authorized else 0))
                self.end_headers()
                if authorized:
                    self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rec.wav"


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[GuardedOrigin]:
    make_tone(tmp_path / "rec.wav", left_hz=500, right_hz=900, seconds=1.0)
    running = GuardedOrigin((tmp_path / "rec.wav").read_bytes())
    threading.Thread(target=running.server.serve_forever, daemon=True).start()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.mark.parametrize(("method", "parameter_name"), [("bearer", ""), ("header", "X-Api-Key"), ("query", "api_key")])
def test_each_auth_method(pipeline: Pipeline, origin: GuardedOrigin, method: str, parameter_name: str) -> None:
    network = pipeline.admin.network()
    config = pipeline.admin.post(
        f"/accounts/{network.account_id}/recording-auth-configs",
        {"method": method, "parameter_name": parameter_name, "secret": SECRET},
    )
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        base = {
            "start_time": 1460404800,
            "destination_phone_number": 9093900003,
            "calling_phone_number": 8779257384,
            "advertiser_campaign_id_from_network": 86,
            "call_direction": "inbound",
            "recording_url": origin.url,
        }
        with_auth = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token},
            json={
                "call": base
                | {"external_call_unique_id": secrets.token_hex(4), "recording_auth_config_id": config["id"]}
            },
        )
        without = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token},
            json={"call": base | {"external_call_unique_id": secrets.token_hex(4)}},
        )
        assert wait_for_outcome(client, network.token, with_auth.json()["cuid"])["status"] == "completed"
        refused = wait_for_outcome(client, network.token, without.json()["cuid"])
        assert refused["status"] == "failed" and "403" in refused["status_reason"]
        assert SECRET not in refused["status_reason"]
