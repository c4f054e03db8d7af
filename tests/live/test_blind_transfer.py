"""A dialog's party sends SIP REFER (a blind transfer, RFC 3515) on the in-memory engine: the engine accepts it for a
bridged call (202) and refuses it otherwise (603); the live plane calls the target, hands the other party over when
it answers (NOTIFY 200, the transferor hung up) or reports the failure (NOTIFY 486), with the dialog's
DIALOG_TRANSFER_* events."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from callplane.testing.engine import BUSY, FarEnd
from tests.live.support import CallsApp, LiveServer, Receiver, eventually

pytestmark = pytest.mark.xdist_group("live-fake-engine")


def _user(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _dialog(live: LiveServer, app: CallsApp, receiver: Receiver) -> tuple[str, str, str, dict[str, Any]]:
    """A caller answered and bridged in a dialog with a callee: (caller's engine id, callee's engine id, dialog id,
    the caller's call)."""
    called, callee = _user("ivr"), _user("bob")
    app.route(called)
    live.fake.route(callee, FarEnd(answer_after_s=0.05))
    caller_engine = live.fake.incoming(called)
    received = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
    created = app.http.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": received["callId"],
            "childCallRequest": {"endpoint": {"type": "SIP", "username": callee, "host": "127.0.0.1:5999"}},
        },
    )
    assert created.status_code == 201, created.text
    dialog_id = created.json()["id"]
    receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_ESTABLISHED")
    callee_engine = live.fake.calls_to(callee)[-1].call_id
    eventually(lambda: live.fake.calls[caller_engine].bridged_with == callee_engine, "bridged")
    return caller_engine, callee_engine, dialog_id, received["properties"]["call"]


def test_a_refer_hands_the_other_party_to_the_target(live: LiveServer, app: CallsApp, receiver: Receiver) -> None:
    caller, callee, dialog_id, caller_call = _dialog(live, app, receiver)
    target = _user("carol")
    live.fake.route(target, FarEnd(answer_after_s=0.2))

    live.fake.far_end(caller).refer(target)
    assert live.fake.calls[caller].refer_answers == [202]
    requested = receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_TRANSFER_REQUESTED")
    assert requested["properties"]["referTo"] == f"sip:{target}@127.0.0.1:5999"
    assert requested["properties"]["transferorCall"]["id"] == caller_call["id"]

    target_engine = eventually(lambda: live.fake.calls_to(target), "the target is called")[-1].call_id
    eventually(lambda: live.fake.calls[callee].bridged_with == target_engine, "the callee is bridged to the target")
    eventually(lambda: not live.fake.calls[caller].live, "the transferor is hung up")
    assert live.fake.calls[caller].transfer_notifications == [(100, "Trying"), (200, "OK")]
    receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_TRANSFER_FINISHED")
    old = app.http.get(f"/calls/1/dialogs/{dialog_id}").json()
    assert old["state"] == "FINISHED"
    # the callee and the target are a new dialog: the callee hanging up ends the target's call too
    live.fake.far_end(callee).hang_up()
    eventually(lambda: not live.fake.calls[target_engine].live, "the target is hung up with the callee")


def test_a_refer_to_a_busy_target_fails_and_one_outside_a_bridge_is_refused(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    caller, callee, dialog_id, _ = _dialog(live, app, receiver)
    busy = _user("dave")
    live.fake.route(busy, FarEnd(fail=BUSY))
    live.fake.far_end(caller).refer(busy)
    failed = receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_TRANSFER_FAILED")
    assert failed["properties"]["errorCode"]["name"] == "BUSY"
    eventually(lambda: (486, "Busy Here") in live.fake.calls[caller].transfer_notifications, "NOTIFY 486")
    assert live.fake.calls[caller].bridged_with == callee  # the two stay together
    live.fake.far_end(caller).hang_up()
    eventually(lambda: not live.fake.calls[callee].live, "the dialog ends as usual")

    # an answered call in no bridge: nobody to hand over, 603
    called = _user("alone")
    app.route(called)
    alone = live.fake.incoming(called)
    received = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
    app.http.post(f"/calls/1/calls/{received['callId']}/answer", json={})
    receiver.wait_type(received["callId"], "CALL_ESTABLISHED")
    live.fake.far_end(alone).refer(_user("erin"))
    assert live.fake.calls[alone].refer_answers == [603]
    live.fake.far_end(alone).hang_up()
    receiver.single_terminal(received["callId"])
