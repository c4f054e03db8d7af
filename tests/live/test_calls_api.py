"""The Infobip Calls API control plane on the in-memory engine: calls, their actions, failures and dialogs, with
events delivered (signed, through the outbox) to a loopback receiver, on SQLite and PostgreSQL. What needs the
wire (SIP, RTP, codecs, audio content) stays in the sipp end-to-end tests of tests/voice."""

from __future__ import annotations

import base64
import secrets
import wave
from io import BytesIO
from typing import Any

import numpy as np
import pytest

from callplane.core.webhooks.signing import verify
from callplane.media.engine import FileSource, SipReasonHeader, SpeechSource, ToneSource, UrlSource
from callplane.testing.engine import BUSY, DECLINED, NOT_FOUND, RINGS_FOREVER, UNAVAILABLE, UNREACHABLE, Failure, FarEnd
from tests.live.support import CallsApp, LiveServer, Receiver, eventually, receiving

# The tests sharing the fake-engine servers run on one xdist worker, which starts each server once.
pytestmark = pytest.mark.xdist_group("live-fake-engine")

NORMAL_HANGUP = {
    "id": 10000,
    "name": "NORMAL_HANGUP",
    "description": "The call has ended with hangup initiated by caller, callee or API",
}


def _user(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _engine_id(live: LiveServer, to_user: str) -> str:
    """The engine's id of the (one) call dialled to `to_user`."""
    calls = eventually(lambda: live.fake.calls_to(to_user), f"a call to {to_user}")
    assert len(calls) == 1, calls
    return calls[0].call_id


def _wav(seconds: float) -> bytes:
    buffer = BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.zeros(int(8000 * seconds), dtype=np.int16).tobytes())
    return buffer.getvalue()


# ---- outbound calls -----------------------------------------------------------------------------


