"""Contact-center calls end to end: a real server with the engine, sipp as the agent's phone and as the end user
behind a SIP trunk, SQLite and PostgreSQL. The call's statuses come from its legs' real call events."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from callplane.core.contact_center.models import Agent
from callplane.db.engine import create_engine, create_session_factory
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)
from callplane.testing.sipp import free_udp_port
from tests.contact_center.sipp import agent_phone, end_user_phone, trunk_to, wire_carrier
from tests.contact_center.support import END_USER, END_USER_E164, OUTBOUND, Center, new_center

ADMIN_TOKEN = "contact-center-admin"


def voice_settings(data_dir: Path, database_url: str | None, sip_port: int) -> Settings:
    low = random.randrange(20000, 38000, 2)
    return Settings(
        environment="test",
        data_dir=data_dir,
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        log_level="WARNING",
        workers_enabled=True,  # the post-call pipeline takes granted recordings
        transcription_enabled=False,
        delivery_poll_seconds=0.2,
        voice_enabled=True,
        fetch_allowed_networks=["127.0.0.1/32"],  # agents/destinations are sipp on loopback (SSRF policy)
        sip_port=sip_port,
        rtp_port_min=low,
        rtp_port_max=low + 1000,
        voice_node_id="cc-node",
        contact_center_poll_seconds=0.5,
        contact_center_ring_timeout_seconds=15,  # a phone that answers does so in under a second here
    )


@dataclass
class Served:
    running: RunningServer
    admin: Admin


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp(f"cc-{request.param}")
    sip_port = free_udp_port()
    if request.param == "sqlite":
        with running_server(voice_settings(data_dir, None, sip_port)) as running:
            admin = Admin(running.base_url, ADMIN_TOKEN)
            yield Served(running, admin)
            admin.client.close()
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with (
        scratch_postgres_database(admin_url) as url,
        running_server(voice_settings(data_dir, url, sip_port)) as running,
    ):
        admin = Admin(running.base_url, ADMIN_TOKEN)
        yield Served(running, admin)
        admin.client.close()


def _time(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ended(call: dict[str, Any]) -> bool:
    """The call ended and so did each participant's leg (the agent's a moment after the end user's hangup)."""
    return call["status"] in ("finished", "failed") and all(p["ended_at"] for p in call["participants"])


def check_finished(call: dict[str, Any], center: Center) -> None:
    """A connected call that the end user hung up: its timestamps, durations and participants add up."""
    assert call["status"] == "finished", call
    created, assigned = _time(call["created_at"]), _time(call["assigned_at"])
    connected, ended = _time(call["connected_at"]), _time(call["ends_at"])
    assert created <= assigned <= connected <= ended
    assert call["call_duration"] == int((ended - connected).total_seconds())
    assert call["call_duration"] >= 1  # the end user talked for 2.5 s before hanging up
    assert call["hold_duration"] == 0 and call["fail_reason"] == "nothing"
    assert call["disconnected_by"] == "disconnected_by_end_user"
    by_type = {p["type"]: p for p in call["participants"]}  # the last agent offered the call is the one who took it
    assert [p["type"] for p in call["participants"]].count("end_user") == 1
    agent, end_user = by_type["agent"], by_type["end_user"]
    assert agent["status"] == end_user["status"] == "finished"
    # The agent's phone rang and answered first; the end user was dialed after that, then bridged.
    assert _time(agent["connected_at"]) <= _time(end_user["connected_at"]) == connected
    assert end_user["call_duration"] == int((_time(end_user["ended_at"]) - connected).total_seconds())
    # One model: the conversation is a core Call (with its two legs as voice calls).
    native = httpx.get(
        f"{center.api.base_url}/v1/calls",
        headers={"Authorization": f"Bearer {center.token}"},
        params={"origin": "contact_center"},
    ).json()["calls"]
    core = [c for c in native if c["extras"].get("contact_center_call_id") == call["id"]]
    assert len(core) == 1 and core[0]["extras"]["contact_center_status"] == "finished"
    # completed, or back in the post-call pipeline with its recording when the end user allowed recording
    assert core[0]["status"] == "completed" or core[0]["recording_filename"]
    assert core[0]["contact_number"] == END_USER_E164 and core[0]["duration_ms"] >= 1000


