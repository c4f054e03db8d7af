"""A conference end to end, through the official client: three sipp callees (each sending its own tone) placed into
one conference; what each leg receives, captured on lo, shows it hears the two others and never itself, mute, deaf
and a file played to the room; its composed recording holds the three tones; twelve more callees fill it to 15, a
16th is refused before anything is dialled, then the conference is hung up: every call ends once, and every
conference and participant event arrives exactly once and in order. Real server and engine, both databases."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import wave
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from infobip_api_client.api.calls_api import CallsApi
from infobip_api_client.exceptions import ApiException
from infobip_api_client.models.call_endpoint_type import CallEndpointType
from infobip_api_client.models.calls_action_call_request import CallsActionCallRequest
from infobip_api_client.models.calls_add_new_call_request import CallsAddNewCallRequest
from infobip_api_client.models.calls_billing_package import CallsBillingPackage
from infobip_api_client.models.calls_conference_composition import CallsConferenceComposition
from infobip_api_client.models.calls_conference_play_request import CallsConferencePlayRequest
from infobip_api_client.models.calls_conference_recording_request import CallsConferenceRecordingRequest
from infobip_api_client.models.calls_conference_request import CallsConferenceRequest
from infobip_api_client.models.calls_file_play_content import CallsFilePlayContent
from infobip_api_client.models.calls_participant_state import CallsParticipantState
from infobip_api_client.models.calls_play_content_type import CallsPlayContentType
from infobip_api_client.models.calls_recording_type import CallsRecordingType
from infobip_api_client.models.calls_sip_endpoint import CallsSipEndpoint
from infobip_api_client.models.calls_sip_trunk_type import CallsSipTrunkType
from infobip_api_client.models.calls_static_sip_trunk_request import CallsStaticSipTrunkRequest
from infobip_api_client.models.calls_update_call_request import CallsUpdateCallRequest

from callplane.testing.infobip import calls_api
from callplane.testing.sipp import (
    LoopbackCapture,
    free_even_port_pair,
    free_udp_port,
    render_scenario,
    rms,
    share,
    tone,
    write_rtp_pcap,
)
from tests.voice.support import (
    STARTED_SIPPS,
    App,
    Receiver,
    VoiceServer,
    render_voice_scenario,
    settle_then_single_terminal,
    sipp_result,
    upload_tone_file,
    voice_server_fixture,
)

# the composed conference recording and the uploaded prompt also go to a bucket
voice_server = voice_server_fixture(with_s3=True)

TONES = (600.0, 1000.0, 1500.0)  # no second-order product of two lands on the third
PROMPT_HZ = 2300.0
FILLERS = 12


def _sipp(
    directory: Path, scenario: Path, port: int, calls: int, media_port: int | None = None
) -> subprocess.Popen[bytes]:
    args = [
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port),
        "-mp", str(media_port or free_even_port_pair()),
        "-nostdin", "-trace_err", "-m", str(calls), "-timeout", "150s", "-timeout_error",
    ]  # fmt: skip
    process = subprocess.Popen(
        args, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"}
    )
    STARTED_SIPPS.append(process)
    return process


def _talking_callee(directory: Path, frequency_hz: float) -> tuple[subprocess.Popen[bytes], int, int]:
    """A sipp callee that rings briefly, answers and streams its own tone until our BYE: (sipp, SIP port, the media
    port where what it hears arrives)."""
    directory.mkdir()
    pcap = directory / "tone.pcap"
    write_rtp_pcap(pcap, tone(frequency_hz, 60.0))
    scenario = render_voice_scenario(
        "uas_tone.xml", directory, TONE_PCAP=str(pcap), BYE_TIMEOUT_MS="120000", RING_MS="200"
    )
    port, media_port = free_udp_port(), free_even_port_pair()
    return _sipp(directory, scenario, port, 1, media_port), port, media_port


def _trunk(calls: CallsApi, port: int, channels: int) -> str:
    trunk = calls.create_sip_trunk(
        CallsStaticSipTrunkRequest(
            name=f"conference-{port}",
            channel_limit=channels,
            billing_package=CallsBillingPackage(package_type="METERED"),
            destination_hosts=[f"127.0.0.1:{port}"],
            codecs=["PCMU", "PCMA"],
            type=CallsSipTrunkType.STATIC,
        )
    )
    return str(trunk.id)


def _add(calls: CallsApi, conference_id: str, trunk_id: str, user: str, headers: dict[str, str] | None = None) -> str:
    endpoint = CallsSipEndpoint(
        type=CallEndpointType.SIP, username=user, sip_trunk_id=trunk_id, custom_headers=headers or None
    )
    added = calls.add_new_conference_call(
        conference_id, CallsAddNewCallRequest(call_request=CallsActionCallRequest(endpoint=endpoint))
    )
    assert added.call is not None and added.call.id is not None
    return str(added.call.id)


def _conference_events(receiver: Receiver, conference_id: str) -> list[dict[str, Any]]:
    return sorted(
        (e for e in receiver.events() if e.get("conferenceId") == conference_id), key=lambda e: e["timestamp"]
    )


def _wait(receiver: Receiver, conference_id: str, event_type: str, call_id: str | None = None) -> dict[str, Any]:
    return receiver.wait_for(
        lambda e: (
            e.get("conferenceId") == conference_id
            and e["type"] == event_type
            and (call_id is None or e.get("callId") == call_id)
        ),
        timeout_s=60,
    )


@pytest.mark.slow
def test_a_conference_of_three_talking_callees_fills_to_15_refuses_a_16th_and_ends_once(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    account_key = app.http.headers["authorization"].removeprefix("App ")
    calls = calls_api(voice_server.running.base_url, account_key)
    talkers = [_talking_callee(tmp_path / f"talker-{i}", hz) for i, hz in enumerate(TONES)]
    filler_dir = tmp_path / "fillers"
    filler_dir.mkdir()
    filler_port = free_udp_port()
    fillers = _sipp(filler_dir, render_scenario("uas_answer.xml", filler_dir, BYE_TIMEOUT_MS="120000"), filler_port, 12)
    time.sleep(0.3)  # the sipps bind their sockets
    try:
        name = f"e2e-{secrets.token_hex(3)}"
        conference = calls.create_conference(
            CallsConferenceRequest(name=name, calls_configuration_id=app.configuration_id)
        )
        conference_id = str(conference.id)
        talker_ids = [
            _add(calls, conference_id, _trunk(calls, port, 1), f"talker{i}") for i, (_, port, _) in enumerate(talkers)
        ]
        for call_id in talker_ids:
            _wait(receiver, conference_id, "PARTICIPANT_JOINED", call_id)
        prompt_id = upload_tone_file(app.http, tmp_path, PROMPT_HZ, 1.0)
        _each_leg_hears_the_others(calls, receiver, conference_id, talker_ids, [mp for *_, mp in talkers], prompt_id)

        # the room mixed on the wire: its composed recording holds every talker's tone
        calls.conference_start_recording(
            conference_id,
            CallsConferenceRecordingRequest(
                recording_type=CallsRecordingType.AUDIO,
                conference_composition=CallsConferenceComposition(enabled=True),
            ),
        )
        time.sleep(2.0)
        calls.conference_stop_recording(conference_id)
        ready = _wait(receiver, conference_id, "CONFERENCE_RECORDING_READY")["properties"]["recording"]
        file_id = ready["composedFiles"][0]["id"]
        download = app.http.get(f"/calls/1/recordings/files/{file_id}")
        assert download.status_code == 200
        with wave.open(BytesIO(download.content)) as wav:
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        heard = samples[len(samples) // 4 :]  # past the joins' first frames
        for hz in TONES:
            assert share(heard, hz) > 0.1, (hz, [round(share(heard, f), 3) for f in TONES])

        filler_trunk = _trunk(calls, filler_port, FILLERS + 1)
        filler_ids = [
            _add(calls, conference_id, filler_trunk, f"filler{i}", {"X-Campaign": "campaign-7"}) for i in range(FILLERS)
        ]
        for call_id in filler_ids:
            _wait(receiver, conference_id, "PARTICIPANT_JOINED", call_id)
        got = calls.get_conference(conference_id)
        assert len(got.participants or []) == 15
        assert {p.state for p in got.participants or []} == {CallsParticipantState.JOINED}
        with pytest.raises(ApiException) as refused:
            _add(calls, conference_id, filler_trunk, "sixteenth", {"X-Campaign": "campaign-7"})
        assert refused.value.status == 400
        text = json.loads(refused.value.body or "{}")["requestError"]["serviceException"]["text"]
        assert "at most 15 participants" in text

        hung = calls.hangup_conference(conference_id)
        assert hung.id == conference_id
        everyone = talker_ids + filler_ids
        for call_id in everyone:
            terminal = settle_then_single_terminal(receiver, call_id)
            assert terminal["type"] == "CALL_FINISHED"
            assert terminal["properties"]["callLog"]["hangupSource"] == "API"
            assert terminal["properties"]["callLog"]["conferenceIds"] == [conference_id]
        _wait(receiver, conference_id, "CONFERENCE_FINISHED")
        for process in [*(p for p, *_ in talkers), fillers]:
            code, output = sipp_result(process, timeout_s=90)
            assert code == 0, output

        time.sleep(1.0)  # a duplicate would have been written with the original
        events = _conference_events(receiver, conference_id)
        kinds = [e["type"] for e in events]
        assert kinds.count("CONFERENCE_CREATED") == 1 and kinds.count("CONFERENCE_FINISHED") == 1
        created = next(e for e in events if e["type"] == "CONFERENCE_CREATED")
        finished = next(e for e in events if e["type"] == "CONFERENCE_FINISHED")
        assert created["timestamp"] == events[0]["timestamp"] and finished["timestamp"] == events[-1]["timestamp"]
        assert kinds.count("CONFERENCE_RECORDING_READY") == 1
        changed = sorted(e["callId"] for e in events if e["type"] == "PARTICIPANT_MEDIA_CHANGED")
        assert changed == sorted([talker_ids[0]] * 2 + [talker_ids[1]] * 2)  # mute, unmute, deaf, undeaf
        lifecycle = ["PARTICIPANT_JOINING", "PARTICIPANT_JOINED", "PARTICIPANT_REMOVED"]
        for call_id in everyone:
            mine = [e for e in events if e.get("callId") == call_id and e["type"] != "PARTICIPANT_MEDIA_CHANGED"]
            assert sorted(e["type"] for e in mine) == sorted(lifecycle), (call_id, [e["type"] for e in mine])
            # in order: each step's timestamp (ms) no earlier than the step before it
            stamps = [next(e["timestamp"] for e in mine if e["type"] == kind) for kind in lifecycle]
            assert stamps == sorted(stamps), (call_id, stamps)
            assert events[0]["timestamp"] <= stamps[0] and stamps[-1] <= events[-1]["timestamp"]
        assert not [e for e in events if e.get("callId") not in (None, *everyone)]  # nothing of the 16th
        history = calls.get_conference_history(conference_id)
        assert sorted(s.call_id or "" for s in history.sessions or []) == sorted(everyone)
    finally:
        calls.api_client.rest_client.pool_manager.clear()


def _each_leg_hears_the_others(
    calls: CallsApi, receiver: Receiver, conference_id: str, talker_ids: list[str], ports: list[int], prompt_id: str
) -> None:
    """What each talking sipp leg received, captured on lo, phase by phase as the client changes the room: it hears
    the two other tones and never its own; a muted leg leaves the others' audio; a deaf leg hears nothing; a file
    played into the conference reaches everyone. Each change is one PARTICIPANT_MEDIA_CHANGED (checked at the end)."""
    capture = LoopbackCapture(set(ports))
    capture.start()

    def phase() -> list[np.ndarray[Any, np.dtype[np.int16]]]:
        started = time.monotonic()  # the first 400 ms left out: the change in flight, jitter buffers
        time.sleep(1.6)
        ended = time.monotonic()
        return [capture.audio(port, started + 0.4, ended) for port in ports]

    def update(index: int, **change: bool) -> None:
        calls.update_conference_call(conference_id, talker_ids[index], CallsUpdateCallRequest(**change))

    try:
        everyone = phase()
        update(0, muted=True)
        zero_muted = phase()
        update(0, muted=False)
        update(1, deaf=True)
        one_deaf = phase()
        update(1, deaf=False)
        content = CallsFilePlayContent(type=CallsPlayContentType.FILE, file_id=prompt_id)
        calls.conference_play_file(conference_id, CallsConferencePlayRequest(content=content, loop_count=10))
        prompted = phase()
        calls.conference_stop_playing_file(conference_id)
    finally:
        capture.stop()
    shares = {
        name: [[round(share(a, hz), 3) for hz in (*TONES, PROMPT_HZ)] for a in got]
        for name, got in (
            ("everyone", everyone),
            ("zero_muted", zero_muted),
            ("one_deaf", one_deaf),
            ("prompted", prompted),
        )
    }
    for leg, received in enumerate(everyone):  # each hears the two others, never itself
        assert share(received, TONES[leg]) < 0.01, shares
        assert all(share(received, hz) > 0.2 for other, hz in enumerate(TONES) if other != leg), shares
    for leg in (1, 2):  # 0 muted: the others no longer hear it, and still hear each other
        assert share(zero_muted[leg], TONES[0]) < 0.01, shares
        assert share(zero_muted[leg], TONES[3 - leg]) > 0.8, shares
    assert rms(one_deaf[1]) < 30, shares  # 1 deaf: silence
    assert share(one_deaf[0], TONES[1]) > 0.2 and share(one_deaf[2], TONES[1]) > 0.2, shares  # still heard
    for received in prompted:  # the file reaches every leg, over the others' voices
        assert share(received, PROMPT_HZ) > 0.1, shares
    played = _wait(receiver, conference_id, "PLAY_FINISHED")
    assert played["properties"].get("playedCompletely") is False