def test_an_outbound_call_rings_answers_runs_its_actions_and_ends_on_the_api_hangup(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    callee = _user("alice")
    live.fake.route(callee, FarEnd(ring_after_s=0.0, answer_after_s=0.05))
    uploaded = app.http.post("/calls/1/files", files={"file": ("prompt.wav", _wav(0.2), "audio/wav")})
    assert uploaded.status_code == 200, uploaded.text

    call_id = app.create_call(
        callee,
        **{"from": "1001", "customData": {"order": "A1"}, "externalId": "ext-1", "connectTimeout": 30},
        endpoint={"type": "SIP", "username": callee, "host": "127.0.0.1:5999", "customHeaders": {"X-Campaign": "c7"}},
    )
    receiver.wait_type(call_id, "CALL_RINGING")
    established = receiver.wait_type(call_id, "CALL_ESTABLISHED")
    assert established["properties"]["call"]["state"] == "ESTABLISHED"
    assert app.http.get(f"/calls/1/calls/{call_id}").json()["state"] == "ESTABLISHED"
    engine_id = _engine_id(live, callee)
    dialled = live.fake.calls[engine_id].outbound
    assert dialled is not None and dialled.from_user == "1001" and dialled.headers == {"X-Campaign": "c7"}

    recording = {"recording": {"recordingType": "AUDIO", "channels": "STEREO"}}
    assert app.http.post(f"/calls/1/calls/{call_id}/start-recording", json=recording).status_code == 200
    said = app.http.post(f"/calls/1/calls/{call_id}/say", json={"text": "Hello there.", "language": "en"})
    assert said.json() == {"status": "PENDING"}
    receiver.wait_type(call_id, "SAY_FINISHED")
    played = app.http.post(
        f"/calls/1/calls/{call_id}/play", json={"content": {"type": "FILE", "fileId": uploaded.json()["id"]}}
    )
    assert played.status_code == 200, played.text
    assert receiver.wait_type(call_id, "PLAY_FINISHED")["properties"]["playedCompletely"] is True
    assert app.http.post(f"/calls/1/calls/{call_id}/send-dtmf", json={"dtmf": "42#"}).status_code == 200
    capture = {"maxLength": 4, "timeout": 10000, "terminator": "#"}
    assert app.http.post(f"/calls/1/calls/{call_id}/capture/dtmf", json=capture).status_code == 200
    eventually(lambda: live.fake.calls[engine_id].collecting_dtmf, "the capture listens")
    live.fake.far_end(engine_id).send_digits("15#")
    captured = receiver.wait_type(call_id, "DTMF_CAPTURED")
    assert captured["properties"]["dtmf"] == "15" and captured["properties"]["timeout"] is False
    assert app.http.post(f"/calls/1/calls/{call_id}/stop-recording").status_code == 200
    ready = receiver.wait_type(call_id, "CALL_RECORDING_READY")
    [recorded] = ready["properties"]["recording"]["files"]
    download = app.http.get(f"/calls/1/recordings/files/{recorded['id']}")
    assert download.status_code == 200 and download.content[:4] == b"RIFF"
    with wave.open(BytesIO(download.content)) as wav:
        assert wav.getnchannels() == 2

    # what the far end was given, as the engine saw it
    call = live.fake.calls[engine_id]
    assert call.said == ["Hello there."] and call.sent_dtmf == "42#" and call.received_dtmf == "15#"
    speech = call.played[0].source
    assert isinstance(speech, SpeechSource) and speech.voice.startswith("en")
    assert isinstance(call.played[1].source, FileSource) and call.played[1].completed is True
    assert [r.channels.value for r in call.recordings] == ["STEREO"]

    hung = app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    assert hung.status_code == 200 and hung.json()["id"] == call_id
    final = receiver.single_terminal(call_id)
    assert final["type"] == "CALL_FINISHED"
    log = final["properties"]["callLog"]
    assert (log["state"], log["hangupSource"], log["errorCode"]) == ("FINISHED", "API", NORMAL_HANGUP)
    assert log["customData"] == {"order": "A1"}
    assert live.fake.calls[engine_id].ended is not None
    at = {event["type"]: event["timestamp"] for event in receiver.events(call_id)}
    assert at["CALL_RINGING"] <= at["CALL_ESTABLISHED"] <= at["DTMF_CAPTURED"] <= at["CALL_FINISHED"]
    with receiver.lock:
        signed = [(headers, body) for headers, body in receiver.received if call_id.encode() in body]
    for headers, body in signed:
        verify(app.secret, headers, body)
    history = app.http.get("/calls/1/calls/history", params={"callsConfigurationId": app.configuration_id}).json()
    assert [c["callId"] for c in history["results"]] == [call_id]


FAILURES = [
    pytest.param(BUSY, "BUSY", "BUSY", id="busy"),
    pytest.param(DECLINED, "FAILED", "REJECTED", id="decline"),
    pytest.param(NOT_FOUND, "FAILED", "DESTINATION_NOT_FOUND", id="not-found"),
    pytest.param(UNAVAILABLE, "NO_ANSWER", "NO_ANSWER", id="unavailable"),
    pytest.param(UNREACHABLE, "FAILED", "REQUEST_TIMEOUT", id="unreachable"),
    pytest.param(Failure(503, "Service Unavailable"), "FAILED", "SERVICE_UNAVAILABLE", id="service-unavailable"),
]


@pytest.mark.parametrize(("failure", "state", "error"), FAILURES)
def test_a_far_end_failure_ends_the_call_in_its_state_and_error_code(
    live: LiveServer, app: CallsApp, receiver: Receiver, failure: Failure, state: str, error: str
) -> None:
    callee = _user("bob")
    live.fake.route(callee, FarEnd(fail=failure))
    call_id = app.create_call(callee)
    final = receiver.single_terminal(call_id)
    assert final["type"] == "CALL_FAILED"
    log = final["properties"]["callLog"]
    assert (log["state"], log["hangupSource"], log["errorCode"]["name"]) == (state, "ENDPOINT", error)
    assert app.http.get(f"/calls/1/calls/{call_id}").json()["state"] == state


def test_no_answer_within_the_connect_timeout_and_a_cancel_while_ringing(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    with receiving() as basic_sink:  # a second subscription, CALL_FAILED only, with HTTP Basic credentials
        basic = app.native.post(
            f"/v1/voice/configurations/{app.configuration_id}/subscriptions",
            json={
                "url": basic_sink.url,
                "event_types": ["CALL_FAILED"],
                "auth": "BASIC",
                "username": "hook",
                "password": "s3cret",
            },
        )
        assert basic.status_code == 201 and basic.json()["username"] == "hook" and "password" not in basic.json()
        unanswered = _user("carol")
        live.fake.route(unanswered, RINGS_FOREVER)
        call_id = app.create_call(unanswered, connectTimeout=1)
        receiver.wait_type(call_id, "CALL_RINGING")
        log = receiver.single_terminal(call_id)["properties"]["callLog"]
        assert (log["state"], log["errorCode"]["name"], log["hangupSource"]) == ("NO_ANSWER", "NO_ANSWER", "PLATFORM")
        # the BASIC subscription got its own copy of the one type it asked for: basic auth, its own signature
        basic_sink.wait_type(call_id, "CALL_FAILED")
        with basic_sink.lock:
            [(headers, body)] = [(h, b) for h, b in basic_sink.received if call_id.encode() in b]
        assert headers["authorization"] == "Basic " + base64.b64encode(b"hook:s3cret").decode()
        verify(basic.json()["secret"], headers, body)
        assert basic_sink.types(call_id) == ["CALL_FAILED"]

    cancelled = _user("dave")
    live.fake.route(cancelled, RINGS_FOREVER)
    call_id = app.create_call(cancelled)
    receiver.wait_type(call_id, "CALL_RINGING")
    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    log = receiver.single_terminal(call_id)["properties"]["callLog"]
    assert (log["state"], log["errorCode"]["name"], log["hangupSource"]) == ("CANCELLED", "CANCELLED", "API")
    ended = live.fake.calls[_engine_id(live, cancelled)].ended
    assert ended is not None and not ended.answered


def test_the_far_ends_hangup_and_the_max_duration_end_answered_calls(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    hanging_up = _user("erin")
    live.fake.route(hanging_up, FarEnd(hangup_after_s=0.1, hangup_reason=SipReasonHeader("Q.850", 16, "bye")))
    call_id = app.create_call(hanging_up)
    log = receiver.single_terminal(call_id)["properties"]["callLog"]
    assert (log["state"], log["hangupSource"], log["errorCode"]["name"]) == ("FINISHED", "ENDPOINT", "NORMAL_HANGUP")
    assert log["answerTime"] is not None and log["duration"] is not None

    short = _user("frank")
    live.fake.route(short, FarEnd())
    call_id = app.create_call(short, maxDuration=1)
    log = receiver.single_terminal(call_id)["properties"]["callLog"]
    assert (log["state"], log["hangupSource"], log["errorCode"]["id"]) == ("FINISHED", "PLATFORM", 10100)


def test_play_from_a_url_that_fails_is_an_error_event_and_a_menu_stops_on_its_terminator(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    callee = _user("grace")
    live.fake.route(callee, FarEnd())
    call_id = app.create_call(callee)
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    engine_id = _engine_id(live, callee)

    missing = f"{receiver.url.removesuffix('/events')}/missing.wav"
    live.fake.unavailable_urls.add(missing)
    refused = app.http.post(f"/calls/1/calls/{call_id}/play", json={"content": {"type": "URL", "fileUrl": missing}})
    assert refused.json() == {"status": "PENDING"}
    error = receiver.wait_type(call_id, "ERROR")
    assert error["properties"]["actionType"] == "PLAY" and error["properties"]["errorDetails"]

    menu = {
        "content": {"type": "TEXT", "text": "For sales press one.", "language": "en"},
        "loopCount": 100,
        "stopOn": {"type": "DTMF", "terminator": "#"},
        "customData": {"menu": "main"},
    }
    assert app.http.post(f"/calls/1/calls/{call_id}/play", json=menu).status_code == 200
    eventually(lambda: live.fake.calls[engine_id].playing, "the menu plays")
    live.fake.far_end(engine_id).send_digits("15#")
    properties = receiver.wait_type(call_id, "PLAY_FINISHED")["properties"]
    assert properties["playedCompletely"] is False and properties["capturedDtmf"] == "15#"
    assert properties["customData"] == {"menu": "main"}
    assert [type(p.source) for p in live.fake.calls[engine_id].played] == [SpeechSource]  # the URL never played
    assert not any(isinstance(p.source, UrlSource) for p in live.fake.calls[engine_id].played)

    stopped = app.http.post(f"/calls/1/calls/{call_id}/play", json={**menu, "stopOn": None})
    assert stopped.status_code == 200, stopped.text
    eventually(lambda: live.fake.calls[engine_id].playing, "the menu plays again")
    assert app.http.post(f"/calls/1/calls/{call_id}/stop-play", json={}).status_code == 200
    finished = eventually(
        lambda: [e for e in receiver.events(call_id) if e["type"] == "PLAY_FINISHED"][1:], "the second PLAY_FINISHED"
    )
    assert finished[0]["properties"]["playedCompletely"] is False

    hold = f"/hold-{secrets.token_hex(3)}.wav"
    receiver.files[hold] = _wav(0.2)
    good = {"content": {"type": "URL", "fileUrl": f"{receiver.url.removesuffix('/events')}{hold}"}}
    assert app.http.post(f"/calls/1/calls/{call_id}/play", json=good).status_code == 200
    completed = eventually(
        lambda: [e for e in receiver.events(call_id) if e["type"] == "PLAY_FINISHED"][2:], "the URL's PLAY_FINISHED"
    )
    assert completed[0]["properties"]["playedCompletely"] is True
    fetched = live.fake.calls[engine_id].played[-1].source  # the node fetched the URL and plays its copy
    assert isinstance(fetched, FileSource) and fetched.path.read_bytes() == receiver.files[hold]
    app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    receiver.single_terminal(call_id)


# ---- inbound calls ------------------------------------------------------------------------------


def test_an_inbound_call_is_received_rung_answered_captures_dtmf_and_hangs_up_once(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    called = _user("ivr")
    app.route(called)
    engine_id = live.fake.incoming(
        called, from_user="15305550123", from_display_name="Caller", headers={"X-Customer-Id": "cust-42"}
    )
    received = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
    call_id = received["callId"]
    call = received["properties"]["call"]
    assert (call["direction"], call["state"], call["from"]) == ("INBOUND", "CALLING", "15305550123")
    assert call["customData"] == {"x-customer-id": "cust-42"} and call["callsConfigurationId"] == app.configuration_id

    assert app.http.post(f"/calls/1/calls/{call_id}/send-ringing").json() == {"status": "PENDING"}
    receiver.wait_type(call_id, "CALL_RINGING")
    assert app.http.post(f"/calls/1/calls/{call_id}/answer", json={}).json() == {"status": "PENDING"}
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    assert live.fake.calls[engine_id].ringing_sent
    capture = {"maxLength": 4, "timeout": 10000, "terminator": "#"}
    assert app.http.post(f"/calls/1/calls/{call_id}/capture/dtmf", json=capture).status_code == 200
    eventually(lambda: live.fake.calls[engine_id].collecting_dtmf, "the capture listens")
    live.fake.far_end(engine_id).send_digits("15#")
    assert receiver.wait_type(call_id, "DTMF_CAPTURED")["properties"]["dtmf"] == "15"
    listed = app.http.get("/calls/1/calls", params={"callsConfigurationId": app.configuration_id}).json()
    assert [c["id"] for c in listed["results"]] == [call_id] and listed["results"][0]["state"] == "ESTABLISHED"

    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    final = receiver.single_terminal(call_id)
    assert final["type"] == "CALL_FINISHED" and final["properties"]["callLog"]["hangupSource"] == "API"
    assert final["properties"]["callLog"]["errorCode"] == NORMAL_HANGUP
    at = {event["type"]: event["timestamp"] for event in receiver.events(call_id)}
    assert at["CALL_RECEIVED"] <= at["CALL_RINGING"] <= at["CALL_ESTABLISHED"] <= at["DTMF_CAPTURED"]
    assert at["CALL_FINISHED"] >= at["DTMF_CAPTURED"]
    with receiver.lock:
        signed = [(headers, body) for headers, body in receiver.received if call_id.encode() in body]
    for headers, body in signed:
        verify(app.secret, headers, body)
    history = app.http.get("/calls/1/calls/history", params={"callsConfigurationId": app.configuration_id}).json()
    assert [c["callId"] for c in history["results"]] == [call_id] and history["paging"]["totalResults"] == 1
    assert app.native.get(f"/v1/calls/{call_id}").status_code == 200  # the core call of the live call
    gone = app.http.post(f"/calls/1/calls/{call_id}/answer", json={})
    assert gone.status_code == 400


def test_a_caller_who_gives_up_while_ringing_ends_cancelled_and_a_pre_answered_caller_hangs_up(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    called = _user("queue")
    app.route(called)
    engine_id = live.fake.incoming(called)
    call_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    assert app.http.post(f"/calls/1/calls/{call_id}/send-ringing").status_code == 200
    eventually(lambda: live.fake.calls[engine_id].ringing_sent, "ringing reached the caller")
    live.fake.far_end(engine_id).hang_up()
    log = receiver.single_terminal(call_id)["properties"]["callLog"]
    assert (log["state"], log["errorCode"]["name"], log["hangupSource"]) == ("CANCELLED", "CANCELLED", "ENDPOINT")
    gone = app.http.post(f"/calls/1/calls/{call_id}/answer", json={})
    assert gone.status_code == 400
    assert gone.json()["requestError"]["serviceException"]["text"] == "The call has already ended."

    early = _user("early")
    app.route(early)
    engine_id = live.fake.incoming(early, caller=FarEnd(hangup_after_s=0.1))
    call_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == early)[
        "callId"
    ]
    assert app.http.post(f"/calls/1/calls/{call_id}/pre-answer", json={}).status_code == 200
    assert receiver.wait_type(call_id, "CALL_PRE_ESTABLISHED")["properties"]["call"]["state"] == "PRE_ESTABLISHED"
    assert live.fake.calls[engine_id].pre_answered
    assert app.http.post(f"/calls/1/calls/{call_id}/answer", json={}).status_code == 200
    log = receiver.single_terminal(call_id)["properties"]["callLog"]
    assert (log["state"], log["hangupSource"], log["errorCode"]["name"]) == ("FINISHED", "ENDPOINT", "NORMAL_HANGUP")
    assert log["answerTime"] is not None and log["duration"] is not None


# ---- dialogs and connected calls ----------------------------------------------------------------


def test_a_dialog_bridges_the_caller_to_a_new_call_and_finishes_when_the_child_hangs_up(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    called, agent = _user("dialog"), _user("agent")
    app.route(called)
    live.fake.route(agent, FarEnd(answer_after_s=0.05))
    parent_engine_id = live.fake.incoming(called)
    parent_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    created = app.http.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": parent_id,
            "childCallRequest": {"endpoint": {"type": "SIP", "username": agent, "host": "127.0.0.1:5999"}},
        },
    )
    assert created.status_code == 201, created.text
    dialog = created.json()
    dialog_id, child_id = dialog["id"], dialog["childCall"]["id"]
    assert dialog["parentCall"]["id"] == parent_id and dialog["childCall"]["parentCallId"] == parent_id

    established = receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_ESTABLISHED")
    assert established["properties"]["dialog"]["state"] == "ESTABLISHED"
    # answered because the child answered. DIALOG_ESTABLISHED can arrive before the parent's own answer is stored
    # (live/dialogs.py answers the parent through the engine, whose CallAnswered the event loop records later)
    receiver.wait_type(parent_id, "CALL_ESTABLISHED")
    assert app.http.get(f"/calls/1/calls/{parent_id}").json()["state"] == "ESTABLISHED"
    child_engine_id = _engine_id(live, agent)
    assert live.fake.calls[parent_engine_id].bridged_with == child_engine_id
    listed = app.http.get("/calls/1/dialogs", params={"callsConfigurationId": app.configuration_id}).json()
    assert [d["id"] for d in listed["results"]] == [dialog_id]

    live.fake.far_end(child_engine_id).hang_up()
    finished = receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_FINISHED")
    assert finished["properties"]["dialog"]["state"] == "FINISHED"
    for call_id in (parent_id, child_id):
        assert receiver.single_terminal(call_id)["type"] == "CALL_FINISHED"
    assert live.fake.calls[parent_engine_id].ended is not None
    history = app.http.get(f"/calls/1/dialogs/{dialog_id}/history").json()
    assert (history["state"], history["parentCallId"], history["childCallId"]) == ("FINISHED", parent_id, child_id)


def test_a_dialog_whose_child_is_busy_fails_once_and_ends_the_parent(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    called, agent = _user("transfer"), _user("busy-agent")
    app.route(called)
    live.fake.route(agent, FarEnd(fail=BUSY))
    live.fake.incoming(called)
    parent_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    app.http.post(f"/calls/1/calls/{parent_id}/answer", json={})
    receiver.wait_type(parent_id, "CALL_ESTABLISHED")
    child = {"endpoint": {"type": "SIP", "username": agent, "host": "127.0.0.1:5999"}}
    created = app.http.post("/calls/1/dialogs", json={"parentCallId": parent_id, "childCallRequest": child})
    assert created.status_code == 201, created.text
    dialog_id = created.json()["id"]
    failed = receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_FAILED")
    assert failed["properties"]["errorCode"]["name"] == "BUSY"
    assert failed["properties"]["hangupSource"] == "CHILD_ENDPOINT"
    parent_log = receiver.single_terminal(parent_id)["properties"]["callLog"]
    assert (parent_log["state"], parent_log["hangupSource"]) == ("FINISHED", "PLATFORM")
    dialog_events = [e["type"] for e in receiver.events() if e.get("dialogId") == dialog_id and "callId" not in e]
    assert sorted(dialog_events) == ["DIALOG_CREATED", "DIALOG_FAILED"]


def test_two_connected_calls_join_a_conference_and_one_hangup_leaves_the_other_in_it(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    """The guide: connect creates a conference (CONFERENCE_CREATED, PARTICIPANT_JOINING / JOINED), which ends when
    its last participant leaves; tests/live/test_conferences.py has the rest."""
    first_user, second_user = _user("party"), _user("party")
    for user in (first_user, second_user):
        live.fake.route(user, FarEnd())
    first, second = app.create_call(first_user), app.create_call(second_user)
    for call_id in (first, second):
        receiver.wait_type(call_id, "CALL_ESTABLISHED")
    connected = app.http.post("/calls/1/connect", json={"callIds": [first, second]})
    assert connected.status_code == 200, connected.text
    participants = connected.json()["participants"]
    assert [p["callId"] for p in participants] == [first, second]
    conference_id = connected.json()["id"]
    for call_id in (first, second):
        receiver.wait_type(call_id, "PARTICIPANT_JOINED")
    first_engine, second_engine = _engine_id(live, first_user), _engine_id(live, second_user)
    assert set(live.fake.mixes[conference_id].members) == {first_engine, second_engine}
    assert app.http.post(f"/calls/1/calls/{first}/hangup", json={}).status_code == 200
    receiver.wait_type(first, "PARTICIPANT_REMOVED")
    assert app.http.get(f"/calls/1/calls/{second}").json()["state"] == "ESTABLISHED"
    assert app.http.post(f"/calls/1/calls/{second}/hangup", json={}).status_code == 200
    assert receiver.single_terminal(second)["properties"]["callLog"]["hangupSource"] == "API"
    receiver.wait_for(lambda e: e.get("conferenceId") == conference_id and e["type"] == "CONFERENCE_FINISHED")


def _dialog_event(receiver: Receiver, dialog_id: str, event_type: str, after: int = 0) -> dict[str, Any]:
    """The dialog's own event (not one of its calls'), the `after`-th of its type."""

    def matching() -> list[dict[str, Any]]:
        return [
            e
            for e in receiver.events()
            if e.get("dialogId") == dialog_id and "callId" not in e and e["type"] == event_type
        ]

    return eventually(lambda: matching()[after:], f"{event_type} #{after + 1} of dialog {dialog_id}")[0]


def _channels(app: CallsApp, file_id: str) -> int:
    download = app.http.get(f"/calls/1/recordings/files/{file_id}")
    assert download.status_code == 200 and download.content[:4] == b"RIFF"
    with wave.open(BytesIO(download.content)) as wav:
        channels: int = wav.getnchannels()
    return channels


def test_a_dialogs_prompts_reach_both_legs_and_its_recordings_are_composed_or_per_leg(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    called, agent = _user("dialog-media"), _user("dialog-agent")
    app.route(called)
    live.fake.route(agent, FarEnd())
    parent_engine_id = live.fake.incoming(called)
    parent_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    created = app.http.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": parent_id,
            "childCallRequest": {"endpoint": {"type": "SIP", "username": agent, "host": "127.0.0.1:5999"}},
        },
    )
    assert created.status_code == 201, created.text
    dialog_id, child_id = created.json()["id"], created.json()["childCall"]["id"]
    _dialog_event(receiver, dialog_id, "DIALOG_ESTABLISHED")
    child_engine_id = _engine_id(live, agent)

    said = app.http.post(f"/calls/1/dialogs/{dialog_id}/say", json={"text": "Both of you hear this.", "language": "en"})
    assert said.status_code == 200, said.text
    assert _dialog_event(receiver, dialog_id, "SAY_FINISHED")["properties"]["playedCompletely"] is True
    for engine_id in (parent_engine_id, child_engine_id):  # one prompt, mixed into the bridge
        assert live.fake.calls[engine_id].said == ["Both of you hear this."]
    looped = {"content": {"type": "TEXT", "text": "Please hold.", "language": "en"}, "loopCount": 100}
    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/play", json=looped).status_code == 200
    eventually(lambda: live.fake.calls[child_engine_id].said[1:], "the looped prompt plays")
    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/stop-play", json={}).status_code == 200
    assert _dialog_event(receiver, dialog_id, "PLAY_FINISHED")["properties"]["playedCompletely"] is False

    composed = {"recordingType": "AUDIO", "dialogComposition": {"enabled": True}}
    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/start-recording", json=composed).status_code == 200
    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/start-recording", json=composed).status_code == 400
    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/stop-recording").status_code == 200
    recording = _dialog_event(receiver, dialog_id, "DIALOG_RECORDING_READY")["properties"]["recording"]
    [composed_file] = recording["composedFiles"]
    assert recording["callRecordings"] == [] and _channels(app, composed_file["id"]) == 1

    per_leg = {"recordingType": "AUDIO", "customData": {"case": "per-leg"}, "filePrefix": "legs-"}
    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/start-recording", json=per_leg).status_code == 200
    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/stop-recording").status_code == 200
    recording = _dialog_event(receiver, dialog_id, "DIALOG_RECORDING_READY", after=1)["properties"]["recording"]
    files = {entry["callId"]: entry["files"] for entry in recording["callRecordings"]}
    assert set(files) == {parent_id, child_id}
    for [file] in files.values():
        assert file["customData"] == {"case": "per-leg"} and file["name"] == f"{file['id']}.wav"
    compose = {"deleteCallRecordings": False, "multiChannel": {"enabled": True}}
    assert app.http.post(f"/calls/1/recordings/dialogs/{dialog_id}/compose", json=compose).status_code == 200
    finished = _dialog_event(receiver, dialog_id, "DIALOG_COMPOSITION_FINISHED")
    [stereo] = finished["properties"]["recording"]["composedFiles"]
    assert _channels(app, stereo["id"]) == 2  # one channel per party

    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/hangup").status_code == 200
    assert _dialog_event(receiver, dialog_id, "DIALOG_FINISHED")["properties"]["hangupSource"] == "API"
    for call_id in (parent_id, child_id):
        assert receiver.single_terminal(call_id)["type"] == "CALL_FINISHED"


@pytest.mark.parametrize(
    "propagation",
    [
        pytest.param({"childCallRinging": True}, id="child-ringing"),
        pytest.param({"ringbackGeneration": {"enabled": True}}, id="ringback"),
    ],
)
def test_a_dialog_propagates_the_childs_ringing_or_plays_ringback_until_the_child_answers(
    live: LiveServer, app: CallsApp, receiver: Receiver, propagation: dict[str, Any]
) -> None:
    """The child's far end answers only on command, so each step is seen in order: ringing propagated to the
    unanswered caller (180), or a generated ringback (183 and a looped tone to the caller) until the bridge."""
    called, agent = _user("ringing"), _user("ringing-agent")
    app.route(called)
    live.fake.route(agent, FarEnd(answer_after_s=None))  # rings until told to answer
    parent_engine_id = live.fake.incoming(called)
    parent_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    created = app.http.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": parent_id,
            "childCallRequest": {"endpoint": {"type": "SIP", "username": agent, "host": "127.0.0.1:5999"}},
            "propagationOptions": propagation,
        },
    )
    assert created.status_code == 201, created.text
    dialog_id = created.json()["id"]
    child_engine_id = _engine_id(live, agent)
    parent = live.fake.calls[parent_engine_id]
    if "childCallRinging" in propagation:
        receiver.wait_type(parent_id, "CALL_RINGING")
        assert parent.ringing_sent and not parent.pre_answered and parent.state == "RINGING"
    else:
        receiver.wait_type(parent_id, "CALL_PRE_ESTABLISHED")
        ringback = eventually(lambda: parent.playing, "the ringback plays")
        assert isinstance(ringback.source, ToneSource) and ringback.loop_count > 1
    dialog_types = [e["type"] for e in receiver.events() if e.get("dialogId") == dialog_id and "callId" not in e]
    assert "DIALOG_ESTABLISHED" not in dialog_types

    live.fake.far_end(child_engine_id).answer()
    _dialog_event(receiver, dialog_id, "DIALOG_ESTABLISHED")
    assert parent.state == "ANSWERED" and parent.bridged_with == child_engine_id
    assert all(playback.completed is not None for playback in parent.played)  # no ringback over the bridge
    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/hangup").status_code == 200
    _dialog_event(receiver, dialog_id, "DIALOG_FINISHED")


def test_a_call_connected_with_a_new_call_and_a_dialog_from_two_existing_calls(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    first_user, new_user = _user("first"), _user("newcomer")
    for user in (first_user, new_user):
        live.fake.route(user, FarEnd())
    first = app.create_call(first_user)
    receiver.wait_type(first, "CALL_ESTABLISHED")
    joined = app.http.post(
        f"/calls/1/calls/{first}/connect",
        json={"callRequest": {"endpoint": {"type": "SIP", "username": new_user, "host": "127.0.0.1:5999"}}},
    )
    assert joined.status_code == 200, joined.text
    new_call, conference_id = joined.json()["call"], joined.json()["conference"]["id"]
    assert new_call["parentCallId"] == first
    receiver.wait_type(new_call["id"], "PARTICIPANT_JOINED")
    members = set(live.fake.mixes[conference_id].members)
    assert members == {_engine_id(live, first_user), _engine_id(live, new_user)}
    assert app.http.post(f"/calls/1/conferences/{conference_id}/hangup").status_code == 200
    assert receiver.single_terminal(first)["type"] == "CALL_FINISHED"
    assert receiver.single_terminal(new_call["id"])["type"] == "CALL_FINISHED"

    parent_user, child_user = _user("parent"), _user("child")
    for user in (parent_user, child_user):
        live.fake.route(user, FarEnd())
    parent, child = app.create_call(parent_user), app.create_call(child_user)
    for call_id in (parent, child):
        receiver.wait_type(call_id, "CALL_ESTABLISHED")
    created = app.http.post(
        f"/calls/1/dialogs/parent-call/{parent}/child-call/{child}",
        json={"propagationOptions": {"childCallHangup": False}},
    )
    assert created.status_code == 201, created.text
    dialog_id = created.json()["id"]
    _dialog_event(receiver, dialog_id, "DIALOG_ESTABLISHED")
    parent_engine_id, child_engine_id = _engine_id(live, parent_user), _engine_id(live, child_user)
    assert live.fake.calls[parent_engine_id].bridged_with == child_engine_id
    live.fake.far_end(child_engine_id).hang_up()
    _dialog_event(receiver, dialog_id, "DIALOG_FINISHED")
    assert receiver.single_terminal(child)["properties"]["callLog"]["hangupSource"] == "ENDPOINT"
    # childCallHangup off: the parent stays up, out of the bridge
    assert app.http.get(f"/calls/1/calls/{parent}").json()["state"] == "ESTABLISHED"
    assert live.fake.calls[parent_engine_id].live and live.fake.calls[parent_engine_id].bridged_with is None
    assert app.http.post(f"/calls/1/calls/{parent}/hangup", json={}).status_code == 200
    assert receiver.single_terminal(parent)["properties"]["callLog"]["hangupSource"] == "API"


def test_a_dialogs_max_duration_ends_it_and_both_calls_once(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    called, agent = _user("bounded"), _user("bounded-agent")
    app.route(called)
    live.fake.route(agent, FarEnd())
    parent_engine_id = live.fake.incoming(called)
    parent_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    created = app.http.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": parent_id,
            "childCallRequest": {"endpoint": {"type": "SIP", "username": agent, "host": "127.0.0.1:5999"}},
            "maxDuration": 1,
        },
    )
    assert created.status_code == 201, created.text
    dialog_id, child_id = created.json()["id"], created.json()["childCall"]["id"]
    _dialog_event(receiver, dialog_id, "DIALOG_ESTABLISHED")
    finished = _dialog_event(receiver, dialog_id, "DIALOG_FINISHED")
    assert finished["properties"]["hangupSource"] == "PLATFORM"
    assert finished["properties"]["errorCode"]["name"] == "MAX_DURATION_REACHED"
    for call_id in (parent_id, child_id):
        log = receiver.single_terminal(call_id)["properties"]["callLog"]
        assert (log["state"], log["hangupSource"], log["errorCode"]["name"]) == (
            "FINISHED",
            "PLATFORM",
            "MAX_DURATION_REACHED",
        )
    for engine_id in (parent_engine_id, _engine_id(live, agent)):
        ended = live.fake.calls[engine_id].ended
        assert ended is not None and ended.initiator.value == "LOCAL"  # we hung both legs up
