"""The CCAI call API without the engine: every documented error, the call object, scheduled calls, flags,
lists and wait times, plus the admin API and the native `/v1/calls` view (SQLite and PostgreSQL)."""

# ruff: noqa: E501 - the error table keeps one documented case per line, readable against the seed

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from callplane.testing.factories import Admin
from callplane.testing.server import RunningServer
from tests.contact_center.support import END_USER, END_USER_E164, OUTBOUND, Center, basic, new_center

# The call object's keys in the order the seed's 201 examples show them.
CALL_KEYS = [
    "id", "parent_id", "lang", "call_type", "status", "created_at", "queued_at", "assigned_at", "connected_at",
    "ends_at", "scheduled_at", "wait_duration", "call_duration", "hold_duration", "rating", "has_feedback",
    "voip_provider", "out_ticket_id", "out_ticket_url", "verified", "recording_url", "recording_permission",
    "voicemail_reason", "deflection", "disconnected_by", "fail_reason", "fail_details", "support_number",
    "selected_menu", "menu_path", "agent_info", "end_user", "photos", "videos", "transfers", "deflection_details",
    "participants", "offer_type", "offer_events", "answer_type", "outbound_number",
]  # fmt: skip
PARTICIPANT_KEYS = [
    "id", "type", "status", "call_id", "user_id", "end_user_id", "call_duration", "hold_duration", "connected_at",
    "ended_at", "fail_reason",
]  # fmt: skip


@pytest.fixture(scope="module")
def centers(server: RunningServer, admin: Admin) -> Iterator[tuple[Center, Center]]:
    """A furnished contact center, and a bare one (an agent, no outbound numbers)."""
    full = new_center(admin, server.base_url)
    full.admin.post(full.path("/outbound-numbers"), {"number": OUTBOUND})
    full.add_agent("agent@somedomain.com", first_name="Admin", last_name="UJET", status="available")
    full.add_agent("busy@somedomain.com", status="unavailable")
    full.add_agent("allen@somedomain.com", can_place_calls=False, status="available")
    full.admin.post(
        full.path("/crm-tickets"), {"ticket_id": "71450", "out_contact_id": "381630957514", "number": END_USER}
    )
    queue = [full.agents["busy@somedomain.com"]]
    full.add_menu(
        "Lock Star", menu_type="ivr_menu", languages=["en", "de"], output_msg="You selected Lock Star.", agent_ids=queue
    )
    full.add_menu("Web", menu_type="web_menu", agent_ids=queue)
    full.add_menu("App", menu_type="mobile_menu", agent_ids=queue)
    full.add_menu("Closed", menu_type="mobile_menu", state="after_hours")
    full.add_menu("Redirected", menu_type="mobile_menu", state="manual_redirection")
    child = full.add_menu("Locks", menu_type="ivr_menu", parent_id=full.menus["Lock Star"], position=1, agent_ids=queue)
    assert child
    bare = new_center(admin, server.base_url)
    bare.add_agent("agent@somedomain.com", status="available")
    yield full, bare
    full.api.close()
    bare.api.close()


OUT = {"call_type": "Voice Outbound (API)", "lang": "en"}
IN = {"call_type": "Voice Inbound (API)", "lang": "en", "recording_permission": "recording_permission_granted"}
LATER = (datetime.now(UTC) + timedelta(days=2)).isoformat()
SCHED = {"call_type": "Voice Scheduled (API)", "lang": "en", "scheduled_at": LATER}

