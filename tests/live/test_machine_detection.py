"""Answering-machine detection on the in-memory engine: `machineDetection` on an outbound call and on a dialog's
child, the far end's generated greeting (tests/amd/generate.py) fed through the fake's audio, and the events at
the loopback receiver, on SQLite and PostgreSQL. Request bodies and event properties go through the official
client's models."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from infobip_api_client.models.calls_machine_detection_properties import CallsMachineDetectionProperties
from infobip_api_client.models.calls_machine_detection_request import CallsMachineDetectionRequest

from callplane.core.voice.schemas import Endpoint, EndpointType, MachineDetectionRequest, NewCall
from callplane.live.relay import decode, encode
from callplane.media.amd import Verdict
from callplane.testing.engine import FarEnd
from tests.amd.generate import single
from tests.live.support import CallsApp, LiveServer, Receiver, eventually

pytestmark = pytest.mark.xdist_group("live-fake-engine")

PERSON = "Hi, this is Anna."
VOICEMAIL = "Hi, you've reached John Smith. I can't take your call right now, please leave a message after the tone."
MACHINE_EVENTS = (
    "MACHINE_DETECTION_FINISHED",
    "MACHINE_DETECTION_FAILED",
    "MACHINE_MESSAGE_DETECTION_FINISHED",
    "MACHINE_MESSAGE_DETECTION_FAILED",
)


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("amd-live-voices")


def _detection(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = CallsMachineDetectionRequest(enabled=True, **fields).to_dict()
    return body


def _answered(live: LiveServer, app: CallsApp, receiver: Receiver, **fields: Any) -> tuple[str, str]:
    """An outbound call that asked for detection, answered, with the detector's tap on: (call id, engine id)."""
    callee = f"amd-{secrets.token_hex(3)}"
    live.fake.route(callee, FarEnd(answer_after_s=0.05))
    call_id = app.create_call(callee, **fields)
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    [engine_call] = eventually(lambda: live.fake.calls_to(callee), "the call reached the engine")
    return call_id, engine_call.call_id


def _listening(live: LiveServer, engine_id: str) -> None:
    eventually(lambda: live.fake.calls[engine_id].taps, "the detector listens to the call")


def _result(event: dict[str, Any]) -> CallsMachineDetectionProperties:
    properties = CallsMachineDetectionProperties.from_dict(event["properties"])
    assert properties is not None
    return properties


def _hang_up(app: CallsApp, receiver: Receiver, call_id: str) -> list[str]:
    """Hang up; the call's event types once its terminal event arrived."""
    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    receiver.single_terminal(call_id)
    return receiver.types(call_id)


def test_a_person_who_answers_is_human_and_the_tap_comes_off(
    live: LiveServer, app: CallsApp, receiver: Receiver, voices: Path
) -> None:
    call_id, engine_id = _answered(live, app, receiver, machineDetection=_detection())
    _listening(live, engine_id)
    live.fake.far_end(engine_id).send_audio(single(Verdict.HUMAN, PERSON, voices).samples)
    event = receiver.wait_type(call_id, "MACHINE_DETECTION_FINISHED")
    result = _result(event)
    assert result.detection_result is not None and result.detection_result.value == "HUMAN"
    assert result.confidence_rating is not None
    assert result.confidence_rating["HUMAN"] > result.confidence_rating["MACHINE"]
    assert event["callsConfigurationId"] == app.configuration_id
    eventually(lambda: not live.fake.calls[engine_id].taps, "the tap comes off after the verdict")
    types = _hang_up(app, receiver, call_id)
    assert [t for t in types if t in MACHINE_EVENTS] == ["MACHINE_DETECTION_FINISHED"]


