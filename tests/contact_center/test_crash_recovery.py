"""A `callplane serve` process killed (SIGKILL) during a connected contact-center call: on the next start the voice
service ends the legs it left live and the contact center ends the call once and frees its agent. SQLite and
PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from callplane.testing.factories import Admin
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from callplane.testing.sipp import free_udp_port
from tests.contact_center.sipp import agent_phone, end_user_phone, wire_carrier
from tests.contact_center.support import END_USER, new_center
from tests.contact_center.test_calls_e2e import ended

ADMIN_TOKEN = "crash-admin"


def free_tcp_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serve(environment: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`callplane serve` as its own process; yields once it answers /healthz."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "callplane", "serve", "--port", str(port)],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "callplane serve did not start"
            time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_crash_during_a_connected_call_ends_it_once_on_restart(database: str, tmp_path: Path) -> None:
    low = random.randrange(20000, 38000, 2)
    environment = {
        **os.environ,
        "CALLPLANE_ENVIRONMENT": "test",
        "CALLPLANE_DATA_DIR": str(tmp_path / "data"),
        "CALLPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
        "CALLPLANE_LOG_LEVEL": "WARNING",
        "CALLPLANE_WORKERS_ENABLED": "false",
        "CALLPLANE_VOICE_ENABLED": "true",
        "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',  # agents and destinations are sipp on loopback
        "CALLPLANE_SIP_PORT": str(free_udp_port()),
        "CALLPLANE_RTP_PORT_MIN": str(low),
        "CALLPLANE_RTP_PORT_MAX": str(low + 1000),
        "CALLPLANE_VOICE_NODE_ID": "crash-node",
        "CALLPLANE_CONTACT_CENTER_POLL_SECONDS": "0.5",
    }
    agent = agent_phone(tmp_path)
    end_user = end_user_phone(tmp_path, talk_ms=60000)  # still talking when the process dies
    with contextlib.ExitStack() as stack:
        stack.callback(agent.stop)
        stack.callback(end_user.stop)
        if database == "postgresql":
            admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
            environment["CALLPLANE_DATABASE_URL"] = stack.enter_context(scratch_postgres_database(admin_url))
        port = free_tcp_port()
        base_url = f"http://127.0.0.1:{port}"
        log = tmp_path / "serve.log"
        with serve(environment, port, log) as process:
            admin = Admin(base_url, ADMIN_TOKEN)
            center = new_center(admin, base_url)
            wire_carrier(center, base_url, end_user.port)
            agent_id = center.add_agent(
                "agent@somedomain.com", endpoint_host=f"127.0.0.1:{agent.port}", status="available"
            )
            created = center.create(
                {
                    "call_type": "Voice Outbound (API)",
                    "agent_email": "agent@somedomain.com",
                    "end_user_number": END_USER,
                }
            )
            assert created.status_code == 201, created.text
            call_id = created.json()["id"]
            center.wait_call(call_id, lambda c: c["status"] == "connected")
            process.send_signal(signal.SIGKILL)  # no BYE, no terminal events: the rows stay live
            process.wait(timeout=30)
        assert agent.process.poll() is None  # nobody told the agent's phone

        with serve(environment, port, log):
            call = center.wait_call(call_id, ended, 60)
            assert call["status"] == "finished" and call["disconnected_by"] == "disconnected_by_system", call
            assert call["ends_at"] is not None and call["connected_at"] is not None
            assert [p["status"] for p in call["participants"]] == ["finished", "finished"]
            assert center.agent("agent@somedomain.com")["status"] == "available"
            # Once: the API call is listed once, its core Call closed once.
            assert [c["id"] for c in center.api.get("/apps/api/v1/calls").json()] == [call_id]
            assert center.agents["agent@somedomain.com"] == agent_id
        admin.client.close()
        center.api.close()