# (case, body with {menu names} to fill, status, message); messages are the seed's, word for word.
ERRORS: list[Any] = [
    ("invalid call type", {**OUT, "call_type": "InvalidCallType", "agent_email": "agent@somedomain.com"}, "Invalid call type"),
    ("no call type", {"agent_email": "agent@somedomain.com", "end_user_number": END_USER}, "Invalid call type"),
    ("agent email required", {**OUT, "end_user_number": "+1 205-123-4567"}, "Agent email required"),
    ("not a valid agent email", {**OUT, "agent_email": "admin@somedomain.com", "end_user_number": END_USER}, "Not a valid agent email"),
    ("agent may not call", {**OUT, "agent_email": "allen@somedomain.com", "end_user_number": END_USER}, "Agent does not have access to make calls"),
    ("ticket or number required", {**OUT, "agent_email": "agent@somedomain.com"}, "ticket_id or end_user_number required"),
    ("contact not found", {**OUT, "agent_email": "agent@somedomain.com", "outbound_number": "+1 760-410-8538", "ticket_id": 1}, "Contact not found"),
    ("number not well-formed", {**OUT, "agent_email": "agent@somedomain.com", "outbound_number": "+1 760-410-8538", "end_user_number": "123123"}, "end_user_number is not well-formed"),
    ("agent not available", {**OUT, "agent_email": "busy@somedomain.com", "end_user_number": "+1 205-123-4567"}, "Agent is not available to take this call"),
    ("outbound language not found", {**OUT, "lang": "xy", "agent_email": "agent@somedomain.com", "end_user_number": END_USER}, "Language 'xy' is not found"),
    ("deprecated alias, same rules", {"call_type": "OutboundCall", "end_user_number": END_USER}, "Agent email required"),
    ("inbound invalid call type", {**IN, "call_type": "InvalidCallType", "menu_id": "{Lock Star}", "end_user_number": END_USER}, "Invalid call type"),
    ("inbound menu_id required", {**IN, "end_user_number": END_USER}, "menu_id is required"),
    ("inbound menu_id malformed", {**IN, "menu_id": "menu_999", "end_user_number": END_USER}, "menu_id is not well formed"),
    ("inbound menu_id not found", {**IN, "menu_id": 999999, "end_user_number": END_USER}, "menu_id 999999 is not found"),
    ("inbound web menu", {**IN, "menu_id": "{Web}", "end_user_number": END_USER}, "Only IVR and mobile menu IDs are permitted"),
    ("inbound number required", {**IN, "menu_id": "{Lock Star}"}, "end_user_number is required"),
    ("inbound number not well formed", {**IN, "menu_id": "{Lock Star}", "end_user_number": "+1 999-657-12"}, "end_user_number is not well formed"),
    ("inbound language not available", {**IN, "lang": "fr", "menu_id": "{Lock Star}", "end_user_number": END_USER}, "Language 'fr' is not available"),
    ("inbound language not found", {**IN, "lang": "xy", "menu_id": "{Lock Star}", "end_user_number": END_USER}, "Language 'xy' is not found"),
    ("inbound after hours", {**IN, "menu_id": "{Closed}", "end_user_number": END_USER}, "Menu is in 'after hours' state, can't accept incoming calls"),
    ("inbound manual redirection", {**IN, "menu_id": "{Redirected}", "end_user_number": END_USER}, "Menu is in 'manual redirection' state, can't accept calls"),
    ("inbound deprecated alias", {**IN, "call_type": "IncomingCall", "end_user_number": END_USER}, "menu_id is required"),
    ("scheduled invalid call type", {**SCHED, "call_type": "InvalidCallType", "menu_id": "{App}", "end_user_number": END_USER}, "Invalid call type"),
    ("scheduled menu_id required", {**SCHED, "end_user_number": END_USER}, "menu_id is required"),
    ("scheduled menu_id malformed", {**SCHED, "menu_id": "menu_999", "end_user_number": END_USER}, "menu_id is not well formed"),
    ("scheduled menu_id not found", {**SCHED, "menu_id": 999999, "end_user_number": END_USER}, "menu_id 999999 is not found"),
    ("scheduled ivr menu", {**SCHED, "menu_id": "{Lock Star}", "end_user_number": END_USER}, "Only mobile and web menu IDs are permitted"),
    ("scheduled number required", {**SCHED, "menu_id": "{App}"}, "end_user_number is required"),
    ("scheduled number not well formed", {**SCHED, "menu_id": "{App}", "end_user_number": "+1 999-657-12"}, "end_user_number is not well formed"),
    ("scheduled_at required", {**SCHED, "scheduled_at": None, "menu_id": "{App}", "end_user_number": END_USER}, "scheduled_at is required"),
    ("scheduled language not available", {**SCHED, "lang": "fr", "menu_id": "{App}", "end_user_number": END_USER}, "Language 'fr' is not available"),
    ("scheduled language not found", {**SCHED, "lang": "xy", "menu_id": "{App}", "end_user_number": END_USER}, "Language 'xy' is not found"),
    ("scheduled after hours", {**SCHED, "menu_id": "{Closed}", "end_user_number": END_USER}, "Menu is in 'after hours' state, can't accept incoming calls"),
    ("scheduled manual redirection", {**SCHED, "menu_id": "{Redirected}", "end_user_number": END_USER}, "Menu is in 'manual redirection' state, can't accept calls"),
    ("scheduled in the past", {**SCHED, "scheduled_at": "2019-09-15T00:19:14.421Z", "menu_id": "{App}", "end_user_number": END_USER}, "scheduled_at must be a future time"),
    ("scheduled unknown parent call", {**SCHED, "call_id": 999999, "end_user_number": END_USER}, "call_id 999999 is not found"),
    ("scheduled deprecated alias", {**SCHED, "call_type": "ScheduledCall", "end_user_number": END_USER}, "menu_id is required"),
]  # fmt: skip


