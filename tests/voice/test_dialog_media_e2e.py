"""A dialog's own media end to end, through the official client: say/play heard by both parties (mixed over
what they hear of each other), dialog recordings composed and per call, the dialog-recording routes. Real
server and engine, two sipp parties that each send their own tone, events at the loopback receiver, both
databases."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from infobip_api_client.api.calls_api import CallsApi
from infobip_api_client.exceptions import ApiException
from infobip_api_client.models.call_endpoint_type import CallEndpointType
from infobip_api_client.models.calls_dialog_call_request import CallsDialogCallRequest
from infobip_api_client.models.calls_dialog_play_request import CallsDialogPlayRequest
from infobip_api_client.models.calls_dialog_propagation_options import CallsDialogPropagationOptions
from infobip_api_client.models.calls_dialog_recording_composition import CallsDialogRecordingComposition
from infobip_api_client.models.calls_dialog_recording_request import CallsDialogRecordingRequest
from infobip_api_client.models.calls_dialog_request import CallsDialogRequest
from infobip_api_client.models.calls_dialog_say_request import CallsDialogSayRequest
from infobip_api_client.models.calls_dialog_state import CallsDialogState
from infobip_api_client.models.calls_file_play_content import CallsFilePlayContent
from infobip_api_client.models.calls_language import CallsLanguage
from infobip_api_client.models.calls_multi_channel import CallsMultiChannel
from infobip_api_client.models.calls_on_demand_composition import CallsOnDemandComposition
from infobip_api_client.models.calls_play_content_type import CallsPlayContentType
from infobip_api_client.models.calls_recording_type import CallsRecordingType
from infobip_api_client.models.calls_sip_endpoint import CallsSipEndpoint

from callplane.testing.infobip import calls_api
from callplane.testing.sipp import free_even_port_pair, free_udp_port, tone, write_rtp_pcap
from tests.voice.support import (
    STARTED_SIPPS,
    App,
    Receiver,
    VoiceServer,
    render_voice_scenario,
    run_sipp,
    settle_then_single_terminal,
    sipp_result,
    static_trunk,
    upload_tone_file,
    voice_server_fixture,
)

# recordings, compositions and the uploaded prompt also go to a bucket
voice_server = voice_server_fixture(with_s3=True)

CALLER_HZ, CALLEE_HZ, PROMPT_HZ = 700.0, 1300.0, 2000.0


def _talking_callee(directory: Path, frequency_hz: float, ring_ms: int = 200) -> tuple[Any, int]:
    """A sipp callee on its own port that rings for `ring_ms`, then streams its own tone once answered."""
    pcap = directory / "callee-tone.pcap"
    write_rtp_pcap(pcap, tone(frequency_hz, 40.0))
    scenario = render_voice_scenario(
        "uas_tone.xml", directory, TONE_PCAP=str(pcap), BYE_TIMEOUT_MS="90000", RING_MS=str(ring_ms)
    )
    port = free_udp_port()
    args = [
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_even_port_pair()),
        "-nostdin", "-trace_err", "-m", "1", "-timeout", "120s", "-timeout_error",
    ]  # fmt: skip
    process = subprocess.Popen(args, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    STARTED_SIPPS.append(process)
    time.sleep(0.3)  # sipp binds its socket
    return process, port


def _band(samples: np.ndarray[Any, np.dtype[np.int16]], frequency_hz: float) -> float:
    """The share of the signal's spectral energy within 25 Hz of a frequency."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
    total = float(spectrum.sum()) or 1.0
    return float(spectrum[np.abs(freqs - frequency_hz) < 25].sum()) / total


def _wav(content: bytes, path: Path) -> tuple[np.ndarray[Any, np.dtype[np.int16]], int]:
    path.write_bytes(content)
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16), wav.getnchannels()


def _dialog_event(receiver: Receiver, dialog_id: str, event_type: str, after: int = 0) -> dict[str, Any]:
    def matches(event: dict[str, Any]) -> bool:
        return event.get("dialogId") == dialog_id and "callId" not in event and event["type"] == event_type

    receiver.wait_for(lambda e: matches(e) and len([x for x in receiver.events() if matches(x)]) > after, 60)
    return [event for event in receiver.events() if matches(event)][after]


