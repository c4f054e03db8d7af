"""The contact center (CCAI call API) and call tracking (Invoca Calls In Progress) driving calls on the in-memory
engine: their state follows the legs' events, as in the sipp end-to-end tests of tests/contact_center and
tests/call_tracking, which keep what needs the wire (audio through the bridge, SIP to a real peer)."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from callplane.testing.engine import BUSY, UNREACHABLE, FarEnd
from tests.live.support import LiveServer, eventually

# The tests sharing the fake-engine servers run on one xdist worker, which starts each server once.
pytestmark = pytest.mark.xdist_group("live-fake-engine")

END_USER = "+1 859-657-9625"
END_USER_E164 = "+18596579625"
OUTBOUND = "+1 339-219-5276"
CALLER = "+15305550123"
DESTINATION = "+18005550100"
VERSION = "2022-08-01"


def _engine_call(live: LiveServer, to_user: str) -> str:
    calls = eventually(lambda: live.fake.calls_to(to_user), f"a call to {to_user}")
    return calls[-1].call_id


@dataclass
class Center:
    """A contact center on a fresh account: its CCAI client (HTTP Basic), a carrier trunk and default outbound
    number for the end users' legs, agents whose phones are far ends of the fake engine."""

    live: LiveServer
    path: str
    ccai: httpx.Client
    agents: dict[str, int] = field(default_factory=dict)

    def add_agent(self, email: str, far_end: FarEnd, **values: Any) -> str:
        """An agent whose SIP phone is `far_end`; returns the phone's user (what the engine dials)."""
        phone = f"agent{random.randrange(10**9)}"
        self.live.fake.route(phone, far_end)
        body = {"email": email, "sip_uri": f"sip:{phone}@127.0.0.1:5999", **values}
        self.agents[email] = int(self.live.admin.post(f"{self.path}/agents", body)["id"])
        return phone

    def set_agent(self, email: str, **changes: Any) -> dict[str, Any]:
        return self.live.admin.patch(f"{self.path}/agents/{self.agents[email]}", changes)

    def agent(self, email: str) -> dict[str, Any]:
        found: dict[str, Any] = self.live.admin.client.get(f"/v1/admin{self.path}/agents/{self.agents[email]}").json()
        return found

    def create(self, body: dict[str, Any]) -> int:
        created = self.ccai.post("/apps/api/v1/calls", json=body)
        assert created.status_code == 201, created.text
        call_id: int = created.json()["id"]
        return call_id

    def call(self, call_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self.ccai.get(f"/apps/api/v1/calls/{call_id}").json()
        return found

    def reaches(self, call_id: int, *statuses: str) -> dict[str, Any]:
        """The call once its status is one of `statuses`."""

        def probe() -> dict[str, Any] | None:
            call = self.call(call_id)
            return call if call["status"] in statuses else None

        return eventually(probe, f"contact-center call {call_id} is one of {statuses}")

    def agent_reaches(self, email: str, status: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            agent = self.agent(email)
            return agent if agent["status"] == status else None

        return eventually(probe, f"{email} is {status}")

    def ended(self, call_id: int) -> dict[str, Any]:
        """The call once it and every participant's leg ended."""

        def probe() -> dict[str, Any] | None:
            call = self.call(call_id)
            done = call["status"] in ("finished", "failed") and all(p["ended_at"] for p in call["participants"])
            return call if done else None

        return eventually(probe, f"contact-center call {call_id} ends")


@pytest.fixture
def center(live: LiveServer) -> Iterator[Center]:
    account = live.admin.network()
    path = f"/accounts/{account.account_id}/contact-center"
    basic = "Basic " + base64.b64encode(f"acme:{account.token}".encode()).decode()
    with (
        httpx.Client(base_url=live.base_url, headers={"Authorization": f"App {account.token}"}, timeout=30) as calls,
        httpx.Client(base_url=live.base_url, headers={"Authorization": basic}, timeout=30) as ccai,
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
        yield Center(live, path, ccai)


def test_a_contact_center_call_rings_the_agent_then_connects_the_end_user_until_they_hang_up(
    live: LiveServer, center: Center
) -> None:
    agent_phone = center.add_agent("agent@somedomain.com", FarEnd(answer_after_s=0.05), status="available")
    # the end user talks for a little over a second, then hangs up
    live.fake.route(END_USER_E164, FarEnd(answer_after_s=0.05, hangup_after_s=1.2))
    call_id = center.create(
        {
            "call_type": "Voice Outbound (API)",
            "agent_email": "agent@somedomain.com",
            "end_user_number": END_USER,
            "outbound_number": OUTBOUND,
            "lang": "en",
        }
    )
    assert center.call(call_id)["status"] in ("assigned", "connected")

    connected = center.reaches(call_id, "connected", "finished", "failed")
    assert connected["status"] == "connected", (connected["fail_reason"], connected["fail_details"])
    assert [p["status"] for p in connected["participants"]] == ["connected", "connected"]
    agent_leg, end_user_leg = _engine_call(live, agent_phone), _engine_call(live, END_USER_E164)
    assert live.fake.calls[agent_leg].bridged_with == end_user_leg
    dialled = live.fake.calls[end_user_leg].outbound
    assert dialled is not None and dialled.trunk.port == 5998  # through the carrier trunk

    finished = center.ended(call_id)
    assert finished["status"] == "finished" and finished["disconnected_by"] == "disconnected_by_end_user"
    assert finished["call_duration"] >= 1 and finished["fail_reason"] == "nothing"
    assert {p["status"] for p in finished["participants"]} == {"finished"}
    agent_end = live.fake.calls[agent_leg].ended
    assert agent_end is not None and agent_end.initiator.value == "LOCAL"  # we hung the agent up
    idle = center.agent_reaches("agent@somedomain.com", "available")
    assert idle["last_idle_at"] is not None


def test_a_busy_end_user_fails_the_call_and_the_agent_is_hung_up(live: LiveServer, center: Center) -> None:
    agent_phone = center.add_agent("agent@somedomain.com", FarEnd(), status="available")
    live.fake.route(END_USER_E164, FarEnd(fail=BUSY))
    call_id = center.create(
        {"call_type": "Voice Outbound (API)", "agent_email": "agent@somedomain.com", "end_user_number": END_USER}
    )
    failed = center.ended(call_id)
    assert (failed["status"], failed["fail_reason"]) == ("failed", "end_user_busy"), failed
    assert failed["connected_at"] is None and "BUSY" in failed["fail_details"]
    by_type = {p["type"]: p for p in failed["participants"]}
    assert by_type["agent"]["status"] == "finished" and by_type["agent"]["connected_at"] is not None
    assert (by_type["end_user"]["status"], by_type["end_user"]["fail_reason"]) == ("failed", "end_user_busy")
    agent_end = live.fake.calls[_engine_call(live, agent_phone)].ended
    assert agent_end is not None and agent_end.answered and agent_end.initiator.value == "LOCAL"
    center.agent_reaches("agent@somedomain.com", "available")


def test_an_agent_who_does_not_answer_fails_the_call_and_is_idle_again(live: LiveServer, center: Center) -> None:
    """The agent's phone never answers (the INVITE times out): the call fails before the end user is dialled."""
    center.add_agent("ghost@somedomain.com", FarEnd(fail=UNREACHABLE), status="available")
    end_user_calls = len(live.fake.calls_to(END_USER_E164))
    call_id = center.create(
        {"call_type": "Voice Outbound (API)", "agent_email": "ghost@somedomain.com", "end_user_number": END_USER}
    )
    failed = center.ended(call_id)
    assert failed["status"] == "failed" and failed["fail_reason"].startswith("agent_"), failed
    assert failed["connected_at"] is None and failed["ends_at"] is not None
    assert [p["status"] for p in failed["participants"]] == ["failed", "failed"]
    center.agent_reaches("ghost@somedomain.com", "available")
    assert len(live.fake.calls_to(END_USER_E164)) == end_user_calls  # never dialled


def test_a_queued_call_whose_agent_does_not_answer_goes_to_the_next_agent(live: LiveServer, center: Center) -> None:
    """The agent idle longest is offered the call first; their phone never answers (the INVITE times out), so the
    call goes to the next agent, who takes it until the end user hangs up."""
    center.add_agent("ghost@somedomain.com", FarEnd(fail=UNREACHABLE))
    center.add_agent("real@somedomain.com", FarEnd())
    live.fake.route(END_USER_E164, FarEnd(hangup_after_s=0.5))
    queue = [center.agents["ghost@somedomain.com"], center.agents["real@somedomain.com"]]
    menu = center.live.admin.post(f"{center.path}/menus", {"name": "Help", "menu_type": "ivr_menu", "agent_ids": queue})
    ghost_at = center.set_agent("ghost@somedomain.com", status="available")["last_idle_at"]
    while center.set_agent("real@somedomain.com", status="available")["last_idle_at"] == ghost_at:
        center.set_agent("real@somedomain.com", status="unavailable")
    call_id = center.create({"call_type": "Voice Inbound (API)", "menu_id": menu["id"], "end_user_number": END_USER})

    call = center.ended(call_id)
    assert call["status"] == "finished" and call["agent_info"]["id"] == center.agents["real@somedomain.com"], call
    assert (call["disconnected_by"], call["fail_reason"]) == ("disconnected_by_end_user", "nothing")
    agents = [p for p in call["participants"] if p["type"] == "agent"]
    assert [(p["user_id"], p["status"]) for p in agents] == [
        (center.agents["ghost@somedomain.com"], "failed"),
        (center.agents["real@somedomain.com"], "finished"),
    ]
    assert agents[0]["fail_reason"].startswith("agent_")
    center.agent_reaches("ghost@somedomain.com", "available")


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