def _fill(center: Center, body: dict[str, Any]) -> dict[str, Any]:
    filled = {}
    for key, value in body.items():
        if value is None:
            continue
        if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
            value = center.menus[value[1:-1]]
        filled[key] = value
    return filled


@pytest.mark.parametrize(("body", "message"), [pytest.param(b, m, id=c) for c, b, m in ERRORS])
def test_every_documented_error_is_a_400_with_its_message(
    centers: tuple[Center, Center], body: dict[str, Any], message: str
) -> None:
    full, _ = centers
    response = full.create(_fill(full, body))
    assert response.status_code == 400, response.text
    assert response.json() == {"message": message}


def test_no_outbound_number_to_use_is_a_202_that_echoes_the_request(centers: tuple[Center, Center]) -> None:
    _, bare = centers
    body = {**OUT, "agent_email": "agent@somedomain.com", "end_user_number": "+1 205-123-4567"}
    response = bare.create(body)
    assert response.status_code == 202, response.text
    assert response.json() == body
    listed = bare.api.get("/apps/api/v1/calls")
    assert listed.json() == []  # nothing was placed


def test_authentication_and_not_found(server: RunningServer, centers: tuple[Center, Center]) -> None:
    full, bare = centers
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        response = anonymous.post("/apps/api/v1/calls", json={**OUT})
        assert response.status_code == 401 and response.json() == {"message": "Unauthorized"}
        assert response.headers["www-authenticate"].startswith("Basic")
        wrong = anonymous.get("/apps/api/v1/calls", headers={"Authorization": basic("acme", "nope")})
        assert wrong.status_code == 401
        token_as_user = anonymous.get("/apps/api/v1/calls", headers={"Authorization": basic(full.token, "")})
        assert token_as_user.status_code == 200
    unknown = full.api.get("/apps/api/v1/nothing/here")
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "Resource not found - Please check your subdomain"}
    missing = full.api.get("/apps/api/v1/calls/999999")
    assert missing.status_code == 404 and missing.json() == {"message": "Resource not found"}
    assert full.api.get("/apps/api/v1/calls/abc").status_code == 404
    # Tenant scope: another account's call is not found.
    created = full.create(_fill(full, {**IN, "menu_id": "{Lock Star}", "end_user_number": END_USER}))
    assert created.status_code == 201, created.text
    assert bare.api.get(f"/apps/api/v1/calls/{created.json()['id']}").status_code == 404


