"""An agent holds, resumes and transfers a live contact-center call (CCAI call API, callplane's additions) on the
in-memory engine: what each leg is bridged with and hears, and the call object's `transfers[]`, participants and
`hold_duration` (shared/seeds/ccai-platform-call-api.txt)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from callplane.live.hold import HOLD_LOOPS, HOLD_MUSIC
from callplane.media.engine import FileSource
from callplane.testing.engine import BUSY, FakeCall, FarEnd
from tests.live import test_contact_center_and_tracking as contact_center_tests
from tests.live.support import LiveServer, eventually, receiving
from tests.live.test_contact_center_and_tracking import END_USER, END_USER_E164, Center

center = contact_center_tests.center  # the fixture: a contact center on a fresh account

pytestmark = pytest.mark.xdist_group("live-fake-engine")


def _leg(live: LiveServer, to_user: str) -> FakeCall:
    calls = eventually(lambda: [c for c in live.fake.calls_to(to_user) if c.live], f"a live call to {to_user}")
    return calls[-1]


def _hears_music(leg: FakeCall, path: Any = HOLD_MUSIC) -> bool:
    playing = leg.played[-1] if leg.played else None
    return (
        playing is not None
        and playing.completed is None
        and playing.source == FileSource(path)
        and playing.loop_count == HOLD_LOOPS
    )


def _post(center: Center, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return (
        center.ccai.post(f"/apps/api/v1/calls/{path}", json=body)
        if body is not None
        else center.ccai.post(f"/apps/api/v1/calls/{path}")
    )


def _connected_call(live: LiveServer, center: Center) -> tuple[int, FakeCall, FakeCall]:
    """An outbound call from agent one to the end user, connected: its id, the agent's leg and the end user's."""
    phone = center.add_agent("one@somedomain.com", FarEnd(answer_after_s=0.05), status="available")
    live.fake.route(END_USER_E164, FarEnd(answer_after_s=0.05))
    call_id = center.create(
        {"call_type": "Voice Outbound (API)", "agent_email": "one@somedomain.com", "end_user_number": END_USER}
    )
    assert center.reaches(call_id, "connected", "finished", "failed")["status"] == "connected"
    agent, end_user = _leg(live, phone), _leg(live, END_USER_E164)
    eventually(lambda: agent.bridged_with == end_user.call_id, "agent one and the end user are bridged")
    return call_id, agent, end_user


def test_the_agent_holds_the_end_user_who_hears_music_then_resumes(live: LiveServer, center: Center) -> None:
    call_id, agent, end_user = _connected_call(live, center)

    held = _post(center, f"{call_id}/hold")
    assert held.status_code == 200, held.text
    assert end_user.bridged_with is None and agent.bridged_with is None  # the agent hears silence
    assert _hears_music(end_user)
    again = _post(center, f"{call_id}/hold")
    assert (again.status_code, again.json()) == (400, {"message": "The call is already on hold"})
    time.sleep(1.1)
    during = center.call(call_id)
    assert during["hold_duration"] >= 1 and during["transfers"] == []

    resumed = _post(center, f"{call_id}/resume")
    assert resumed.status_code == 200, resumed.text
    assert end_user.bridged_with == agent.call_id
    assert end_user.played[-1].completed is False  # the music stopped
    after = resumed.json()
    assert after["hold_duration"] >= 1
    by_type = {p["type"]: p for p in after["participants"]}
    assert by_type["end_user"]["hold_duration"] >= 1 and by_type["agent"]["hold_duration"] == 0
    not_held = _post(center, f"{call_id}/resume")
    assert (not_held.status_code, not_held.json()) == (400, {"message": "The call is not on hold"})

    # the call's own music, by URL (fetched once under the outbound target policy)
    with receiving() as files:
        files.files["/moh.wav"] = HOLD_MUSIC.read_bytes()[:20000]
        own = _post(center, f"{call_id}/hold", {"music_url": files.url.replace("/events", "/moh.wav")})
        assert own.status_code == 200, own.text
    source = end_user.played[-1].source
    assert isinstance(source, FileSource) and source.path.read_bytes() == HOLD_MUSIC.read_bytes()[:20000]
    assert _post(center, f"{call_id}/resume").status_code == 200

    live.fake.far_end(end_user.call_id).hang_up()
    finished = center.ended(call_id)
    assert finished["status"] == "finished" and finished["hold_duration"] >= 1
    center.agent_reaches("one@somedomain.com", "available")


def test_a_cold_transfer_to_another_agent(live: LiveServer, center: Center) -> None:
    call_id, agent_one, end_user = _connected_call(live, center)
    phone_two = center.add_agent("two@somedomain.com", FarEnd(answer_after_s=0.3), status="available")

    created = _post(center, f"{call_id}/transfers", {"transfer_type": "cold", "agent_email": "two@somedomain.com"})
    assert created.status_code == 201, created.text
    [transfer] = created.json()["transfers"]
    assert transfer["status"] == "transferring" and transfer["to_agent"]["id"] == center.agents["two@somedomain.com"]
    assert _hears_music(end_user)  # while the new agent rings
    eventually(lambda: not agent_one.live, "agent one is hung up at once")
    center.agent_reaches("one@somedomain.com", "available")

    agent_two = _leg(live, phone_two)
    eventually(lambda: end_user.bridged_with == agent_two.call_id, "the end user is bridged to agent two")
    # the call row and its transfers are separate reads of one GET: wait until both show the hand-over
    call = eventually(
        lambda: (
            (c := center.call(call_id))["transfers"][0]["status"] == "transferred" and c["status"] == "connected" and c
        ),
        "done",
    )
    assert call["status"] == "connected" and call["agent_info"]["id"] == center.agents["two@somedomain.com"]
    [done] = call["transfers"]
    assert done["from_agent"]["id"] == center.agents["one@somedomain.com"] and done["fail_reason"] == "nothing"
    assert done["from_menu"] is None and done["to_menu"] is None
    assert [(p["type"], p["user_id"], p["status"]) for p in call["participants"]] == [
        ("agent", center.agents["one@somedomain.com"], "finished"),
        ("end_user", None, "connected"),
        ("agent", center.agents["two@somedomain.com"], "connected"),
    ]
    assert end_user.played[-1].completed is False  # the music stopped at the bridge

    live.fake.far_end(end_user.call_id).hang_up()
    finished = center.ended(call_id)
    assert (finished["status"], finished["disconnected_by"]) == ("finished", "disconnected_by_end_user")
    eventually(lambda: not agent_two.live, "agent two is hung up with the end user")
    center.agent_reaches("two@somedomain.com", "available")


def test_a_warm_transfer_to_a_queue_talks_first_then_completes(live: LiveServer, center: Center) -> None:
    call_id, agent_one, end_user = _connected_call(live, center)
    phone_two = center.add_agent("two@somedomain.com", FarEnd(answer_after_s=0.05), status="available")
    menu = center.live.admin.post(
        f"{center.path}/menus",
        {"name": "Billing", "menu_type": "ivr_menu", "agent_ids": [center.agents["two@somedomain.com"]]},
    )

    created = _post(center, f"{call_id}/transfers", {"transfer_type": "warm", "menu_id": menu["id"]})
    assert created.status_code == 201, created.text
    [transfer] = created.json()["transfers"]
    assert transfer["to_menu"]["name"] == "Billing" and transfer["to_menu"]["materialized_path"] == str(menu["id"])
    agent_two = _leg(live, phone_two)
    eventually(lambda: agent_one.bridged_with == agent_two.call_id, "the agents talk")
    assert _hears_music(end_user) and end_user.bridged_with is None
    busy = _post(center, f"{call_id}/hold")
    assert (busy.status_code, busy.json()) == (400, {"message": "A transfer of this call is in progress"})
    time.sleep(1.0)

    completed = _post(center, f"{call_id}/transfers/{transfer['id']}/complete")
    assert completed.status_code == 200, completed.text
    eventually(lambda: end_user.bridged_with == agent_two.call_id, "the end user is bridged to agent two")
    eventually(lambda: not agent_one.live, "agent one left")
    call = center.call(call_id)
    [done] = call["transfers"]
    assert done["status"] == "transferred" and done["to_agent"]["id"] == center.agents["two@somedomain.com"]
    assert call["hold_duration"] >= 1 and call["agent_info"]["id"] == center.agents["two@somedomain.com"]
    end_user_part = next(p for p in call["participants"] if p["type"] == "end_user")
    assert end_user_part["hold_duration"] >= 1

    live.fake.far_end(agent_two.call_id).hang_up()
    finished = center.ended(call_id)
    assert (finished["status"], finished["disconnected_by"]) == ("finished", "disconnected_by_agent")
    eventually(lambda: not end_user.live, "the end user is hung up with agent two")
    center.agent_reaches("two@somedomain.com", "available")
    center.agent_reaches("one@somedomain.com", "available")


def test_a_cold_transfer_to_a_queue_waits_for_a_free_agent_with_music(live: LiveServer, center: Center) -> None:
    call_id, _, end_user = _connected_call(live, center)
    phone_two = center.add_agent("two@somedomain.com", FarEnd(answer_after_s=0.05), status="unavailable")
    menu = center.live.admin.post(
        f"{center.path}/menus",
        {"name": "Sales", "menu_type": "ivr_menu", "agent_ids": [center.agents["two@somedomain.com"]]},
    )
    created = _post(center, f"{call_id}/transfers", {"menu_id": menu["id"]})
    assert created.status_code == 201, created.text
    queued = center.reaches(call_id, "queued")
    assert queued["transfers"][0]["status"] == "transferring" and queued["selected_menu"]["name"] == "Sales"
    assert _hears_music(end_user)

    center.set_agent("two@somedomain.com", status="available")
    agent_two = _leg(live, phone_two)
    eventually(lambda: end_user.bridged_with == agent_two.call_id, "the end user is bridged to agent two")
    call = center.reaches(call_id, "connected")
    assert call["transfers"][0]["status"] == "transferred"
    assert call["transfers"][0]["to_agent"]["id"] == center.agents["two@somedomain.com"]
    live.fake.far_end(end_user.call_id).hang_up()
    assert center.ended(call_id)["status"] == "finished"


def test_a_warm_transfer_whose_agent_is_busy_fails_and_the_first_agent_resumes(
    live: LiveServer, center: Center
) -> None:
    call_id, agent_one, end_user = _connected_call(live, center)
    center.add_agent("busy@somedomain.com", FarEnd(fail=BUSY), status="available")
    created = _post(center, f"{call_id}/transfers", {"transfer_type": "warm", "agent_email": "busy@somedomain.com"})
    assert created.status_code == 201, created.text

    call = eventually(lambda: (c := center.call(call_id))["transfers"][0]["status"] == "failed" and c, "it fails")
    assert call["transfers"][0]["fail_reason"] == "agent_busy" and call["status"] == "connected"
    assert _hears_music(end_user)  # still on hold with agent one
    center.agent_reaches("busy@somedomain.com", "available")
    assert _post(center, f"{call_id}/resume").status_code == 200
    assert end_user.bridged_with == agent_one.call_id

    refused = _post(center, f"{call_id}/transfers", {"agent_email": "nobody@somedomain.com"})
    assert (refused.status_code, refused.json()) == (400, {"message": "Not a valid agent email"})
    live.fake.far_end(end_user.call_id).hang_up()
    assert center.ended(call_id)["status"] == "finished"


def test_a_warm_transfer_called_off_leaves_the_end_user_with_the_first_agent(live: LiveServer, center: Center) -> None:
    call_id, agent_one, end_user = _connected_call(live, center)
    phone_two = center.add_agent("two@somedomain.com", FarEnd(answer_after_s=0.05), status="available")
    created = _post(center, f"{call_id}/transfers", {"transfer_type": "warm", "agent_email": "two@somedomain.com"})
    assert created.status_code == 201, created.text
    transfer_id = created.json()["transfers"][0]["id"]
    agent_two = _leg(live, phone_two)
    eventually(lambda: agent_one.bridged_with == agent_two.call_id, "the agents talk")

    cancelled = _post(center, f"{call_id}/transfers/{transfer_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    eventually(lambda: not agent_two.live, "agent two is hung up")
    center.agent_reaches("two@somedomain.com", "available")
    assert agent_one.bridged_with is None and _hears_music(end_user)
    call = center.call(call_id)
    assert (call["transfers"][0]["status"], call["transfers"][0]["fail_reason"]) == ("cancelled", "cancelled")
    two = next(p for p in call["participants"] if p["user_id"] == center.agents["two@somedomain.com"])
    eventually(
        lambda: next(
            p for p in center.call(call_id)["participants"] if p["user_id"] == center.agents["two@somedomain.com"]
        )["ended_at"],
        "agent two's part is closed",
    )
    assert two["type"] == "agent"
    again = _post(center, f"{call_id}/transfers/{transfer_id}/cancel")
    assert (again.status_code, again.json()) == (400, {"message": "Only a warm transfer in progress can be cancelled"})
    assert _post(center, f"{call_id}/resume").status_code == 200
    assert end_user.bridged_with == agent_one.call_id

    # the end user hangs up during a second consult: the call finishes, both agents are idle, every part closed
    assert (
        _post(
            center, f"{call_id}/transfers", {"transfer_type": "warm", "agent_email": "two@somedomain.com"}
        ).status_code
        == 201
    )
    agent_two = _leg(live, phone_two)
    eventually(lambda: agent_one.bridged_with == agent_two.call_id, "the agents talk again")
    live.fake.far_end(end_user.call_id).hang_up()
    finished = center.ended(call_id)
    assert finished["status"] == "finished" and finished["transfers"][1]["status"] == "failed"
    assert finished["transfers"][1]["fail_reason"] == "end_user_hung_up"  # the call ended under it
    center.agent_reaches("one@somedomain.com", "available")
    center.agent_reaches("two@somedomain.com", "available")
