"""Where the Calls API followed its own reading rather than Infobip's guide (seeds/infobip-calls-api-guide.txt), now
the guide's: recording file names, DTMF in prompts and unsolicited, SIP early media, the call and recording
lifecycle events and the start-recording options. On the in-memory engine, SQLite and PostgreSQL
(docs/decisions.md "Part 1 vs the guide")."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from callplane.media.engine import ToneSource
from callplane.testing.engine import FarEnd
from tests.live.support import CallsApp, LiveServer, Receiver, calls_app, eventually

# The tests sharing the fake-engine servers run on one xdist worker, which starts each server once.
pytestmark = pytest.mark.xdist_group("live-fake-engine")


def _user(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _engine_id(live: LiveServer, to_user: str) -> str:
    calls = eventually(lambda: live.fake.calls_to(to_user), f"a call to {to_user}")
    assert len(calls) == 1, calls
    return calls[0].call_id


def _answered_call(live: LiveServer, app: CallsApp, receiver: Receiver, prefix: str) -> tuple[str, str]:
    """An outbound call the far end answered at once: (our call id, the engine's)."""
    callee = _user(prefix)
    call_id = app.create_call(callee)
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    return call_id, _engine_id(live, callee)


def test_a_recording_file_is_named_by_its_file_id_whatever_the_prefix(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    """The guide: "The filename for recordings ... is always fileId.ext"; filePrefix only names SFTP zips."""
    call_id, _ = _answered_call(live, app, receiver, "named")
    recording = {"recording": {"recordingType": "AUDIO", "filePrefix": "sales-"}}
    assert app.http.post(f"/calls/1/calls/{call_id}/start-recording", json=recording).status_code == 200
    assert app.http.post(f"/calls/1/calls/{call_id}/stop-recording").status_code == 200
    [file] = receiver.wait_type(call_id, "CALL_RECORDING_READY")["properties"]["recording"]["files"]
    assert file["name"] == f"{file['id']}.wav"
    [listed] = app.http.get(f"/calls/1/recordings/calls/{call_id}").json()["files"]
    assert listed["name"] == f"{file['id']}.wav"
    app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    receiver.single_terminal(call_id)


def test_keys_stop_prompts_with_the_terminator_reported_and_keys_nothing_collects_are_reported_one_by_one(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    """SAY_FINISHED carries the key that stopped it (the guide: "will include the DTMF input"); a terminator is
    part of what PLAY_FINISHED reports (the guide's example: "capturedDtmf": "12#"); a key pressed while nothing
    collects digits is a DTMF event of its own, one per key (the guide's "unsolicited" DTMF)."""
    call_id, engine_id = _answered_call(live, app, receiver, "keys")
    far_end = live.fake.far_end(engine_id)

    say = {
        "text": "Press any key.",
        "language": "en",
        "loopCount": 100,
        "stopOn": {"type": "DTMF", "terminator": "any"},
    }
    assert app.http.post(f"/calls/1/calls/{call_id}/say", json=say).status_code == 200
    eventually(lambda: live.fake.calls[engine_id].playing, "the prompt plays")
    far_end.send_digits("7")
    said = receiver.wait_type(call_id, "SAY_FINISHED")["properties"]
    assert (said["playedCompletely"], said["capturedDtmf"]) == (False, "7")

    menu = {
        "content": {"type": "TEXT", "text": "Enter your code, then hash.", "language": "en"},
        "loopCount": 100,
        "stopOn": {"type": "DTMF", "terminator": "#"},
    }
    assert app.http.post(f"/calls/1/calls/{call_id}/play", json=menu).status_code == 200
    eventually(lambda: live.fake.calls[engine_id].playing, "the menu plays")
    far_end.send_digits("12#")
    played = receiver.wait_type(call_id, "PLAY_FINISHED")["properties"]
    assert (played["playedCompletely"], played["capturedDtmf"]) == (False, "12#")
    assert not [e for e in receiver.events(call_id) if e["type"] == "DTMF_CAPTURED"]  # the prompts took them

    far_end.send_digits("3*")  # nothing collects: each key on its own

    def dtmf_events() -> list[dict[str, Any]]:
        return [e for e in receiver.events(call_id) if e["type"] == "DTMF_CAPTURED"]

    unsolicited = eventually(lambda: dtmf_events() if len(dtmf_events()) >= 2 else None, "two DTMF events")
    assert sorted((e["properties"]["dtmf"], e["properties"]["timeout"]) for e in unsolicited) == [
        ("*", False),
        ("3", False),
    ]

    capture = {"maxLength": 4, "timeout": 10000, "terminator": "#"}
    assert app.http.post(f"/calls/1/calls/{call_id}/capture/dtmf", json=capture).status_code == 200
    eventually(lambda: live.fake.calls[engine_id].collecting_dtmf, "the capture listens")
    far_end.send_digits("55#")
    captured = eventually(lambda: dtmf_events()[2:], "the capture's event")
    assert [e["properties"]["dtmf"] for e in captured] == ["55"]  # the capture took the keys: no per-key events
    app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    receiver.single_terminal(call_id)
    assert [e["properties"]["dtmf"] for e in dtmf_events()[2:]] == ["55"]


def test_a_sip_call_with_early_media_rings_instead_of_pre_establishing_and_its_early_media_still_works(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    """The guide: "Calls to WebRTC and SIP never go through the PRE_ESTABLISHED states". A SIP far end's 183 with
    SDP is CALL_RINGING (state RINGING); the early media itself still flows (a prompt plays before the answer)
    and still reaches in-process listeners (a dialog propagates the child's progress to its caller)."""
    callee = _user("early")
    live.fake.route(callee, FarEnd(early_media=True, answer_after_s=None))
    call_id = app.create_call(callee)
    ringing = receiver.wait_type(call_id, "CALL_RINGING")["properties"]["call"]
    assert ringing["state"] == "RINGING"
    assert app.http.get(f"/calls/1/calls/{call_id}").json()["state"] == "RINGING"
    engine_id = _engine_id(live, callee)
    say = {"text": "Connecting you.", "language": "en"}
    assert app.http.post(f"/calls/1/calls/{call_id}/say", json=say).status_code == 200
    assert receiver.wait_type(call_id, "SAY_FINISHED")["properties"]["playedCompletely"] is True
    assert live.fake.calls[engine_id].said == ["Connecting you."]
    live.fake.far_end(engine_id).answer()
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    receiver.single_terminal(call_id)
    assert "CALL_PRE_ESTABLISHED" not in receiver.types(call_id)
    assert receiver.types(call_id).count("CALL_RINGING") == 1

    called, agent = _user("early-caller"), _user("early-agent")
    app.route(called)
    live.fake.route(agent, FarEnd(early_media=True, answer_after_s=None))
    live.fake.incoming(called)
    parent_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    created = app.http.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": parent_id,
            "childCallRequest": {"endpoint": {"type": "SIP", "username": agent, "host": "127.0.0.1:5999"}},
            "propagationOptions": {"childCallRinging": True},
        },
    )
    assert created.status_code == 201, created.text
    child_id = created.json()["childCall"]["id"]
    receiver.wait_type(child_id, "CALL_RINGING")
    receiver.wait_type(parent_id, "CALL_RINGING")  # the child's early media propagated as ringing
    live.fake.far_end(_engine_id(live, agent)).answer()
    dialog_id = created.json()["id"]
    receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_ESTABLISHED")
    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/hangup").status_code == 200
    for leg in (parent_id, child_id):
        receiver.single_terminal(leg)
    assert "CALL_PRE_ESTABLISHED" not in receiver.types(child_id)


def test_an_outbound_call_starts_with_call_started_and_an_inbound_one_does_not(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    """The guide lists an outbound call's events as "call_started, call_pre_established, call_ringing, and so on":
    CALL_STARTED ({call}) once the INVITE is on its way, before anything the far end answers."""
    callee = _user("started")
    live.fake.route(callee, FarEnd(ring_after_s=0.0, answer_after_s=0.05))
    call_id = app.create_call(callee)
    started = receiver.wait_type(call_id, "CALL_STARTED")
    call = started["properties"]["call"]
    assert (call["id"], call["direction"], call["endpoint"]["username"]) == (call_id, "OUTBOUND", callee)
    established = receiver.wait_type(call_id, "CALL_ESTABLISHED")
    ringing = receiver.wait_type(call_id, "CALL_RINGING")
    assert started["timestamp"] <= ringing["timestamp"] <= established["timestamp"]
    app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    receiver.single_terminal(call_id)
    assert receiver.types(call_id).count("CALL_STARTED") == 1

    called = _user("inbound")
    app.route(called)
    live.fake.incoming(called)
    inbound = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
    assert app.http.post(f"/calls/1/calls/{inbound['callId']}/hangup", json={}).status_code == 200
    receiver.single_terminal(inbound["callId"])
    assert "CALL_STARTED" not in receiver.types(inbound["callId"])


def test_a_call_recording_reports_started_stopped_ready_and_deleted(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    """The client's call recording events: CALL_RECORDING_STARTED {recordingType, fileId, maxDuration, maxSilence,
    beep, filePrefix}, CALL_RECORDING_STOPPED {startTime, endTime, fileId} before CALL_RECORDING_READY, and
    CALL_RECORDING_DELETED {} when a file or the call's recordings are deleted."""
    call_id, _ = _answered_call(live, app, receiver, "recorded")
    recording = {"recording": {"recordingType": "AUDIO", "filePrefix": "pre-", "customData": {"k": "v"}}}
    assert app.http.post(f"/calls/1/calls/{call_id}/start-recording", json=recording).status_code == 200
    started = receiver.wait_type(call_id, "CALL_RECORDING_STARTED")
    file_id = started["properties"]["fileId"]
    assert started["properties"] == {
        "recordingType": "AUDIO",
        "fileId": file_id,
        "maxDuration": None,
        "maxSilence": None,
        "beep": False,
        "filePrefix": "pre-",
    }
    assert app.http.post(f"/calls/1/calls/{call_id}/stop-recording").status_code == 200
    stopped = receiver.wait_type(call_id, "CALL_RECORDING_STOPPED")
    ready = receiver.wait_type(call_id, "CALL_RECORDING_READY")
    assert stopped["properties"]["fileId"] == file_id and stopped["properties"]["startTime"]
    assert stopped["properties"]["startTime"] <= stopped["properties"]["endTime"] <= stopped["timestamp"]
    assert started["timestamp"] <= stopped["timestamp"] <= ready["timestamp"]
    [file] = ready["properties"]["recording"]["files"]
    assert (file["id"], file["startTime"], file["endTime"]) == (
        file_id,
        stopped["properties"]["startTime"],
        stopped["properties"]["endTime"],
    )
    assert app.http.delete(f"/calls/1/recordings/files/{file_id}").status_code == 200
    assert receiver.wait_type(call_id, "CALL_RECORDING_DELETED")["properties"] == {}

    # a second recording, ended by the hangup: stopped and ready before the terminal event; then all deleted
    assert app.http.post(f"/calls/1/calls/{call_id}/start-recording", json=recording).status_code == 200
    eventually(lambda: receiver.types(call_id).count("CALL_RECORDING_STARTED") == 2, "the second recording")
    app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    terminal = receiver.single_terminal(call_id)
    # deliveries are concurrent: what was written before the terminal event may still be on its way
    eventually(lambda: receiver.types(call_id).count("CALL_RECORDING_STOPPED") == 2, "the second stop's event")
    eventually(lambda: receiver.types(call_id).count("CALL_RECORDING_READY") == 2, "the second ready event")
    steps = {e["type"]: e for e in receiver.events(call_id)[::-1]}  # the last of each type
    assert steps["CALL_RECORDING_STOPPED"]["timestamp"] <= terminal["timestamp"]
    assert receiver.types(call_id).count("CALL_RECORDING_READY") == 2
    assert app.http.delete(f"/calls/1/recordings/calls/{call_id}").status_code == 200
    eventually(lambda: receiver.types(call_id).count("CALL_RECORDING_DELETED") == 2, "the second delete's event")
    assert "CALL_RECORDING_FAILED" not in receiver.types(call_id)


def test_a_recording_asked_for_with_the_call_that_cannot_start_is_call_recording_failed(
    live: LiveServer, receiver: Receiver
) -> None:
    """An account whose recordings folder cannot be made (a file stands in its place): the recording asked for on
    create cannot start once the call answers, which is CALL_RECORDING_FAILED {reason, fileId}; the call goes on."""
    account = live.admin.network()
    (live.settings.data_dir / "voice-recordings").mkdir(parents=True, exist_ok=True)
    (live.settings.data_dir / "voice-recordings" / account.account_id).write_text("not a folder")
    with calls_app(live, receiver, account) as app:
        call_id = app.create_call(_user("unrecordable"), recording={"recordingType": "AUDIO"})
        receiver.wait_type(call_id, "CALL_ESTABLISHED")
        failed = receiver.wait_type(call_id, "CALL_RECORDING_FAILED")["properties"]
        assert failed["fileId"] and "cannot write the recording" in failed["reason"]
        assert app.http.get(f"/calls/1/calls/{call_id}").json()["state"] == "ESTABLISHED"
        app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
        assert receiver.single_terminal(call_id)["type"] == "CALL_FINISHED"
        assert "CALL_RECORDING_STARTED" not in receiver.types(call_id)


def test_start_recording_beeps_first_and_stops_by_itself_after_max_duration_or_max_silence(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    """start-recording's `beep` (a short beep, then the recording), `maxDuration` and `maxSilence` (the engine ends
    the recording itself; the client: such a recording "can't be stopped by the stop recording endpoint"). The fake
    engine records silence, so `maxSilence` ends it as `maxDuration` does."""
    call_id, engine_id = _answered_call(live, app, receiver, "limits")

    def recording_events(event_type: str) -> list[dict[str, Any]]:
        return [e for e in receiver.events(call_id) if e["type"] == event_type]

    beeped = {"recording": {"recordingType": "AUDIO", "beep": True, "maxDuration": 1}}
    assert app.http.post(f"/calls/1/calls/{call_id}/start-recording", json=beeped).status_code == 200
    started = receiver.wait_type(call_id, "CALL_RECORDING_STARTED")["properties"]
    assert (started["beep"], started["maxDuration"], started["maxSilence"]) == (True, 1, None)
    [beep] = live.fake.calls[engine_id].played  # the beep played to its end before the recorder started
    assert isinstance(beep.source, ToneSource) and beep.completed is True
    refused = app.http.post(f"/calls/1/calls/{call_id}/stop-recording")
    assert refused.status_code == 400, refused.text
    stopped = receiver.wait_type(call_id, "CALL_RECORDING_STOPPED")["properties"]
    [file] = receiver.wait_type(call_id, "CALL_RECORDING_READY")["properties"]["recording"]["files"]
    assert file["id"] == stopped["fileId"] == started["fileId"] and file["duration"] == 1

    quiet = {"recording": {"recordingType": "AUDIO", "maxSilence": 1}}
    assert app.http.post(f"/calls/1/calls/{call_id}/start-recording", json=quiet).status_code == 200
    eventually(lambda: recording_events("CALL_RECORDING_READY")[1:], "the silent recording ends by itself")
    started = recording_events("CALL_RECORDING_STARTED")[1]["properties"]
    assert (started["beep"], started["maxDuration"], started["maxSilence"]) == (False, None, 1)
    [file] = recording_events("CALL_RECORDING_READY")[1]["properties"]["recording"]["files"]
    assert file["duration"] == 1 and len(live.fake.calls[engine_id].played) == 1  # no beep this time
    assert app.http.get(f"/calls/1/calls/{call_id}").json()["state"] == "ESTABLISHED"  # the call goes on
    app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    receiver.single_terminal(call_id)
    eventually(lambda: len(recording_events("CALL_RECORDING_STOPPED")) == 2, "both stops' events")