@pytest.mark.parametrize("endpoint", ["sip", "phone"])
def test_an_outbound_call_rings_the_agent_then_the_end_user_connects_and_finishes(
    served: Served, tmp_path: Path, endpoint: str
) -> None:
    center = new_center(served.admin, served.running.base_url)
    agent = agent_phone(tmp_path)
    end_user = end_user_phone(tmp_path)
    try:
        wire_carrier(center, served.running.base_url, end_user.port)
        if endpoint == "sip":  # a SIP phone, given as a SIP URI
            where: dict[str, Any] = {"sip_uri": f"sip:ada@127.0.0.1:{agent.port}"}
        else:  # a phone number reached through the agents' own SIP trunk
            where = {
                "endpoint_type": "PHONE",
                "endpoint_user": "+1 415-555-0100",
                "trunk_id": trunk_to(center, served.running.base_url, agent.port),
            }
        center.add_agent("agent@somedomain.com", first_name="Ada", last_name="Agent", status="available", **where)
        created = center.create(
            {
                "call_type": "Voice Outbound (API)",
                "agent_email": "agent@somedomain.com",
                "end_user_number": END_USER,
                "outbound_number": OUTBOUND,
                "lang": "en",
            }
        )
        assert created.status_code == 201, created.text
        call_id = created.json()["id"]
        assert created.json()["status"] == "assigned"

        connected = center.wait_call(call_id, lambda c: c["status"] in ("connected", "finished", "failed"))
        assert connected["status"] == "connected", (connected["fail_reason"], connected["fail_details"])
        assert [p["status"] for p in connected["participants"]] == ["connected", "connected"]
        assert center.agent("agent@somedomain.com")["status"] == "busy"

        finished = center.wait_call(call_id, ended)
        check_finished(finished, center)
        code, output = end_user.result()
        assert code == 0, output
        code, output = agent.result()
        assert code == 0, output  # got our BYE once the end user hung up
        idle = center.agent("agent@somedomain.com")
        assert idle["status"] == "available" and _time(idle["last_idle_at"]) >= _time(finished["ends_at"])
    finally:
        agent.stop()
        end_user.stop()
        center.api.close()


def test_an_inbound_call_waits_in_its_queue_until_an_agent_is_available(served: Served, tmp_path: Path) -> None:
    center = new_center(served.admin, served.running.base_url)
    agent = agent_phone(tmp_path)
    end_user = end_user_phone(tmp_path)
    try:
        wire_carrier(center, served.running.base_url, end_user.port)
        away = center.add_agent("away@somedomain.com", endpoint_host="127.0.0.1:9", status="unavailable")
        later = center.add_agent("later@somedomain.com", endpoint_host=f"127.0.0.1:{agent.port}", status="unavailable")
        menu = center.add_menu("Support", menu_type="ivr_menu", languages=["en"], agent_ids=[away, later])
        created = center.create(
            {
                "call_type": "IncomingCall",  # the deprecated alias
                "lang": "en",
                "menu_id": menu,
                "end_user_number": END_USER,
                "recording_permission": "recording_permission_granted",
            }
        )
        assert created.status_code == 201, created.text
        call_id = created.json()["id"]
        assert created.json()["status"] == "queued" and created.json()["call_type"] == "Voice Inbound (API)"

        # Nobody of the queue is available: the call keeps waiting (checked over two seconds of queue passes).
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert center.call(call_id)["status"] == "queued"
            time.sleep(0.2)
        waits = center.api.get("/apps/api/v1/wait_times", params={"menu_id": menu}).json()
        assert waits == [{"menu_id": menu, "wait": 1, "materialized_path": str(menu)}]

        center.set_agent("later@somedomain.com", status="available")  # the away agent stays away
        connected = center.wait_call(call_id, lambda c: c["status"] in ("connected", "finished", "failed"))
        assert connected["status"] == "connected", (connected["fail_reason"], connected["fail_details"])
        assert connected["agent_info"]["id"] == later
        assert connected["wait_duration"] >= 2  # queued at least the two seconds above
        assert _time(connected["queued_at"]) < _time(connected["assigned_at"])

        finished = center.wait_call(call_id, ended)
        check_finished(finished, center)
        assert finished["wait_duration"] == int(
            (_time(finished["assigned_at"]) - _time(finished["queued_at"])).total_seconds()
        )
        code, output = end_user.result()
        assert code == 0, output
        code, output = agent.result()
        assert code == 0, output

        # The end user allowed recording: the agent's leg was recorded (both parties) and the recording went
        # through the post-call pipeline as the contact-center call's own.
        assert finished["recording_permission"] == "granted"
        native = httpx.Client(
            base_url=served.running.base_url, headers={"Authorization": f"Bearer {center.token}"}, timeout=30
        )
        with native:
            recorded = center.wait_call(call_id, lambda c: c["recording_url"] is not None, 30)
            core_id = recorded["recording_url"].rsplit("/", 2)[-2]
            deadline = time.monotonic() + 90
            core = native.get(f"/v1/calls/{core_id}").json()
            while core["status"] not in ("completed", "failed") and time.monotonic() < deadline:
                time.sleep(0.2)
                core = native.get(f"/v1/calls/{core_id}").json()
            assert core["status"] == "completed", core
            assert core["origin"] == "contact_center" and core["recording_filename"].endswith(".wav")
            normalized = native.get(recorded["recording_url"].removeprefix(served.running.base_url))
            assert normalized.status_code == 200 and normalized.headers["content-type"] == "audio/mpeg"
    finally:
        agent.stop()
        end_user.stop()
        center.api.close()


