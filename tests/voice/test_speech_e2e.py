"""Live speech over the wire: a sipp caller plays a known English recording (RTP, PCMA) into a real engine, the
call is transcribed live and its speech captured, driven through the official client; SQLite and PostgreSQL.

Prints the delay from each utterance's end (the result's endTime) to its COMPLETE event (the event's timestamp,
both on the server's clock); docs/transcription.md records figures. No timing is asserted.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from infobip_api_client.models.call_transcription_language import CallTranscriptionLanguage
from infobip_api_client.models.calls_speech_capture_request import CallsSpeechCaptureRequest
from infobip_api_client.models.calls_start_transcription_request import CallsStartTranscriptionRequest
from infobip_api_client.models.calls_transcription import CallsTranscription

from callplane.core.transcripts.streaming import LiveAsr
from callplane.runtime import asr_settings
from callplane.testing.infobip import calls_api
from callplane.testing.sipp import write_rtp_pcap
from callplane.testing.wer import word_error_rate
from tests.live import speech_audio
from tests.live.speech_audio import call_channel, silence
from tests.voice.support import (
    App,
    Receiver,
    VoiceServer,
    render_voice_scenario,
    run_sipp,
    settle_then_single_terminal,
    sipp_result,
)

# (test call, channel) played one after the other by the sipp caller: 6 turns, 56 words
SPOKEN = (("en_gb_delivery", 1), ("en_us_appointment", 1), ("en_us_cancel", 0))
ANSWER = "I would like to talk to someone in billing about my last invoice."


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _caller(voice_server: VoiceServer, app: App, receiver: Receiver, pcap: Path, directory: Path) -> tuple[str, Any]:
    """A sipp caller that plays `pcap` once answered, answered through the API; its call id and sipp process."""
    called = f"speech-{secrets.token_hex(3)}"
    routed = app.native.post(f"/v1/voice/configurations/{app.configuration_id}/routes", json={"called_user": called})
    assert routed.status_code == 201, routed.text
    scenario = render_voice_scenario("uac_tone.xml", directory, TONE_PCAP=str(pcap), BYE_TIMEOUT_MS="120000")
    sipp = run_sipp(scenario, remote=f"127.0.0.1:{voice_server.sip_port}", extra=["-s", called])
    received = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
    call_id: str = received["callId"]
    assert app.http.post(f"/calls/1/calls/{call_id}/answer", json={}).status_code == 200
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    return call_id, sipp


def _complete(receiver: Receiver, call_id: str, count: int) -> list[dict[str, Any]]:
    """The call's COMPLETE TRANSCRIPTION events in the order said, once there are `count` and no more came for 3 s
    (the VAD may split a turn at a long pause over RTP)."""
    deadline, seen, quiet_since = time.monotonic() + 240, -1, time.monotonic()
    while time.monotonic() < deadline:
        events = [e for e in receiver.events(call_id) if e["type"] == "TRANSCRIPTION"]
        complete = [e for e in events if e["properties"]["results"][0]["type"] == "COMPLETE"]
        if len(complete) != seen:
            seen, quiet_since = len(complete), time.monotonic()
        elif seen >= count and time.monotonic() - quiet_since >= 3.0:
            return sorted(complete, key=lambda e: str(e["properties"]["results"][0]["startTime"]))
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} COMPLETE transcripts: {[e['type'] for e in receiver.events(call_id)]}")


def test_a_sipp_caller_is_transcribed_live(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    turns = [speech_audio.reference(name) for name, _ in SPOKEN]
    pcap = tmp_path / "caller.pcap"
    # The turns with 1 s between them, after 2 s of silence: the transcription starts after the answer, while sipp
    # already plays.
    spoken = []
    for reference, (name, channel) in zip(turns, SPOKEN, strict=True):
        samples = call_channel(name, channel)
        for turn in (turn for turn in reference.turns if turn.speaker == ("caller", "agent")[channel]):
            spoken += [samples[int(turn.start_s * 8000) : int(turn.end_s * 8000)], silence(1.0)]
    write_rtp_pcap(pcap, np.concatenate([silence(2.0), *spoken, silence(1.0)]))  # about 37 s
    # The server's model (shared by the process), assembled and loaded now: the delays below are a warm node's.
    LiveAsr(asr_settings(voice_server.running.settings)).engine()
    call_id, sipp = _caller(voice_server, app, receiver, pcap, tmp_path)
    calls = calls_api(voice_server.running.base_url, app.http.headers["Authorization"].removeprefix("App "))
    english = CallTranscriptionLanguage.EN_MINUS_US
    body = CallsStartTranscriptionRequest(transcription=CallsTranscription(language=english))
    assert calls.call_start_transcription(call_id, body).status == "PENDING"

    complete = _complete(receiver, call_id, 6)  # two turns per recording
    texts = [event["properties"]["results"][0]["text"] for event in complete]
    said = " ".join(ref.text_of(("caller", "agent")[channel]) for ref, (_, channel) in zip(turns, SPOKEN, strict=True))
    assert word_error_rate(said, " ".join(texts)) <= 0.2, texts
    delays = [
        (_at(event["timestamp"]) - _at(event["properties"]["results"][0]["endTime"])).total_seconds()
        for event in complete
    ]
    print(f"\n[{request.node.name}] utterance end -> COMPLETE event: {', '.join(f'{d:.2f} s' for d in delays)}")

    assert calls.call_stop_transcription(call_id).status == "PENDING"
    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    code, output = sipp_result(sipp)
    assert code == 0, output
    assert settle_then_single_terminal(receiver, call_id)["type"] == "CALL_FINISHED"


def test_a_sipp_callers_answer_is_captured_with_its_key_phrase(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    pcap = tmp_path / "answer.pcap"
    answer = speech_audio.flite_8k(ANSWER, tmp_path / "answer.wav")
    # said twice, 1.2 s apart (under maxSilence): a capture that starts late on a loaded machine still hears one whole
    write_rtp_pcap(pcap, np.concatenate([silence(2.0), answer, silence(1.2), answer, silence(4.0)]))
    call_id, sipp = _caller(voice_server, app, receiver, pcap, tmp_path)
    calls = calls_api(voice_server.running.base_url, app.http.headers["Authorization"].removeprefix("App "))
    body = CallsSpeechCaptureRequest(
        language=CallTranscriptionLanguage.EN_MINUS_US, timeout=20, max_silence=2, key_phrases=["sales", "billing"]
    )
    assert calls.call_capture_speech(call_id, body).status == "PENDING"

    captured = receiver.wait_type(call_id, "SPEECH_CAPTURED", timeout_s=180)["properties"]
    assert captured["terminationReason"] == "KEY_PHRASE" and captured["matchedKeyPhrase"] == "billing"
    assert "billing" in captured["fullText"].lower() and 0 < captured["confidence"] <= 1
    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    code, output = sipp_result(sipp)
    assert code == 0, output
    assert settle_then_single_terminal(receiver, call_id)["type"] == "CALL_FINISHED"
