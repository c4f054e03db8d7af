"""A conference end to end, through the official client: three sipp callees (each sending its own tone) placed into
one conference, its composed recording holding the three tones, twelve more callees filling it to 15, a 16th
refused before anything is dialled, then the conference hung up: every call ends once, and every conference and
participant event arrives exactly once and in order. Real server and engine, both databases. (What each leg
hears of the others, mute and deaf, is the mixer's wire test: tests/media/test_mix_media.py.)"""

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
from infobip_api_client.models.calls_conference_recording_request import CallsConferenceRecordingRequest
from infobip_api_client.models.calls_conference_request import CallsConferenceRequest
from infobip_api_client.models.calls_participant_state import CallsParticipantState
from infobip_api_client.models.calls_recording_type import CallsRecordingType
from infobip_api_client.models.calls_sip_endpoint import CallsSipEndpoint
from infobip_api_client.models.calls_sip_trunk_type import CallsSipTrunkType
from infobip_api_client.models.calls_static_sip_trunk_request import CallsStaticSipTrunkRequest

from callplane.testing.infobip import calls_api
from callplane.testing.sipp import free_even_port_pair, free_udp_port, render_scenario, tone, write_rtp_pcap
from tests.voice.support import (
    STARTED_SIPPS,
    App,
    Receiver,
    VoiceServer,
    render_voice_scenario,
    settle_then_single_terminal,
    sipp_result,
)

TONES = (600.0, 1000.0, 1500.0)  # no second-order product of two lands on the third
FILLERS = 12


def _sipp(directory: Path, scenario: Path, port: int, calls: int) -> subprocess.Popen[bytes]:
    args = [
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_even_port_pair()),
        "-nostdin", "-trace_err", "-m", str(calls), "-timeout", "150s", "-timeout_error",
    ]  # fmt: skip
    process = subprocess.Popen(
        args, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"}
    )
    STARTED_SIPPS.append(process)
    return process


def _talking_callee(directory: Path, frequency_hz: float) -> tuple[subprocess.Popen[bytes], int]:
    """A sipp callee that rings briefly, answers and streams its own tone until our BYE."""
    directory.mkdir()
    pcap = directory / "tone.pcap"
    write_rtp_pcap(pcap, tone(frequency_hz, 60.0))
    scenario = render_voice_scenario(
        "uas_tone.xml", directory, TONE_PCAP=str(pcap), BYE_TIMEOUT_MS="120000", RING_MS="200"
    )
    port = free_udp_port()
    return _sipp(directory, scenario, port, 1), port


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


def _band(samples: np.ndarray[Any, np.dtype[np.int16]], frequency_hz: float) -> float:
    """The share of the signal's spectral energy within 25 Hz of a frequency."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
    total = float(spectrum.sum()) or 1.0
    return float(spectrum[np.abs(freqs - frequency_hz) < 25].sum()) / total


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
            _add(calls, conference_id, _trunk(calls, port, 1), f"talker{i}") for i, (_, port) in enumerate(talkers)
        ]
        for call_id in talker_ids:
            _wait(receiver, conference_id, "PARTICIPANT_JOINED", call_id)

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
            assert _band(heard, hz) > 0.1, (hz, [round(_band(heard, f), 3) for f in TONES])

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
        for process in [*(p for p, _ in talkers), fillers]:
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
        lifecycle = ["PARTICIPANT_JOINING", "PARTICIPANT_JOINED", "PARTICIPANT_REMOVED"]
        for call_id in everyone:
            mine = [e for e in events if e.get("callId") == call_id]
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
