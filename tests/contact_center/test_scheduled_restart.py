"""A scheduled call is durable: accepted by one server, due while no server runs, fired once by the next one
(it rings the agent's sipp phone, then the end user, and finishes); a call connected when its server stops ends
once, and its agent is free after the restart. SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from callplane.testing.factories import Admin
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, running_server, scratch_postgres_database
from callplane.testing.sipp import free_udp_port
from tests.contact_center.sipp import agent_phone, end_user_phone, wire_carrier
from tests.contact_center.support import END_USER, Center, basic, new_center
from tests.contact_center.test_calls_e2e import ADMIN_TOKEN, check_finished, ended, voice_settings

DUE_IN_S = 8  # room to stop the first server before the call is due, on a loaded machine


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_scheduled_call_fires_once_after_a_restart(database: str, tmp_path: Path) -> None:
    sip_port = free_udp_port()
    agent = agent_phone(tmp_path)
    end_user = end_user_phone(tmp_path)
    with contextlib.ExitStack() as stack:
        stack.callback(agent.stop)
        stack.callback(end_user.stop)
        url = None
        if database == "postgresql":
            admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
            url = stack.enter_context(scratch_postgres_database(admin_url))
        settings = voice_settings(tmp_path / "data", url, sip_port)

        with running_server(settings) as first:
            admin = Admin(first.base_url, ADMIN_TOKEN)
            center = new_center(admin, first.base_url)
            wire_carrier(center, first.base_url, end_user.port)
            agent_id = center.add_agent(
                "callback@somedomain.com", endpoint_host=f"127.0.0.1:{agent.port}", status="available"
            )
            menu = center.add_menu("Callbacks", menu_type="mobile_menu", agent_ids=[agent_id])
            due = datetime.now(UTC) + timedelta(seconds=DUE_IN_S)
            created = center.create(
                {
                    "call_type": "Voice Scheduled (API)",
                    "lang": "en",
                    "menu_id": menu,
                    "end_user_number": END_USER,
                    "scheduled_at": due.isoformat().replace("+00:00", "Z"),
                }
            )
            assert created.status_code == 201, created.text
            call_id = created.json()["id"]
            assert created.json()["status"] == "scheduled"
            token, account_id = center.token, center.account_id
            admin.client.close()
            center.api.close()
        stopped_at = datetime.now(UTC)
        assert stopped_at < due, "the first server took too long to stop; the test proves nothing"
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.5)  # due while nothing runs

        restarted_at = datetime.now(UTC)
        with (
            running_server(settings) as second,
            httpx.Client(base_url=second.base_url, headers={"Authorization": basic("acme", token)}, timeout=30) as api,
        ):
            admin = Admin(second.base_url, ADMIN_TOKEN)
            center = Center(account_id=account_id, token=token, api=api, admin=admin)
            finished = center.wait_call(call_id, ended, 120)
            check_finished(finished, center)
            assert finished["call_type"] == "Voice Scheduled (API)"
            assert datetime.fromisoformat(finished["queued_at"].replace("Z", "+00:00")) >= restarted_at
            assert finished["scheduled_at"] is not None
            # Once: one contact-center call, two legs (agent, end user), and each sipp took exactly one call.
            assert [c["id"] for c in api.get("/apps/api/v1/calls").json()] == [call_id]
            legs = httpx.get(
                f"{second.base_url}/v1/calls",
                headers={"Authorization": f"Bearer {token}"},
                params={"origin": "voice"},
            ).json()["calls"]
            assert len(legs) == 2
            code, output = end_user.result()
            assert code == 0, output
            code, output = agent.result()
            assert code == 0, output
            admin.client.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_call_connected_when_the_server_stops_ends_once_and_its_agent_is_free_after_the_restart(
    database: str, tmp_path: Path
) -> None:
    sip_port = free_udp_port()
    agent = agent_phone(tmp_path)
    end_user = end_user_phone(tmp_path, talk_ms=60000)  # still talking when the server stops
    with contextlib.ExitStack() as stack:
        stack.callback(agent.stop)
        stack.callback(end_user.stop)
        url = None
        if database == "postgresql":
            admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
            url = stack.enter_context(scratch_postgres_database(admin_url))
        settings = voice_settings(tmp_path / "data", url, sip_port)
        with running_server(settings) as first:
            admin = Admin(first.base_url, ADMIN_TOKEN)
            center = new_center(admin, first.base_url)
            wire_carrier(center, first.base_url, end_user.port)
            center.add_agent("agent@somedomain.com", endpoint_host=f"127.0.0.1:{agent.port}", status="available")
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
            token, account_id = center.token, center.account_id
            admin.client.close()
            center.api.close()
        # A clean stop hangs the legs up (the agent's phone gets our BYE) and ends the call before the process goes.
        code, output = agent.result()
        assert code == 0, output
        with (
            running_server(settings) as second,
            httpx.Client(base_url=second.base_url, headers={"Authorization": basic("acme", token)}, timeout=30) as api,
        ):
            admin = Admin(second.base_url, ADMIN_TOKEN)
            center = Center(account_id=account_id, token=token, api=api, admin=admin)
            center.agents["agent@somedomain.com"] = created.json()["agent_info"]["id"]
            call = center.wait_call(call_id, ended, 60)
            assert call["status"] == "finished" and call["disconnected_by"] == "disconnected_by_system", call
            assert call["connected_at"] is not None and call["ends_at"] is not None
            assert center.agent("agent@somedomain.com")["status"] == "available"
            admin.client.close()