# The SIP timeout toward a dead port on one database; the contact center's side runs on both in tests/live.
@pytest.mark.parametrize("served", ["sqlite"], indirect=True)
def test_an_agent_who_does_not_answer_fails_the_call_and_is_idle_again(served: Served, tmp_path: Path) -> None:
    center = new_center(served.admin, served.running.base_url)
    end_user = end_user_phone(tmp_path)
    try:
        wire_carrier(center, served.running.base_url, end_user.port)
        # Nothing listens there: the agent's leg fails (timeout or ICMP), the end user is never dialed.
        center.add_agent("ghost@somedomain.com", endpoint_host=f"127.0.0.1:{free_udp_port()}", status="available")
        created = center.create(
            {"call_type": "Voice Outbound (API)", "agent_email": "ghost@somedomain.com", "end_user_number": END_USER}
        )
        assert created.status_code == 201, created.text
        failed = center.wait_call(created.json()["id"], ended, 120)
        assert failed["status"] == "failed" and failed["fail_reason"].startswith("agent_"), failed
        assert failed["connected_at"] is None and failed["ends_at"] is not None
        assert [p["status"] for p in failed["participants"]] == ["failed", "failed"]
        assert center.agent("ghost@somedomain.com")["status"] == "available"
        assert end_user.process.poll() is None  # never called
    finally:
        end_user.stop()
        center.api.close()


def test_queued_calls_go_to_the_longest_idle_available_agent_first(served: Served, tmp_path: Path) -> None:
    center = new_center(served.admin, served.running.base_url)
    first_phone = agent_phone(tmp_path / "first")
    second_phone = agent_phone(tmp_path / "second")
    end_user = end_user_phone(tmp_path, talk_ms=1500, calls=2)  # both end users behind one carrier
    try:
        wire_carrier(center, served.running.base_url, end_user.port)
        rested = center.add_agent("rested@somedomain.com", endpoint_host=f"127.0.0.1:{first_phone.port}")
        fresh = center.add_agent("fresh@somedomain.com", endpoint_host=f"127.0.0.1:{second_phone.port}")
        menu = center.add_menu("Sales", menu_type="mobile_menu", agent_ids=[fresh, rested])
        # "rested" has been idle longer: available before "fresh" (both available when the calls come in).
        rested_at = center.set_agent("rested@somedomain.com", status="available")["last_idle_at"]
        while center.set_agent("fresh@somedomain.com", status="available")["last_idle_at"] == rested_at:
            center.set_agent("fresh@somedomain.com", status="unavailable")
        body = {"call_type": "Voice Inbound (API)", "menu_id": menu, "end_user_number": END_USER}
        first = center.create(body)
        assert first.status_code == 201, first.text
        taken = center.wait_call(first.json()["id"], lambda c: c["agent_info"] is not None)
        assert taken["agent_info"]["id"] == rested
        second = center.create(body)
        assert second.status_code == 201, second.text
        taken_second = center.wait_call(second.json()["id"], lambda c: c["agent_info"] is not None)
        assert taken_second["agent_info"]["id"] == fresh  # the only available one left
        for call_id in (first.json()["id"], second.json()["id"]):
            check_finished(center.wait_call(call_id, ended), center)
        code, output = end_user.result()
        assert code == 0, output
    finally:
        first_phone.stop()
        second_phone.stop()
        end_user.stop()
        center.api.close()


def test_an_agent_phone_refused_by_the_target_policy_at_dial_time_fails_the_call_before_any_packet(
    served: Served, tmp_path: Path
) -> None:
    center = new_center(served.admin, served.running.base_url)
    end_user = end_user_phone(tmp_path)
    trap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        trap.bind(("127.0.0.2", 0))  # loopback, but not the allow-listed 127.0.0.1
        wire_carrier(center, served.running.base_url, end_user.port)
        agent_id = center.add_agent("moved@somedomain.com", status="available")
        # Stored before the policy, or a name that resolves elsewhere now: only the dial-time check can refuse it.
        moved = f"127.0.0.2:{trap.getsockname()[1]}"
        _set_agent_host(served, agent_id, moved)
        created = center.create(
            {"call_type": "Voice Outbound (API)", "agent_email": "moved@somedomain.com", "end_user_number": END_USER}
        )
        assert created.status_code == 201, created.text
        failed = center.wait_call(created.json()["id"], ended, 60)
        assert (failed["status"], failed["fail_reason"]) == ("failed", "agent_unreachable"), failed
        assert f"refusing to call SIP host {moved}: 127.0.0.2 is a loopback address" in failed["fail_details"]
        assert end_user.process.poll() is None  # never called
        trap.settimeout(1.0)
        with pytest.raises(TimeoutError):
            trap.recv(65535)
    finally:
        trap.close()
        end_user.stop()
        center.api.close()


def _set_agent_host(served: Served, agent_id: int, host: str) -> None:
    async def move() -> None:
        engine = create_engine(served.running.settings)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                await session.execute(update(Agent).where(Agent.id == agent_id).values(endpoint_host=host))
        finally:
            await engine.dispose()

    asyncio.run(move())
