"""Answering-machine detection end to end: an outbound call with `machineDetection` to a sipp callee that answers
and plays a voicemail greeting with a beep over RTP (PCMA); the real engine's audio tap feeds the detector, and
MACHINE_DETECTION_FINISHED (MACHINE) then MACHINE_MESSAGE_DETECTION_FINISHED reach the loopback receiver. Real
server and engine, both databases."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
from infobip_api_client.models.calls_machine_detection_properties import CallsMachineDetectionProperties
from infobip_api_client.models.calls_machine_detection_request import CallsMachineDetectionRequest

from callplane.media.amd import Verdict
from callplane.testing.sipp import free_even_port_pair, free_udp_port, write_rtp_pcap
from tests.amd.generate import single
from tests.voice.support import (
    STARTED_SIPPS,
    App,
    Receiver,
    VoiceServer,
    render_voice_scenario,
    settle_then_single_terminal,
    sipp_result,
)

VOICEMAIL = "Hi, you've reached John Smith. I can't take your call right now, please leave a message after the tone."


def _voicemail_callee(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A sipp callee that answers, then plays the greeting, its beep and silence, and waits for our BYE."""
    greeting = single(Verdict.MACHINE, VOICEMAIL, directory / "voices", index=0)
    assert greeting.beep_hz is not None
    pcap = directory / "voicemail.pcap"
    write_rtp_pcap(pcap, np.concatenate([np.zeros(4000, dtype=np.int16), greeting.samples]))
    scenario = render_voice_scenario(
        "uas_tone.xml", directory, TONE_PCAP=str(pcap), BYE_TIMEOUT_MS="60000", RING_MS="100"
    )
    port = free_udp_port()
    args = [
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_even_port_pair()),
        "-nostdin", "-trace_err", "-m", "1", "-timeout", "90s", "-timeout_error",
    ]  # fmt: skip
    process = subprocess.Popen(args, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    STARTED_SIPPS.append(process)
    time.sleep(0.3)  # sipp binds its socket
    return process, port


def test_a_voicemail_with_a_beep_over_rtp_is_a_machine_and_its_message_end_is_found(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    callee, port = _voicemail_callee(tmp_path)
    detection = CallsMachineDetectionRequest(enabled=True, message_detection_timeout=30).to_dict()
    created = app.http.post(
        "/calls/1/calls",
        json={
            "endpoint": {"type": "SIP", "username": "voicemail", "host": f"127.0.0.1:{port}"},
            "callsConfigurationId": app.configuration_id,
            "machineDetection": detection,
        },
    )
    assert created.status_code == 201, created.text
    call_id = created.json()["id"]
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    decided = receiver.wait_type(call_id, "MACHINE_DETECTION_FINISHED", 30)
    result = CallsMachineDetectionProperties.from_dict(decided["properties"])
    assert result is not None and result.detection_result is not None
    assert result.detection_result.value == "MACHINE"
    ended = receiver.wait_type(call_id, "MACHINE_MESSAGE_DETECTION_FINISHED", 40)
    assert ended["properties"]["detectionResult"] == "MACHINE"
    assert decided["timestamp"] <= ended["timestamp"]
    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    assert settle_then_single_terminal(receiver, call_id)["type"] == "CALL_FINISHED"
    code, output = sipp_result(callee)
    assert code == 0, output
    types = [e["type"] for e in receiver.events(call_id)]
    assert "MACHINE_DETECTION_FAILED" not in types and "MACHINE_MESSAGE_DETECTION_FAILED" not in types