def test_a_voicemail_with_a_beep_is_a_machine_and_its_message_end_is_found(
    live: LiveServer, app: CallsApp, receiver: Receiver, voices: Path
) -> None:
    call_id, engine_id = _answered(
        live, app, receiver, machineDetection=_detection(message_detection_timeout=20), customData={"lead": "7"}
    )
    _listening(live, engine_id)
    greeting = single(Verdict.MACHINE, VOICEMAIL, voices, index=0)
    assert greeting.beep_hz is not None
    live.fake.far_end(engine_id).send_audio(greeting.samples)
    decided = receiver.wait_type(call_id, "MACHINE_DETECTION_FINISHED")
    result = _result(decided)
    assert result.detection_result is not None and result.detection_result.value == "MACHINE"
    ended = receiver.wait_type(call_id, "MACHINE_MESSAGE_DETECTION_FINISHED")
    ended_result = _result(ended)
    assert ended_result.detection_result is not None and ended_result.detection_result.value == "MACHINE"
    assert decided["timestamp"] <= ended["timestamp"]
    eventually(lambda: not live.fake.calls[engine_id].taps, "the tap comes off after the message's end")
    types = _hang_up(app, receiver, call_id)
    assert sorted(t for t in types if t in MACHINE_EVENTS) == [
        "MACHINE_DETECTION_FINISHED",
        "MACHINE_MESSAGE_DETECTION_FINISHED",
    ]


def test_without_a_message_timeout_a_machine_gets_its_verdict_only(
    live: LiveServer, app: CallsApp, receiver: Receiver, voices: Path
) -> None:
    call_id, engine_id = _answered(live, app, receiver, machineDetection=_detection(message_detection_timeout=0))
    _listening(live, engine_id)
    live.fake.far_end(engine_id).send_audio(single(Verdict.MACHINE, VOICEMAIL, voices, index=5).samples)
    result = _result(receiver.wait_type(call_id, "MACHINE_DETECTION_FINISHED"))
    assert result.detection_result is not None and result.detection_result.value == "MACHINE"
    eventually(lambda: not live.fake.calls[engine_id].taps, "the tap comes off after the verdict")
    # the application's move, as on Infobip: hang up, saying why
    hung = app.http.post(f"/calls/1/calls/{call_id}/hangup", json={"errorCode": "MACHINE_DETECTED"})
    assert hung.status_code == 200, hung.text
    log = receiver.single_terminal(call_id)["properties"]["callLog"]
    assert (log["state"], log["hangupSource"], log["errorCode"]["name"]) == ("FINISHED", "API", "MACHINE_DETECTED")
    assert [t for t in receiver.types(call_id) if t in MACHINE_EVENTS] == ["MACHINE_DETECTION_FINISHED"]


def test_a_greeting_that_never_ends_fails_the_message_detection_at_its_timeout(
    live: LiveServer, app: CallsApp, receiver: Receiver, voices: Path
) -> None:
    call_id, engine_id = _answered(live, app, receiver, machineDetection=_detection(message_detection_timeout=6))
    _listening(live, engine_id)
    greeting = single(Verdict.MACHINE, VOICEMAIL, voices, index=5)
    speech = greeting.samples[: (greeting.message_end_ms or 0) * 8]
    speech = speech[np.flatnonzero(np.abs(speech) > 1000)[0] :]
    live.fake.far_end(engine_id).send_audio(np.tile(speech, 3))  # talking on, never a long pause
    receiver.wait_type(call_id, "MACHINE_DETECTION_FINISHED")
    failed = receiver.wait_type(call_id, "MACHINE_MESSAGE_DETECTION_FAILED")
    assert "messageDetectionTimeout" in failed["properties"]["reason"]
    _hang_up(app, receiver, call_id)


def test_no_audio_from_the_far_end_fails_the_detection(live: LiveServer, app: CallsApp, receiver: Receiver) -> None:
    call_id, engine_id = _answered(live, app, receiver, machineDetection=_detection(detection_time=1))
    _listening(live, engine_id)
    failed = receiver.wait_type(call_id, "MACHINE_DETECTION_FAILED")
    assert failed["properties"]["reason"] == "no audio from the far end"
    eventually(lambda: not live.fake.calls[engine_id].taps, "the tap comes off")
    _hang_up(app, receiver, call_id)