def _status(call: Any) -> int:
    with pytest.raises(ApiException) as error:
        call()
    body = json.loads(error.value.body or "{}")
    assert "requestError" in body
    return int(error.value.status)


def test_dialog_prompts_reach_both_parties_and_dialog_recordings_hold_each_party(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    account_key = app.http.headers["authorization"].removeprefix("App ")
    calls: CallsApi = calls_api(voice_server.running.base_url, account_key)
    try:
        _run(calls, voice_server, app, receiver, tmp_path)
    finally:
        calls.api_client.rest_client.pool_manager.clear()


def _run(calls: CallsApi, voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path) -> None:
    prompt_id = upload_tone_file(app.http, tmp_path, PROMPT_HZ, 1.5)
    called = f"dialog-media-{secrets.token_hex(3)}"
    app.native.post(f"/v1/voice/configurations/{app.configuration_id}/routes", json={"called_user": called})
    callee_dir = tmp_path / "callee"
    callee_dir.mkdir()
    callee, callee_port = _talking_callee(callee_dir, CALLEE_HZ)
    caller_pcap = tmp_path / "caller-tone.pcap"
    write_rtp_pcap(caller_pcap, tone(CALLER_HZ, 40.0))
    caller = run_sipp(
        render_voice_scenario("uac_tone.xml", tmp_path, TONE_PCAP=str(caller_pcap), BYE_TIMEOUT_MS="90000"),
        remote=f"127.0.0.1:{voice_server.sip_port}",
        extra=["-s", called],
    )
    parent_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    created = app.http.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": parent_id,
            "childCallRequest": {"endpoint": {"type": "SIP", "username": "agent", "host": f"127.0.0.1:{callee_port}"}},
            "propagationOptions": {"childCallRinging": True},
        },
    )
    assert created.status_code == 201, created.text
    dialog_id = created.json()["id"]
    child_id = created.json()["childCall"]["id"]
    receiver.wait_type(parent_id, "CALL_RINGING")  # the child's 180, propagated to the caller
    _dialog_event(receiver, dialog_id, "DIALOG_ESTABLISHED")

    # 1. a prompt both parties hear: each leg's own STEREO call recording shows what it sent
    for call_id in (parent_id, child_id):
        started = app.http.post(
            f"/calls/1/calls/{call_id}/start-recording",
            json={"recording": {"recordingType": "AUDIO", "channels": "STEREO"}},
        )
        assert started.status_code == 200, started.text
    composed = CallsDialogRecordingRequest(
        recording_type=CallsRecordingType.AUDIO, dialog_composition=CallsDialogRecordingComposition(enabled=True)
    )
    assert _status(lambda: calls.dialog_start_recording(dialog_id, composed)) == 400  # exclusive with the calls'
    content = CallsFilePlayContent(type=CallsPlayContentType.FILE, file_id=prompt_id)
    assert calls.dialog_play_file(dialog_id, CallsDialogPlayRequest(content=content)).status == "PENDING"
    played = _dialog_event(receiver, dialog_id, "PLAY_FINISHED")
    assert played["properties"]["playedCompletely"] is True and played["callsConfigurationId"] == app.configuration_id
    for call_id in (parent_id, child_id):
        assert app.http.post(f"/calls/1/calls/{call_id}/stop-recording").status_code == 200
    heard_by: dict[str, float] = {}
    for call_id, other_hz in ((parent_id, CALLEE_HZ), (child_id, CALLER_HZ)):
        ready = receiver.wait_type(call_id, "CALL_RECORDING_READY", 60)
        file_id = ready["properties"]["recording"]["files"][0]["id"]
        samples, channels = _wav(app.http.get(f"/calls/1/recordings/files/{file_id}").content, tmp_path / "leg.wav")
        assert channels == 2
        sent = samples[1::2]
        # what each leg sent to its party: the other party's tone and the prompt, mixed
        assert _band(sent, other_hz) > 0.1, call_id
        halves = [sent[i : i + 4000] for i in range(0, len(sent) - 4000 + 1, 4000)]  # half seconds
        heard_by[call_id] = max(_band(half, PROMPT_HZ) for half in halves)  # where the prompt played
    assert min(heard_by.values()) > 0.25, heard_by  # the prompt and the other party, about even

    # say (espeak-ng) and stop-play, reported for the dialog
    say = CallsDialogSayRequest(text="Both of you hear this.", language=CallsLanguage.EN)
    assert calls.dialog_say_text(dialog_id, say).status == "PENDING"
    said = _dialog_event(receiver, dialog_id, "SAY_FINISHED")
    assert said["properties"]["playedCompletely"] is True and said["properties"]["duration"] > 0
    looped = CallsDialogPlayRequest(content=content, loop_count=20)
    calls.dialog_play_file(dialog_id, looped)
    time.sleep(0.5)
    calls.dialog_stop_playing_file(dialog_id)
    stopped = _dialog_event(receiver, dialog_id, "PLAY_FINISHED", after=1)
    assert stopped["properties"]["playedCompletely"] is False

    # 2. a composed dialog recording: one file, both parties mixed
    assert calls.dialog_start_recording(dialog_id, composed).status == "PENDING"
    assert _status(lambda: calls.dialog_start_recording(dialog_id, composed)) == 400  # already recording
    time.sleep(2.0)
    calls.dialog_stop_recording(dialog_id)
    ready = _dialog_event(receiver, dialog_id, "DIALOG_RECORDING_READY")
    recording = ready["properties"]["recording"]
    assert recording["dialogId"] == dialog_id and recording["callRecordings"] == []
    [composed_file] = recording["composedFiles"]
    samples, channels = _wav(
        app.http.get(f"/calls/1/recordings/files/{composed_file['id']}").content, tmp_path / "composed.wav"
    )
    assert channels == 1
    assert _band(samples, CALLER_HZ) > 0.1 and _band(samples, CALLEE_HZ) > 0.1

    # 3. not composed: one file per call, each holding its own party
    separate = CallsDialogRecordingRequest(
        recording_type=CallsRecordingType.AUDIO, custom_data={"case": "per-leg"}, file_prefix="legs-"
    )
    calls.dialog_start_recording(dialog_id, separate)
    assert _status(lambda: calls.call_stop_recording(parent_id)) == 400  # the dialog's, not the call's
    time.sleep(2.0)
    calls.dialog_stop_recording(dialog_id)
    assert _status(lambda: calls.dialog_stop_recording(dialog_id)) == 400  # nothing is recording now
    ready = _dialog_event(receiver, dialog_id, "DIALOG_RECORDING_READY", after=1)
    per_call = {entry["callId"]: entry["files"] for entry in ready["properties"]["recording"]["callRecordings"]}
    assert set(per_call) == {parent_id, child_id} and ready["properties"]["recording"]["composedFiles"] == []
    for call_id, own_hz, other_hz in ((parent_id, CALLER_HZ, CALLEE_HZ), (child_id, CALLEE_HZ, CALLER_HZ)):
        [file] = per_call[call_id]
        assert file["customData"] == {"case": "per-leg"} and file["name"] == f"{file['id']}.wav"
        samples, _ = _wav(app.http.get(f"/calls/1/recordings/files/{file['id']}").content, tmp_path / "one.wav")
        assert _band(samples, own_hz) > 0.5 and _band(samples, other_hz) < 0.05, call_id

    # composed afterwards, one channel per party (the parent's on the left), keeping the per-call files
    composition = CallsOnDemandComposition(delete_call_recordings=False, multi_channel=CallsMultiChannel(enabled=True))
    assert calls.compose_dialog_recording(dialog_id, composition).status == "PENDING"
    composed_later = _dialog_event(receiver, dialog_id, "DIALOG_COMPOSITION_FINISHED")
    [stereo_file] = composed_later["properties"]["recording"]["composedFiles"]
    samples, channels = _wav(app.http.get(f"/calls/1/recordings/files/{stereo_file['id']}").content, tmp_path / "c.wav")
    assert channels == 2
    assert _band(samples[0::2], CALLER_HZ) > 0.5 and _band(samples[1::2], CALLEE_HZ) > 0.5

    # the dialog-recording routes, through the official client
    listed = calls.get_dialogs_recordings(dialog_id=dialog_id)
    assert [r.dialog_id for r in listed.results or []] == [dialog_id]
    one = calls.get_dialog_recordings(dialog_id)
    assert {f.id for f in one.composed_files or []} == {composed_file["id"], stereo_file["id"]}
    assert sorted(r.call_id or "" for r in one.call_recordings or []) == sorted([parent_id, child_id])
    by_call = calls.get_dialogs_recordings(call_id=child_id, calls_configuration_id=app.configuration_id)
    assert [r.dialog_id for r in by_call.results or []] == [dialog_id]
    call_level = calls.get_call_recordings(parent_id)  # the calls' own recordings stay apart
    assert len(call_level.files or []) == 1
    partial = app.http.get(f"/calls/1/recordings/files/{composed_file['id']}", headers={"Range": "bytes=0-43"})
    assert partial.status_code == 206 and partial.content[:4] == b"RIFF"
    deleted = calls.delete_dialog_recordings(dialog_id)
    assert deleted.dialog_id == dialog_id
    assert _status(lambda: calls.get_dialog_recordings(dialog_id)) == 404
    assert _status(lambda: calls.download_recording_file(composed_file["id"])) == 404
    assert _status(lambda: calls.dialog_say_text("no-such-dialog", say)) == 404

    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/hangup").status_code == 200
    for process in (caller, callee):
        code, output = sipp_result(process)
        assert code == 0, output
    _dialog_event(receiver, dialog_id, "DIALOG_FINISHED")
    for call_id in (parent_id, child_id):
        assert settle_then_single_terminal(receiver, call_id)["type"] == "CALL_FINISHED"
    assert _status(lambda: calls.dialog_stop_playing_file(dialog_id)) == 400  # the dialog has ended


