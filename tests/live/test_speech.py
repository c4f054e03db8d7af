"""Live transcription and speech capture through the Calls API on the in-memory engine: real speech sent by the
fake far end (`FarEndControl.send_audio`, frame by frame through the call's audio tap), the real speech-to-text
model, events delivered to the receiver; SQLite and PostgreSQL.

The fake engine delivers a far end's audio at once, so the clock of a capture (its timeout and silence) is the
audio sent, not the wall clock: a test sends the silence that ends a capture.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import pytest

from callplane.testing.engine import FarEnd
from callplane.testing.wer import word_error_rate
from tests.live import speech_audio
from tests.live.speech_audio import Pcm, call_channel, silence
from tests.live.support import CallsApp, LiveServer, Receiver, eventually

pytestmark = pytest.mark.xdist_group("live-fake-engine")

ANSWER = "I would like to talk to someone in billing about my last invoice."


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory) -> Pcm:
    return speech_audio.flite_8k(ANSWER, tmp_path_factory.mktemp("speech") / "answer.wav")


def _answered_call(live: LiveServer, app: CallsApp, receiver: Receiver) -> tuple[str, Any]:
    callee = f"speech-{secrets.token_hex(3)}"
    live.fake.route(callee, FarEnd(ring_after_s=0.0, answer_after_s=0.0))
    call_id = app.create_call(callee)
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    [call] = eventually(lambda: live.fake.calls_to(callee), "the dialled call")
    return call_id, live.fake.far_end(call.call_id)


def _events(receiver: Receiver, call_id: str, kind: str) -> list[dict[str, Any]]:
    return [event for event in receiver.events(call_id) if event["type"] == kind]


def _wait_count(receiver: Receiver, call_id: str, kind: str, count: int) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        found = _events(receiver, call_id, kind)
        return found if len(found) >= count else None

    return eventually(probe, f"{count} {kind} events", timeout_s=180)


def _complete(receiver: Receiver, call_id: str, count: int) -> list[dict[str, Any]]:
    """The first `count` COMPLETE results of the call's TRANSCRIPTION events, once there are that many."""

    def probe() -> list[dict[str, Any]] | None:
        results = [event["properties"]["results"][0] for event in _events(receiver, call_id, "TRANSCRIPTION")]
        complete = [result for result in results if result["type"] == "COMPLETE"]
        return complete[:count] if len(complete) >= count else None

    return eventually(probe, f"{count} COMPLETE results", timeout_s=180)