def test_a_call_that_ends_before_the_verdict_fails_the_detection(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    call_id, engine_id = _answered(live, app, receiver, machineDetection=_detection())
    _listening(live, engine_id)
    live.fake.far_end(engine_id).hang_up()
    receiver.single_terminal(call_id)
    failed = receiver.wait_type(call_id, "MACHINE_DETECTION_FAILED")
    assert failed["properties"]["reason"] == "the call ended before the detection did"


def test_a_dialog_child_that_reaches_voicemail_gets_its_verdict(
    live: LiveServer, app: CallsApp, receiver: Receiver, voices: Path
) -> None:
    called, agent = f"amd-dialog-{secrets.token_hex(3)}", f"amd-child-{secrets.token_hex(3)}"
    app.route(called)
    live.fake.route(agent, FarEnd(answer_after_s=0.05))
    live.fake.incoming(called)
    parent_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    child_request = {
        "endpoint": {"type": "SIP", "username": agent, "host": "127.0.0.1:5999"},
        "machineDetection": _detection(),
    }
    created = app.http.post("/calls/1/dialogs", json={"parentCallId": parent_id, "childCallRequest": child_request})
    assert created.status_code == 201, created.text
    dialog_id, child_id = created.json()["id"], created.json()["childCall"]["id"]
    [child] = eventually(lambda: live.fake.calls_to(agent), "the child reached the engine")
    _listening(live, child.call_id)
    live.fake.far_end(child.call_id).send_audio(single(Verdict.MACHINE, VOICEMAIL, voices, index=1).samples)
    event = receiver.wait_type(child_id, "MACHINE_DETECTION_FINISHED")
    assert event["dialogId"] == dialog_id
    result = _result(event)
    assert result.detection_result is not None and result.detection_result.value == "MACHINE"
    assert not [e for e in receiver.events(parent_id) if e["type"] in MACHINE_EVENTS]
    live.fake.far_end(child.call_id).hang_up()  # the dialog ends, and with it the parent
    for call_id in (child_id, parent_id):
        receiver.single_terminal(call_id)


def test_a_conference_call_that_reaches_voicemail_gets_its_verdict(
    live: LiveServer, app: CallsApp, receiver: Receiver, voices: Path
) -> None:
    callee = f"amd-conference-{secrets.token_hex(3)}"
    live.fake.route(callee, FarEnd(answer_after_s=0.05))
    conference = app.http.post(
        "/calls/1/conferences", json={"name": callee, "callsConfigurationId": app.configuration_id}
    )
    assert conference.status_code == 201, conference.text
    conference_id = conference.json()["id"]
    call_request = {
        "endpoint": {"type": "SIP", "username": callee, "host": "127.0.0.1:5999"},
        "machineDetection": _detection(),
    }
    added = app.http.post(f"/calls/1/conferences/{conference_id}/call", json={"callRequest": call_request})
    assert added.status_code == 200, added.text
    call_id = added.json()["call"]["id"]
    [call] = eventually(lambda: live.fake.calls_to(callee), "the conference's call reached the engine")
    _listening(live, call.call_id)
    live.fake.far_end(call.call_id).send_audio(single(Verdict.MACHINE, VOICEMAIL, voices, index=1).samples)
    result = _result(receiver.wait_type(call_id, "MACHINE_DETECTION_FINISHED"))
    assert result.detection_result is not None and result.detection_result.value == "MACHINE"
    assert app.http.post(f"/calls/1/conferences/{conference_id}/hangup").status_code == 200
    receiver.single_terminal(call_id)


def test_machine_detection_requests_the_client_refuses_are_refused_and_disabled_means_none(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    body = {
        "endpoint": {"type": "SIP", "username": "amd-refused", "host": "127.0.0.1:5999"},
        "callsConfigurationId": app.configuration_id,
    }
    too_long = app.http.post(
        "/calls/1/calls",
        json=body | {"machineDetection": {"enabled": True, "detectionTime": 5, "messageDetectionTimeout": 3}},
    )
    assert too_long.status_code == 400, too_long.text
    assert "detectionTime" in too_long.text
    out_of_range = app.http.post(
        "/calls/1/calls", json=body | {"machineDetection": {"enabled": True, "detectionTime": 9}}
    )
    assert out_of_range.status_code == 400, out_of_range.text

    call_id, engine_id = _answered(live, app, receiver, machineDetection={"enabled": False})
    assert not live.fake.calls[engine_id].taps
    types = _hang_up(app, receiver, call_id)
    assert not [t for t in types if t in MACHINE_EVENTS]


def test_the_relay_carries_a_call_request_with_machine_detection() -> None:
    """An API process without the engine forwards create_call to the node: the request arrives whole."""
    request = NewCall(
        configuration_id="configuration",
        endpoint=Endpoint(EndpointType.SIP, "voicemail", host="127.0.0.1:5999"),
        machine_detection=MachineDetectionRequest(detection_time_ms=2500, message_timeout_ms=20_000),
    )
    assert decode(json.loads(json.dumps(encode(request)))) == request