def test_an_outbound_call_is_assigned_with_the_documented_object(centers: tuple[Center, Center]) -> None:
    full, _ = centers
    full.set_agent("agent@somedomain.com", status="available")
    response = full.create(
        {**OUT, "agent_email": "Agent@SomeDomain.com", "end_user_number": END_USER, "outbound_number": OUTBOUND}
    )
    assert response.status_code == 201, response.text
    call = response.json()
    assert list(call) == CALL_KEYS
    assert call["call_type"] == "Voice Outbound (API)" and call["status"] == "assigned"
    assert call["assigned_at"] is not None and call["queued_at"] is None and call["connected_at"] is None
    assert call["created_at"].endswith("Z") and len(call["created_at"]) == len("2019-06-07T01:27:30.406Z")
    assert call["agent_info"] == {
        "id": full.agents["agent@somedomain.com"],
        "agent_number": None,
        "name": "Admin UJET",
        "last_name": "UJET",
        "first_name": "Admin",
        "avatar_url": None,
    }
    assert call["outbound_number"] == OUTBOUND and call["fail_reason"] == "nothing"
    assert call["disconnected_by"] == "disconnected_by_unknown" and call["recording_permission"] == "not_asked"
    assert [(p["type"], p["status"]) for p in call["participants"]] == [("agent", "waiting"), ("end_user", "waiting")]
    assert all(list(p) == PARTICIPANT_KEYS and p["call_id"] == call["id"] for p in call["participants"])
    assert call["participants"][0]["user_id"] == full.agents["agent@somedomain.com"]
    # The agent is now on that call: a second call for them is refused.
    again = full.create({**OUT, "agent_email": "agent@somedomain.com", "end_user_number": END_USER})
    assert again.status_code == 400 and again.json() == {"message": "Agent is not available to take this call"}
    assert full.agent("agent@somedomain.com")["status"] == "busy"

    # One model: the native API lists it as a core call.
    native = httpx.get(
        f"{full.api.base_url}/v1/calls",
        headers={"Authorization": f"Bearer {full.token}"},
        params={"origin": "contact_center"},
    )
    assert native.status_code == 200, native.text
    core = [c for c in native.json()["calls"] if c["extras"].get("contact_center_call_id") == call["id"]]
    assert len(core) == 1
    assert core[0]["origin"] == "contact_center" and core[0]["direction"] == "outbound"
    assert core[0]["contact_number"] == END_USER_E164 and core[0]["extras"]["contact_center_status"] == "assigned"


def test_a_ticket_resolves_to_its_contact(centers: tuple[Center, Center]) -> None:
    full, _ = centers
    full.add_agent("ticket@somedomain.com", status="available")
    response = full.create(
        {**OUT, "agent_email": "ticket@somedomain.com", "ticket_id": "71450", "end_user_number": "+1 205-123-4567"}
    )
    assert response.status_code == 201, response.text
    call = response.json()
    assert call["out_ticket_id"] == "71450"
    assert call["end_user"]["out_contact_id"] == "381630957514" and call["end_user"]["id"]
    assert call["participants"][1]["end_user_id"] == call["end_user"]["id"]


