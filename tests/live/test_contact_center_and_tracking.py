"""The contact center (CCAI call API) and call tracking (Invoca Calls In Progress) driving calls on the in-memory
engine: their state follows the legs' events, as in the sipp end-to-end tests of tests/contact_center and
tests/call_tracking, which keep what needs the wire (audio through the bridge, SIP to a real peer)."""

from __future__ import annotations

import base64
import random
from typing import Any

import httpx

from callplane.testing.engine import FarEnd
from tests.live.support import LiveServer, eventually

END_USER = "+1 859-657-9625"
END_USER_E164 = "+18596579625"
OUTBOUND = "+1 339-219-5276"
CALLER = "+15305550123"
DESTINATION = "+18005550100"
VERSION = "2022-08-01"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _engine_call(live: LiveServer, to_user: str) -> str:
    calls = eventually(lambda: live.fake.calls_to(to_user), f"a call to {to_user}")
    return calls[-1].call_id


def test_a_contact_center_call_rings_the_agent_then_connects_the_end_user_until_they_hang_up(
    live: LiveServer,
) -> None:
    account = live.admin.network()
    agent_user = f"ada{random.randrange(10**6)}"
    live.fake.route(agent_user, FarEnd(answer_after_s=0.05))
    # the end user talks for a little over a second, then hangs up
    live.fake.route(END_USER_E164, FarEnd(answer_after_s=0.05, hangup_after_s=1.2))
    path = f"/accounts/{account.account_id}/contact-center"
    with (
        httpx.Client(base_url=live.base_url, headers={"Authorization": f"App {account.token}"}, timeout=30) as calls,
        httpx.Client(
            base_url=live.base_url, headers={"Authorization": _basic("acme", account.token)}, timeout=30
        ) as ccai,
    ):
        trunk = calls.post(
            "/calls/1/sip-trunks",
            json={
                "type": "STATIC",
                "name": "carrier",
                "channelLimit": 10,
                "numberFormat": "E164",
                "destinationHosts": ["127.0.0.1:5998"],
            },
        )
        assert trunk.status_code in (200, 201, 202), trunk.text
        live.admin.post(
            f"{path}/outbound-numbers", {"number": OUTBOUND, "trunk_id": trunk.json()["id"], "is_default": True}
        )
        agent_id = live.admin.post(
            f"{path}/agents",
            {"email": "agent@somedomain.com", "sip_uri": f"sip:{agent_user}@127.0.0.1:5999", "status": "available"},
        )["id"]
        created = ccai.post(
            "/apps/api/v1/calls",
            json={
                "call_type": "Voice Outbound (API)",
                "agent_email": "agent@somedomain.com",
                "end_user_number": END_USER,
                "outbound_number": OUTBOUND,
                "lang": "en",
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "assigned"
        call_id = created.json()["id"]

        def status(*wanted: str) -> dict[str, Any] | None:
            call: dict[str, Any] = ccai.get(f"/apps/api/v1/calls/{call_id}").json()
            return call if call["status"] in wanted else None

        connected = eventually(lambda: status("connected", "finished", "failed"), "the call connects")
        assert connected["status"] == "connected", (connected["fail_reason"], connected["fail_details"])
        assert [p["status"] for p in connected["participants"]] == ["connected", "connected"]
        agent_leg, end_user_leg = _engine_call(live, agent_user), _engine_call(live, END_USER_E164)
        assert live.fake.calls[agent_leg].bridged_with == end_user_leg
        dialled = live.fake.calls[end_user_leg].outbound
        assert dialled is not None and dialled.trunk.port == 5998

        def ended() -> dict[str, Any] | None:
            call = status("finished", "failed")
            return call if call is not None and all(p["ended_at"] for p in call["participants"]) else None

        finished = eventually(ended, "the end user hangs up and the agent's leg ends")
        assert finished["status"] == "finished" and finished["disconnected_by"] == "disconnected_by_end_user"
        assert finished["call_duration"] >= 1 and finished["fail_reason"] == "nothing"
        assert {p["status"] for p in finished["participants"]} == {"finished"}
        agent_end = live.fake.calls[agent_leg].ended
        assert agent_end is not None and agent_end.initiator.value == "LOCAL"  # we hung the agent up

        def idle() -> dict[str, Any] | None:
            agent: dict[str, Any] = live.admin.client.get(f"/v1/admin{path}/agents/{agent_id}").json()
            return agent if agent["status"] == "available" else None

        assert eventually(idle, "the agent is idle again")["last_idle_at"] is not None


def test_a_promo_number_call_is_in_progress_while_bridged_and_gone_after_the_caller_hangs_up(
    live: LiveServer,
) -> None:
    network = live.admin.network()
    account = live.admin.client.get(f"/v1/admin/accounts/{network.account_id}").json()
    destination_user = DESTINATION
    live.fake.route(destination_user, FarEnd(answer_after_s=0.05))
    line = f"{random.randrange(0, 10000):04d}"
    dialled, promo_e164 = f"888555{line}", f"+1888555{line}"
    live.admin.post(
        f"/accounts/{network.account_id}/promo-numbers",
        {
            "campaign_id": network.campaign_id,
            "number": dialled,
            "destination": f"sip:{DESTINATION}@127.0.0.1:5997",
            "external_id": "pn-77",
        },
    )
    with httpx.Client(base_url=live.base_url, headers={"Authorization": network.token}, timeout=30) as invoca:

        def current(**params: str) -> list[dict[str, Any]]:
            response = invoca.get(
                f"/api/{VERSION}/calls_in_progress/current_calls.json",
                params={"organization_type": "Network", "id": account["external_id"], **params},
            )
            assert response.status_code == 200, response.text
            found: list[dict[str, Any]] = response.json()["current_calls"]
            return found

        assert current() == []
        caller_leg = live.fake.incoming(dialled, from_user=CALLER, from_display_name="Caller")
        [call] = eventually(lambda: [c for c in current() if c["call_status"] == "bridged"], "the call is bridged")
        assert (call["calling_phone_number"], call["destination_phone_number"], call["called_phone_number"]) == (
            CALLER,
            DESTINATION,
            promo_e164,
        )
        assert (call["promo_number_id"], call["advertiser_campaign_id"]) == ("pn-77", network.campaign_id)
        destination_leg = _engine_call(live, destination_user)
        assert live.fake.calls[caller_leg].bridged_with == destination_leg
        found = current(calling_phone_number="530-555-0123", destination_phone_number="800-555-0100")
        assert [c["transaction_id"] for c in found] == [call["transaction_id"]]

        live.fake.far_end(caller_leg).hang_up()
        eventually(lambda: current() == [] or None, "the call leaves the list")
        # the destination's leg was ended by us once the caller left
        ended = eventually(lambda: live.fake.calls[destination_leg].ended, "the destination leg ends")
        assert ended.initiator.value == "LOCAL"