def test_a_call_is_transcribed_live_utterance_by_utterance_until_stopped(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    call_id, far_end = _answered_call(live, app, receiver)
    body = {"transcription": {"language": "en-US", "sendInterimResults": True}}
    started = app.http.post(f"/calls/1/calls/{call_id}/start-transcription", json=body)
    assert started.status_code == 200 and started.json() == {"status": "PENDING"}, started.text
    again = app.http.post(f"/calls/1/calls/{call_id}/start-transcription", json=body)
    assert again.status_code == 400, again.text

    reference = speech_audio.reference("en_us_cancel")
    far_end.send_audio(np.concatenate([call_channel("en_us_cancel", 0), silence(1.0)]))  # the caller's two turns
    complete = _complete(receiver, call_id, 2)
    assert word_error_rate(reference.text_of("caller"), " ".join(result["text"] for result in complete)) <= 0.2
    first, second = complete
    assert first["startTime"] < first["endTime"] < second["startTime"] < second["endTime"]
    assert all(0 < result["confidence"] <= 1 for result in complete)
    for event in _events(receiver, call_id, "TRANSCRIPTION"):
        [result] = event["properties"]["results"]
        assert result["type"] in ("INTERIM", "COMPLETE") and result["text"]

    stopped = app.http.post(f"/calls/1/calls/{call_id}/stop-transcription")
    assert stopped.status_code == 200, stopped.text
    assert app.http.post(f"/calls/1/calls/{call_id}/stop-transcription").status_code == 400
    heard = len(_events(receiver, call_id, "TRANSCRIPTION"))
    far_end.send_audio(np.concatenate([call_channel("en_us_cancel", 0), silence(1.0)]))  # no tap listens now
    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    receiver.single_terminal(call_id)
    assert len(_events(receiver, call_id, "TRANSCRIPTION")) == heard


def test_transcription_refuses_an_unknown_language_and_a_call_without_media(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    call_id, _ = _answered_call(live, app, receiver)
    unknown = app.http.post(
        f"/calls/1/calls/{call_id}/start-transcription", json={"transcription": {"language": "xx-XX"}}
    )
    assert unknown.status_code == 400
    problems = unknown.json()["requestError"]["serviceException"]["validationErrors"]
    assert "transcription.language" in problems
    # In Infobip's list, but not a language of the speech-to-text model (Whisper has no Zulu).
    zulu = app.http.post(f"/calls/1/calls/{call_id}/start-transcription", json={"transcription": {"language": "zu-ZA"}})
    assert (
        zulu.status_code == 400
        and "transcription.language" in zulu.json()["requestError"]["serviceException"]["validationErrors"]
    )
    speech = app.http.post(f"/calls/1/calls/{call_id}/capture/speech", json={"language": "xx", "timeout": 5})
    assert speech.status_code == 400
    assert (
        app.http.post(f"/calls/1/calls/{call_id}/capture/speech", json={"language": "en-US", "timeout": 31}).status_code
        == 400
    )
    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    receiver.single_terminal(call_id)
    ended = app.http.post(
        f"/calls/1/calls/{call_id}/start-transcription", json={"transcription": {"language": "en-US"}}
    )
    assert ended.status_code in (400, 404), ended.text

    unanswered = f"ringing-{secrets.token_hex(3)}"
    live.fake.route(unanswered, FarEnd(ring_after_s=0.0, answer_after_s=None))
    ringing_id = app.create_call(unanswered)
    receiver.wait_type(ringing_id, "CALL_RINGING")
    refused = app.http.post(
        f"/calls/1/calls/{ringing_id}/start-transcription", json={"transcription": {"language": "en-US"}}
    )
    assert refused.status_code == 400, refused.text
    assert app.http.post(f"/calls/1/calls/{ringing_id}/hangup", json={}).status_code == 200
    receiver.single_terminal(ringing_id)


def test_speech_capture_ends_on_a_key_phrase(live: LiveServer, app: CallsApp, receiver: Receiver, answer: Pcm) -> None:
    call_id, far_end = _answered_call(live, app, receiver)
    body = {
        "language": "en-US",
        "timeout": 20,
        "maxSilence": 2,
        "keyPhrases": ["sales", "billing"],
        "customData": {"menu": "main"},
    }
    assert app.http.post(f"/calls/1/calls/{call_id}/capture/speech", json=body).status_code == 200
    assert app.http.post(f"/calls/1/calls/{call_id}/capture/speech", json=body).status_code == 400  # one at a time
    far_end.send_audio(np.concatenate([silence(0.5), answer, silence(3.0)]))
    captured = receiver.wait_type(call_id, "SPEECH_CAPTURED", timeout_s=180)["properties"]
    assert captured["terminationReason"] == "KEY_PHRASE" and captured["matchedKeyPhrase"] == "billing"
    assert "billing" in captured["fullText"].lower() and 0 < captured["confidence"] <= 1
    assert captured["customData"] == {"menu": "main"}
    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    receiver.single_terminal(call_id)
    assert len(_events(receiver, call_id, "SPEECH_CAPTURED")) == 1


def test_speech_capture_ends_on_silence_on_timeout_and_on_hangup(
    live: LiveServer, app: CallsApp, receiver: Receiver, answer: Pcm
) -> None:
    call_id, far_end = _answered_call(live, app, receiver)
    body = {
        "language": "en-US",
        "timeout": 20,
        "maxSilence": 1,
        "keyPhrases": ["billing"],
        "terminateOnKeyPhrase": False,
    }
    assert app.http.post(f"/calls/1/calls/{call_id}/capture/speech", json=body).status_code == 200
    far_end.send_audio(np.concatenate([answer, silence(2.0)]))
    silent = receiver.wait_type(call_id, "SPEECH_CAPTURED", timeout_s=180)["properties"]
    assert silent["terminationReason"] == "SILENCE" and silent["matchedKeyPhrase"] == "billing"
    assert word_error_rate(ANSWER, silent["fullText"]) <= 0.25

    assert (
        app.http.post(f"/calls/1/calls/{call_id}/capture/speech", json={"language": "en-GB", "timeout": 2}).status_code
        == 200
    )
    far_end.send_audio(silence(3.0))
    timed_out = _wait_count(receiver, call_id, "SPEECH_CAPTURED", 2)[-1]["properties"]
    assert timed_out == {"fullText": "", "matchedKeyPhrase": None, "confidence": 0.0, "terminationReason": "TIMEOUT"}

    assert (
        app.http.post(f"/calls/1/calls/{call_id}/capture/speech", json={"language": "en-US", "timeout": 30}).status_code
        == 200
    )
    far_end.send_audio(np.concatenate([answer, silence(0.5)]))  # said, not yet ended by silence
    far_end.hang_up()
    receiver.single_terminal(call_id)
    hung_up = _wait_count(receiver, call_id, "SPEECH_CAPTURED", 3)[-1]["properties"]
    assert hung_up["terminationReason"] == "HANGUP"