def _inbound_caller(tmp_path: Path, voice_server: VoiceServer, app: App, receiver: Receiver) -> tuple[Any, str]:
    """A sipp caller that sends its own tone once answered, routed to the application: (sipp, parent call id)."""
    called = f"dialog-ring-{secrets.token_hex(3)}"
    app.native.post(f"/v1/voice/configurations/{app.configuration_id}/routes", json={"called_user": called})
    caller_pcap = tmp_path / "caller-tone.pcap"
    write_rtp_pcap(caller_pcap, tone(CALLER_HZ, 40.0))
    caller = run_sipp(
        render_voice_scenario("uac_tone.xml", tmp_path, TONE_PCAP=str(caller_pcap), BYE_TIMEOUT_MS="90000"),
        remote=f"127.0.0.1:{voice_server.sip_port}",
        extra=["-s", called],
    )
    event = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
    return caller, str(event["callId"])


@pytest.mark.parametrize("voice_server", ["sqlite"], indirect=True)  # both: tests/live ringback test
def test_ringback_generation_lets_the_caller_hear_ringing_until_the_child_answers(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    """An unanswered inbound parent is pre-answered (183) and hears a 425 Hz ringback while the child rings; then
    the bridge carries the child's own tone. Both options at once are refused."""
    callee_dir = tmp_path / "callee"
    callee_dir.mkdir()
    # rings 7 s: the ringback's second cadence (5-6 s after the 183) is recorded however late the recording starts
    callee, callee_port = _talking_callee(callee_dir, CALLEE_HZ, ring_ms=7000)
    caller, parent_id = _inbound_caller(tmp_path, voice_server, app, receiver)
    child = {"endpoint": {"type": "SIP", "username": "agent", "host": f"127.0.0.1:{callee_port}"}}
    both = {"childCallRinging": True, "ringbackGeneration": {"enabled": True}}
    refused = app.http.post(
        "/calls/1/dialogs", json={"parentCallId": parent_id, "childCallRequest": child, "propagationOptions": both}
    )
    assert refused.status_code == 400 and "ringbackGeneration" in refused.text
    created = app.http.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": parent_id,
            "childCallRequest": child,
            "propagationOptions": {"ringbackGeneration": {"enabled": True}},
        },
    )
    assert created.status_code == 201, created.text
    dialog_id = created.json()["id"]
    receiver.wait_type(parent_id, "CALL_PRE_ESTABLISHED")
    started = app.http.post(
        f"/calls/1/calls/{parent_id}/start-recording",
        json={"recording": {"recordingType": "AUDIO", "channels": "STEREO"}},
    )
    assert started.status_code == 200, started.text
    _dialog_event(receiver, dialog_id, "DIALOG_ESTABLISHED")
    time.sleep(1.5)  # the child's tone crosses the bridge
    assert app.http.post(f"/calls/1/calls/{parent_id}/stop-recording").status_code == 200
    ready = receiver.wait_type(parent_id, "CALL_RECORDING_READY", 60)
    file_id = ready["properties"]["recording"]["files"][0]["id"]
    samples, _ = _wav(app.http.get(f"/calls/1/recordings/files/{file_id}").content, tmp_path / "ringback.wav")
    sent = samples[1::2]
    halves = [sent[i : i + 4000] for i in range(0, len(sent) - 4000 + 1, 4000)]  # half seconds
    ringback = [k for k, half in enumerate(halves) if _band(half, 425) > 0.5]
    bridged = [k for k, half in enumerate(halves) if _band(half, CALLEE_HZ) > 0.5]
    assert ringback and bridged and max(ringback) < min(bridged)  # ringback first, then only the child
    assert app.http.get(f"/calls/1/calls/{parent_id}").json()["state"] == "ESTABLISHED"

    assert app.http.post(f"/calls/1/dialogs/{dialog_id}/hangup").status_code == 200
    for process in (caller, callee):
        code, output = sipp_result(process)
        assert code == 0, output
    assert settle_then_single_terminal(receiver, parent_id)["type"] == "CALL_FINISHED"