def test_inbound_and_scheduled_calls_queue_on_their_menu_and_a_scheduled_call_can_be_cancelled(
    centers: tuple[Center, Center],
) -> None:
    full, _ = centers
    inbound = full.create(_fill(full, {**IN, "menu_id": "{Locks}", "end_user_number": "+82-10-6861-2345"}))
    assert inbound.status_code == 201, inbound.text
    call = inbound.json()
    assert list(call) == CALL_KEYS
    assert call["status"] == "queued" and call["queued_at"] is not None and call["agent_info"] is None
    assert call["recording_permission"] == "granted"
    lock_star, locks = full.menus["Lock Star"], full.menus["Locks"]
    assert call["selected_menu"] == {
        "id": locks, "name": "Locks", "parent_id": lock_star, "position": 1, "deleted": False,
        "menu_type": "ivr_menu", "output_msg": None, "hidden": False,
    }  # fmt: skip
    assert call["menu_path"] == {
        "items_count": 2,
        "name": "Lock Star / Locks",
        "materialized_path": f"{lock_star}/{locks}",
    }
    assert [p["type"] for p in call["participants"]] == ["end_user"]
    # The list renders the same object (its views are loaded in batches).
    listed = full.api.get("/apps/api/v1/calls", params={"menu_id": locks}).json()
    one = full.call(call["id"])
    assert [item["id"] for item in listed] == [call["id"]]
    assert {**listed[0], "wait_duration": 0} == {**one, "wait_duration": 0}

    scheduled = full.create(
        _fill(full, {**SCHED, "menu_id": "{App}", "end_user_number": END_USER, "ticket_id": "71450"})
    )
    assert scheduled.status_code == 201, scheduled.text
    first = scheduled.json()
    assert first["status"] == "scheduled" and first["call_type"] == "Voice Scheduled (API)"
    assert first["scheduled_at"] is not None and first["queued_at"] is None
    # call_id links a parent call; menu_id may then be left out.
    child = full.create({**SCHED, "call_id": call["id"], "end_user_number": END_USER})
    assert child.status_code == 400  # the parent's menu is an IVR menu: scheduled calls take mobile/web only
    linked = full.create({**SCHED, "call_id": first["id"], "end_user_number": END_USER})
    assert linked.status_code == 201, linked.text
    assert linked.json()["parent_id"] == first["id"]

    cancelled = full.api.patch(f"/apps/api/v1/calls/scheduled/{first['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "failed" and cancelled.json()["fail_reason"] == "cancelled"
    twice = full.api.patch(f"/apps/api/v1/calls/scheduled/{first['id']}/cancel")
    assert twice.status_code == 400
    queued = full.api.patch(f"/apps/api/v1/calls/scheduled/{call['id']}/cancel")
    assert queued.status_code == 400 and "scheduled" in queued.json()["message"]
    bulk = full.api.patch(
        "/apps/api/v1/calls/scheduled/cancel", json={"call_ids": [linked.json()["id"], first["id"], 999999]}
    )
    assert bulk.status_code == 200, bulk.text
    assert bulk.json()["cancelled_call_ids"] == [linked.json()["id"]]
    assert [item["id"] for item in bulk.json()["failed"]] == [first["id"], 999999]
    failed = {c["id"] for c in full.api.get("/apps/api/v1/calls", params={"status": "failed"}).json()}
    assert {first["id"], linked.json()["id"]} <= failed  # cancelled calls read (and are found) as failed


def test_customer_flags_list_filters_and_wait_times(centers: tuple[Center, Center]) -> None:
    full, _ = centers
    # Its own calls (under xdist this worker may not have run the tests that made the module's others), and its
    # own agent for the outbound one, so the other tests' agent stays as they expect it.
    full.add_agent("flags@somedomain.com", status="available")
    outbound = {**OUT, "agent_email": "flags@somedomain.com", "end_user_number": END_USER}
    assert full.create({**outbound, "outbound_number": OUTBOUND}).status_code == 201
    earlier = full.create(_fill(full, {**IN, "menu_id": "{Lock Star}", "end_user_number": END_USER}))
    assert earlier.status_code == 201, earlier.text
    created = full.create(_fill(full, {**IN, "menu_id": "{Lock Star}", "end_user_number": END_USER}))
    assert created.status_code == 201, created.text
    call_id = created.json()["id"]
    flags = full.api.get(f"/apps/api/v1/calls/{call_id}/customer_flag")
    assert flags.json() == {"verified_customer": False, "bad_actor": False, "repeat_customer": False}
    patched = full.api.patch(
        f"/apps/api/v1/calls/{call_id}/customer_flag", json={"verified_customer": True, "repeat_customers": True}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json() == {"verified_customer": True, "bad_actor": False, "repeat_customer": True}
    assert full.call(call_id)["verified"] is True
    assert full.api.patch(f"/apps/api/v1/calls/{call_id}/customer_flag", json={"bad_actor": "maybe"}).status_code == 400

    queued = full.api.get("/apps/api/v1/calls", params={"status": "queued", "per": 1, "page": 1})
    assert queued.status_code == 200 and len(queued.json()) == 1 and int(queued.headers["Total"]) >= 2
    assert queued.json()[0]["id"] == call_id  # newest first
    second_page = full.api.get("/apps/api/v1/calls", params={"status": "queued", "per": 1, "page": 2}).json()
    assert second_page and second_page[0]["id"] != call_id
    by_type = full.api.get("/apps/api/v1/calls", params={"call_type": "Voice Outbound (API)"}).json()
    assert by_type and {c["call_type"] for c in by_type} == {"Voice Outbound (API)"}
    assert full.api.get("/apps/api/v1/calls", params={"call_type": "Nope"}).status_code == 400

    waits = full.api.get("/apps/api/v1/wait_times", params={"lang": "en"})
    assert waits.status_code == 200, waits.text
    by_menu = {item["menu_id"]: item for item in waits.json()}
    lock_star = full.menus["Lock Star"]
    assert by_menu[lock_star]["materialized_path"] == str(lock_star)
    assert by_menu[lock_star]["wait"] >= 1  # somebody is queued and no agent of the queue is available
    german = full.api.get("/apps/api/v1/wait_times", params={"lang": "de"}).json()
    assert [item["menu_id"] for item in german] == [lock_star]  # the only queue that offers German
    assert full.api.get("/apps/api/v1/wait_times", params={"channel_type": "chat"}).json() == []


def test_admin_api_manages_agents_menus_numbers_and_tickets(server: RunningServer, admin: Admin) -> None:
    center = new_center(admin, server.base_url)
    http = admin.client
    base = f"/v1/admin{center.path('')}"
    assert http.post(f"{base}/agents", json={"email": "a@x.io", "endpoint_user": "a"}).status_code == 422  # no host
    agent_id = center.add_agent("a@x.io", agent_number="1001", avatar_url="https://x.io/a.png")
    by_uri = center.admin.post(
        center.path("/agents"), {"email": "u@x.io", "sip_uri": "sip:ua@pbx.example.com:5062;transport=udp"}
    )
    assert (by_uri["endpoint_type"], by_uri["endpoint_user"], by_uri["endpoint_host"]) == (
        "SIP",
        "ua",
        "pbx.example.com:5062",
    )
    # an agent's phone is a customer-named SIP target: a private address is refused (the SSRF policy)
    private = http.post(f"{base}/agents", json={"email": "w@x.io", "sip_uri": "sip:ua@10.0.0.7:5062"})
    assert private.status_code == 422 and "10.0.0.7 is a private address" in private.json()["detail"]
    assert http.post(f"{base}/agents", json={"email": "v@x.io", "sip_uri": "sip:nohost"}).status_code == 422
    phone = {"email": "p@x.io", "endpoint_type": "PHONE", "endpoint_user": "+1 415-555-0100"}
    assert http.post(f"{base}/agents", json=phone).status_code == 422  # a phone needs a trunk
    assert (
        http.post(f"{base}/agents", json={"email": "A@x.io", "endpoint_user": "a", "endpoint_host": "h"}).status_code
        == 409
    )
    first = center.admin.post(center.path("/outbound-numbers"), {"number": "+1 760-867-5309"})
    second = center.admin.post(center.path("/outbound-numbers"), {"number": OUTBOUND, "is_default": True})
    numbers = http.get(f"{base}/outbound-numbers").json()["outbound_numbers"]
    assert [(n["id"], n["is_default"]) for n in numbers] == [(first["id"], False), (second["id"], True)]
    assert http.post(f"{base}/outbound-numbers", json={"number": "123"}).status_code == 422
    menu = center.admin.post(
        center.path("/menus"), {"name": "Sales", "agent_ids": [agent_id], "languages": ["en", "es"]}
    )
    assert menu["agent_ids"] == [agent_id] and menu["state"] == "open"
    closed = center.admin.patch(center.path(f"/menus/{menu['id']}"), {"state": "after_hours", "agent_ids": []})
    assert closed["state"] == "after_hours" and closed["agent_ids"] == []
    assert http.post(f"{base}/menus", json={"name": "x", "languages": ["xx"]}).status_code == 422
    assert http.post(f"{base}/menus", json={"name": "x", "menu_type": "sms"}).status_code == 422
    available = center.set_agent("a@x.io", status="available")
    assert available["status"] == "available" and available["last_idle_at"] is not None
    ticket = center.admin.post(
        center.path("/crm-tickets"), {"ticket_id": "7", "out_contact_id": "c7", "number": END_USER}
    )
    assert ticket["number"] == END_USER_E164
    assert http.get(f"{base}/crm-tickets").json()["crm_tickets"][0]["ticket_id"] == "7"
    assert http.get(f"{base}/end-users").json() == {"end_users": []}
    assert http.get("/v1/admin/accounts/nope/contact-center/agents").status_code == 404
    assert http.delete(f"{base}/agents/{agent_id}").status_code == 200
    assert http.get(f"{base}/agents/{agent_id}").status_code == 404
    center.api.close()


def test_an_accounts_rate_limit_applies(server: RunningServer, admin: Admin) -> None:
    center = new_center(admin, server.base_url)
    admin.patch(f"/accounts/{center.account_id}", {"rate_limit_per_minute": 2})
    statuses = [center.api.get("/apps/api/v1/calls").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = center.api.get("/apps/api/v1/wait_times")
    assert limited.json() == {"message": "Too many requests"} and int(limited.headers["retry-after"]) >= 1
    center.api.close()