def test_the_official_client_creates_a_dialog_with_ringing_propagated_and_a_recording_from_the_start(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    """`CallsDialogRequest` with `propagationOptions.childCallRinging` and a composed `recording`: the caller gets
    the child's ringing, the recording starts when the dialog is established and is ready when it ends."""
    account_key = app.http.headers["authorization"].removeprefix("App ")
    calls = calls_api(voice_server.running.base_url, account_key)
    try:
        callee_dir = tmp_path / "callee"
        callee_dir.mkdir()
        callee, callee_port = _talking_callee(callee_dir, CALLEE_HZ, ring_ms=500)
        caller, parent_id = _inbound_caller(tmp_path, voice_server, app, receiver)
        endpoint = CallsSipEndpoint(
            type=CallEndpointType.SIP, username="agent", sip_trunk_id=static_trunk(calls, callee_port)
        )
        dialog = calls.create_dialog(
            CallsDialogRequest(
                parent_call_id=parent_id,
                child_call_request=CallsDialogCallRequest(endpoint=endpoint, connect_timeout=30),
                recording=CallsDialogRecordingRequest(
                    recording_type=CallsRecordingType.AUDIO,
                    dialog_composition=CallsDialogRecordingComposition(enabled=True),
                ),
                propagation_options=CallsDialogPropagationOptions(child_call_ringing=True),
            )
        )
        assert dialog.id is not None and dialog.parent_call is not None and dialog.parent_call.id == parent_id
        receiver.wait_type(parent_id, "CALL_RINGING")
        _dialog_event(receiver, dialog.id, "DIALOG_ESTABLISHED")
        time.sleep(2.0)  # both parties talk into the recording
        hung = calls.hangup_dialog(dialog.id)
        assert hung.id == dialog.id
        ready = _dialog_event(receiver, dialog.id, "DIALOG_RECORDING_READY")
        [composed_file] = ready["properties"]["recording"]["composedFiles"]
        samples, _ = _wav(
            app.http.get(f"/calls/1/recordings/files/{composed_file['id']}").content, tmp_path / "from-start.wav"
        )
        assert _band(samples, CALLER_HZ) > 0.1 and _band(samples, CALLEE_HZ) > 0.1
        for process in (caller, callee):
            code, output = sipp_result(process)
            assert code == 0, output
        finished = _dialog_event(receiver, dialog.id, "DIALOG_FINISHED")
        assert finished["properties"]["hangupSource"] == "API"
        assert calls.get_dialog_history(dialog.id).state == CallsDialogState.FINISHED
    finally:
        calls.api_client.rest_client.pool_manager.clear()
