"""The Calls API end to end: a real server with the in-process engine, real sipp peers, events at a loopback
webhook receiver (signed, through the outbox), on SQLite and PostgreSQL. The fixtures are tests/voice/conftest.py's."""

from __future__ import annotations

import secrets
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from infobip_api_client.api.calls_api import CallsApi
from infobip_api_client.exceptions import ApiException
from infobip_api_client.models.call_direction import CallDirection
from infobip_api_client.models.call_endpoint_type import CallEndpointType
from infobip_api_client.models.call_request import CallRequest
from infobip_api_client.models.call_state import CallState
from infobip_api_client.models.calls_action_call_request import CallsActionCallRequest
from infobip_api_client.models.calls_action_status import CallsActionStatus
from infobip_api_client.models.calls_answer_request import CallsAnswerRequest
from infobip_api_client.models.calls_billing_package import CallsBillingPackage
from infobip_api_client.models.calls_configuration_create_request import CallsConfigurationCreateRequest
from infobip_api_client.models.calls_configuration_update_request import CallsConfigurationUpdateRequest
from infobip_api_client.models.calls_connect_request import CallsConnectRequest
from infobip_api_client.models.calls_connect_with_new_call_request import CallsConnectWithNewCallRequest
from infobip_api_client.models.calls_dtmf_capture_request import CallsDtmfCaptureRequest
from infobip_api_client.models.calls_dtmf_send_request import CallsDtmfSendRequest
from infobip_api_client.models.calls_error_code import CallsErrorCode
from infobip_api_client.models.calls_hangup_request import CallsHangupRequest
from infobip_api_client.models.calls_hangup_source import CallsHangupSource
from infobip_api_client.models.calls_language import CallsLanguage
from infobip_api_client.models.calls_participant_state import CallsParticipantState
from infobip_api_client.models.calls_play_content_type import CallsPlayContentType
from infobip_api_client.models.calls_play_request import CallsPlayRequest
from infobip_api_client.models.calls_pre_answer_request import CallsPreAnswerRequest
from infobip_api_client.models.calls_recording_request import CallsRecordingRequest
from infobip_api_client.models.calls_recording_start_request import CallsRecordingStartRequest
from infobip_api_client.models.calls_recording_type import CallsRecordingType
from infobip_api_client.models.calls_say_request import CallsSayRequest
from infobip_api_client.models.calls_sip_endpoint import CallsSipEndpoint
from infobip_api_client.models.calls_sip_trunk_type import CallsSipTrunkType
from infobip_api_client.models.calls_static_sip_trunk_request import CallsStaticSipTrunkRequest
from infobip_api_client.models.calls_stop_play_request import CallsStopPlayRequest
from infobip_api_client.models.calls_text_play_content import CallsTextPlayContent

from callplane.testing.infobip import calls_api
from callplane.testing.sipp import (
    SIPP_PCAPS,
    best_correlation,
    dominant_frequency,
    render_scenario,
    tone,
    write_rtp_pcap,
)
from tests.voice.support import (
    DATABASES,
    App,
    Receiver,
    VoiceServer,
    check_signed,
    fresh_dir,
    run_sipp,
    settle_then_single_terminal,
    sipp_result,
    static_trunk,
    uas,
    voice_server_fixture,
)

# the tests that keep recordings, an uploaded prompt, the post-call pipeline's MP3 also run on a bucket
voice_server = voice_server_fixture(with_s3=True)

# ---- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("voice_server", ["sqlite"], indirect=True)  # both: tests/live inbound test
def test_inbound_call_received_answered_says_captures_dtmf_and_hangs_up_once(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    called = f"ivr-{secrets.token_hex(3)}"
    routed = app.native.post(f"/v1/voice/configurations/{app.configuration_id}/routes", json={"called_user": called})
    assert routed.status_code == 201, routed.text
    tone_pcap = tmp_path / "tone.pcap"
    write_rtp_pcap(tone_pcap, tone(700, 3.0))
    scenario = render_scenario(
        "uac_ivr.xml", tmp_path, TONE_PCAP=str(tone_pcap), TONE_MS="5000", PCAPS=str(SIPP_PCAPS), BYE_TIMEOUT_MS="40000"
    )
    sipp = run_sipp(scenario, remote=f"127.0.0.1:{voice_server.sip_port}", extra=["-s", called])

    received = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
    call_id = received["callId"]
    call = received["properties"]["call"]
    assert call["direction"] == "INBOUND" and call["state"] == "CALLING"
    assert call["from"] == "sipp" and call["callsConfigurationId"] == app.configuration_id
    assert call["customData"] == {"x-customer-id": "cust-42"}

    assert app.http.post(f"/calls/1/calls/{call_id}/send-ringing").json() == {"status": "PENDING"}
    assert app.http.post(f"/calls/1/calls/{call_id}/answer", json={}).json() == {"status": "PENDING"}
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    capture = app.http.post(
        f"/calls/1/calls/{call_id}/capture/dtmf", json={"maxLength": 4, "timeout": 15000, "terminator": "#"}
    )
    assert capture.status_code == 200, capture.text
    said = app.http.post(
        f"/calls/1/calls/{call_id}/say", json={"text": "Please enter your code.", "language": "en", "speechRate": 1.2}
    )
    assert said.status_code == 200, said.text

    captured = receiver.wait_type(call_id, "DTMF_CAPTURED")
    assert captured["properties"]["dtmf"] == "15" and captured["properties"]["timeout"] is False
    receiver.wait_type(call_id, "SAY_FINISHED")
    live = app.http.get("/calls/1/calls", params={"callsConfigurationId": app.configuration_id}).json()
    assert [c["id"] for c in live["results"]] == [call_id] and live["results"][0]["state"] == "ESTABLISHED"

    hung = app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    assert hung.status_code == 200 and hung.json()["id"] == call_id
    code, output = sipp_result(sipp)
    assert code == 0, output

    finished = settle_then_single_terminal(receiver, call_id)
    assert finished["type"] == "CALL_FINISHED"
    log = finished["properties"]["callLog"]
    assert log["state"] == "FINISHED" and log["hangupSource"] == "API"
    assert log["errorCode"] == {
        "id": 10000,
        "name": "NORMAL_HANGUP",
        "description": "The call has ended with hangup initiated by caller, callee or API",
    }
    # deliveries run concurrently, so arrival order is not event order: the envelope's timestamp is
    at = {e["type"]: e["timestamp"] for e in receiver.events(call_id)}
    assert at["CALL_RECEIVED"] <= at["CALL_RINGING"] <= at["CALL_ESTABLISHED"] <= at["DTMF_CAPTURED"]
    assert at["CALL_FINISHED"] >= at["DTMF_CAPTURED"]
    check_signed(receiver, app.secret, call_id)

    history = app.http.get("/calls/1/calls/history", params={"callsConfigurationId": app.configuration_id}).json()
    assert [c["callId"] for c in history["results"]] == [call_id]
    assert history["paging"]["totalResults"] == 1
    core = app.native.get(f"/v1/calls/{call_id}")
    assert core.status_code == 200, core.text


def _pcm(path: Path) -> tuple[np.ndarray[Any, np.dtype[np.int16]], int]:
    with wave.open(str(path)) as wav:
        frames = wav.readframes(wav.getnframes())
        return np.frombuffer(frames, dtype=np.int16), wav.getnchannels()


def test_outbound_call_rings_answers_plays_records_and_the_recording_holds_the_echoed_audio(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    sipp, port = uas(tmp_path, "uas_answer.xml", BYE_TIMEOUT_MS="40000")
    prompt = tone(1200, 2.0)
    wav = tmp_path / "prompt.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(prompt.tobytes())
    with wav.open("rb") as handle:
        uploaded = app.http.post("/calls/1/files", files={"file": ("prompt.wav", handle, "audio/wav")})
    assert uploaded.status_code == 200, uploaded.text
    file_id = uploaded.json()["id"]

    created = app.http.post(
        "/calls/1/calls",
        json={
            "endpoint": {
                "type": "SIP",
                "username": "echo",
                "host": f"127.0.0.1:{port}",
                "customHeaders": {"X-Campaign": "campaign-7"},
            },
            "from": "alice",
            "connectTimeout": 30,
            "callsConfigurationId": app.configuration_id,
            "customData": {"order": "A1"},
            "externalId": "ext-1",
        },
    )
    assert created.status_code == 201, created.text
    call = created.json()
    call_id = call["id"]
    assert call["direction"] == "OUTBOUND" and call["externalId"] == "ext-1"

    receiver.wait_type(call_id, "CALL_RINGING")
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    started = app.http.post(
        f"/calls/1/calls/{call_id}/start-recording",
        json={"recording": {"recordingType": "AUDIO", "channels": "STEREO"}},
    )
    assert started.status_code == 200, started.text
    played = app.http.post(f"/calls/1/calls/{call_id}/play", json={"content": {"type": "FILE", "fileId": file_id}})
    assert played.status_code == 200, played.text
    finished_play = receiver.wait_type(call_id, "PLAY_FINISHED")
    assert finished_play["properties"]["playedCompletely"] is True
    time.sleep(0.5)  # the echo of the last frames comes back
    assert app.http.post(f"/calls/1/calls/{call_id}/stop-recording").status_code == 200

    ready = receiver.wait_type(call_id, "CALL_RECORDING_READY")
    files = ready["properties"]["recording"]["files"]
    assert len(files) == 1 and files[0]["fileFormat"] == "WAV"
    recording_id = files[0]["id"]
    download = app.http.get(f"/calls/1/recordings/files/{recording_id}")
    assert download.status_code == 200 and download.headers["content-type"] == "audio/wav"
    path = tmp_path / "recording.wav"
    path.write_bytes(download.content)
    samples, channels = _pcm(path)
    assert channels == 2
    heard, sent = samples[0::2], samples[1::2]
    assert best_correlation(prompt[:8000], sent) > 0.9  # what we played
    assert best_correlation(prompt[:4000], heard) > 0.9  # sipp echoed it back to us
    partial = app.http.get(f"/calls/1/recordings/files/{recording_id}", headers={"Range": "bytes=0-43"})
    assert partial.status_code == 206 and len(partial.content) == 44 and partial.content[:4] == b"RIFF"

    listed = app.http.get(f"/calls/1/recordings/calls/{call_id}").json()
    assert listed["callId"] == call_id and [f["id"] for f in listed["files"]] == [recording_id]

    assert app.http.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    code, output = sipp_result(sipp)
    assert code == 0, output
    final = settle_then_single_terminal(receiver, call_id)
    assert final["type"] == "CALL_FINISHED" and final["properties"]["callLog"]["hangupSource"] == "API"
    assert final["properties"]["callLog"]["customData"] == {"order": "A1"}


# it deletes the one file it records, so a bucket would end empty (test_voice_files_s3 deletes from one)
@pytest.mark.parametrize("voice_server", DATABASES, indirect=True)
def test_the_official_client_drives_configurations_calls_actions_and_recordings(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    """Every endpoint of this module through `infobip-api-python-client` 6.x: its requests, its models."""
    account_key = app.http.headers["authorization"].removeprefix("App ")
    calls = calls_api(voice_server.running.base_url, account_key)
    try:
        _drive_with_the_client(calls, app, receiver, tmp_path)
    finally:
        calls.api_client.rest_client.pool_manager.clear()


def _drive_with_the_client(calls: CallsApi, app: App, receiver: Receiver, tmp_path: Path) -> None:
    configuration = calls.create_calls_configuration(CallsConfigurationCreateRequest(name="client"))
    assert configuration.id and configuration.name == "client"
    updated = calls.update_calls_configuration(configuration.id, CallsConfigurationUpdateRequest(name="renamed"))
    assert updated.name == "renamed" and calls.get_calls_configuration(configuration.id).name == "renamed"
    page = calls.get_calls_configurations(page=0, size=100)
    assert page.paging is not None and configuration.id in [c.id for c in page.results or []]

    sipp, port = uas(tmp_path, "uas_answer.xml", BYE_TIMEOUT_MS="40000")
    trunk = calls.create_sip_trunk(
        CallsStaticSipTrunkRequest(
            name="sipp",
            channel_limit=2,
            billing_package=CallsBillingPackage(package_type="METERED"),
            destination_hosts=[f"127.0.0.1:{port}"],
            codecs=["PCMU", "PCMA"],
            type=CallsSipTrunkType.STATIC,
        )
    )
    endpoint = CallsSipEndpoint(
        type=CallEndpointType.SIP,
        username="echo",
        sip_trunk_id=str(trunk.id),
        custom_headers={"X-Campaign": "campaign-7"},
    )
    call = calls.create_call(
        CallRequest(endpoint=endpoint, calls_configuration_id=app.configuration_id, connect_timeout=30)
    )
    # The answer shows the call's state when it is read back: sipp's 180 may already be in under load.
    assert call.id and call.direction == CallDirection.OUTBOUND
    assert call.state in (CallState.CALLING, CallState.RINGING, CallState.ESTABLISHED)
    receiver.wait_type(call.id, "CALL_ESTABLISHED")
    assert calls.get_call(call.id).state == CallState.ESTABLISHED
    live = calls.get_calls(calls_configuration_id=app.configuration_id, page=0, size=10)
    assert [c.id for c in live.results or []] == [call.id]

    with pytest.raises(ApiException) as refused:
        calls.answer_call(call.id, CallsAnswerRequest())
    assert refused.value.status == 400 and b"inbound" in (refused.value.body or "").encode()
    for refused_action in (
        lambda: calls.pre_answer_call(call.id, CallsPreAnswerRequest()),
        lambda: calls.send_ringing(call.id),
    ):
        with pytest.raises(ApiException):
            refused_action()

    recording = CallsRecordingRequest(recording_type=CallsRecordingType.AUDIO)
    assert calls.call_start_recording(call.id, CallsRecordingStartRequest(recording=recording)).status == "PENDING"
    say = CallsSayRequest(text="Hello from the client.", language=CallsLanguage.EN)
    assert calls.call_say_text(call.id, say).status == CallsActionStatus.PENDING
    receiver.wait_type(call.id, "SAY_FINISHED")
    text = CallsTextPlayContent(type=CallsPlayContentType.TEXT, text="Press one.", language=CallsLanguage.EN)
    calls.call_play_file(call.id, CallsPlayRequest(content=text, loop_count=3))
    calls.call_stop_playing_file(call.id, CallsStopPlayRequest())
    stopped = receiver.wait_type(call.id, "PLAY_FINISHED")
    assert stopped["properties"]["playedCompletely"] is False
    calls.call_capture_dtmf(call.id, CallsDtmfCaptureRequest(max_length=2, timeout=10000, terminator="#"))
    calls.call_send_dtmf(call.id, CallsDtmfSendRequest(dtmf="7#"))  # sipp echoes our RFC 4733 packets back
    captured = receiver.wait_type(call.id, "DTMF_CAPTURED")
    assert captured["properties"]["dtmf"] == "7"
    calls.call_stop_recording(call.id)
    ready = receiver.wait_type(call.id, "CALL_RECORDING_READY")
    file_id = ready["properties"]["recording"]["files"][0]["id"]

    recordings = calls.get_call_recordings(call.id)
    assert recordings.call_id == call.id and [f.id for f in recordings.files or []] == [file_id]
    listed = calls.get_calls_recordings(call_id=call.id)
    assert [r.call_id for r in listed.results or []] == [call.id]
    audio = calls.download_recording_file(file_id)
    assert bytes(audio[:4]) == b"RIFF"

    hung = calls.hangup_call(call.id, CallsHangupRequest(error_code=CallsErrorCode.NORMAL_HANGUP))
    assert hung.id == call.id
    code, output = sipp_result(sipp)
    assert code == 0, output
    settle_then_single_terminal(receiver, call.id)
    log = calls.get_call_history(call.id)
    assert log.state == CallState.FINISHED and log.error_code is not None and log.error_code.name == "NORMAL_HANGUP"
    assert log.hangup_source == CallsHangupSource.API
    history = calls.get_calls_history(calls_configuration_id=app.configuration_id, direction=CallDirection.OUTBOUND)
    assert call.id in [c.call_id for c in history.results or []]

    calls.delete_recording_file(file_id)
    with pytest.raises(ApiException) as gone:
        calls.download_recording_file(file_id)
    assert gone.value.status == 404
    with pytest.raises(ApiException) as missing:
        calls.get_call("no-such-call")
    assert missing.value.status == 404 and b"requestError" in (missing.value.body or "").encode()
    deleted = calls.delete_calls_configuration(configuration.id)
    assert deleted.id == configuration.id


def _loudest_frequency(samples: np.ndarray[Any, np.dtype[np.int16]]) -> float:
    """The dominant frequency of the loudest half second (where the bridged audio is)."""
    windows = [samples[i : i + 4000] for i in range(0, len(samples) - 4000, 2000)]
    loudest = max(windows, key=lambda window: float(np.abs(window.astype(np.int64)).sum()))
    return dominant_frequency(loudest)


@pytest.mark.parametrize("voice_server", ["postgresql"], indirect=True)  # both: tests/live dialog tests
def test_a_dialog_bridges_an_inbound_caller_to_a_new_call_and_audio_flows_both_ways(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    """The caller's 700 Hz tone reaches the child (which echoes it) and comes back to the caller: the parent's
    STEREO recording hears the tone (left) and sends the child's echo of it (right)."""
    called = f"dialog-{secrets.token_hex(3)}"
    app.native.post(f"/v1/voice/configurations/{app.configuration_id}/routes", json={"called_user": called})
    child_sipp, child_port = uas(fresh_dir(tmp_path), "uas_answer.xml", BYE_TIMEOUT_MS="40000")
    tone_pcap = tmp_path / "tone.pcap"
    write_rtp_pcap(tone_pcap, tone(700, 4.0))
    caller = run_sipp(
        render_scenario(
            "uac_ivr.xml", tmp_path, TONE_PCAP=str(tone_pcap), TONE_MS="4500", PCAPS=str(SIPP_PCAPS),
            BYE_TIMEOUT_MS="40000",
        ),
        remote=f"127.0.0.1:{voice_server.sip_port}",
        extra=["-s", called],
    )  # fmt: skip
    parent_id = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)[
        "callId"
    ]
    app.http.post(f"/calls/1/calls/{parent_id}/send-ringing")
    created = app.http.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": parent_id,
            "childCallRequest": {
                "endpoint": {
                    "type": "SIP",
                    "username": "agent",
                    "host": f"127.0.0.1:{child_port}",
                    "customHeaders": {"X-Campaign": "campaign-7"},
                }
            },
        },
    )
    assert created.status_code == 201, created.text
    dialog = created.json()
    dialog_id = dialog["id"]
    assert dialog["parentCall"]["id"] == parent_id and dialog["childCall"]["parentCallId"] == parent_id
    child_id = dialog["childCall"]["id"]

    established = receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_ESTABLISHED")
    assert established["properties"]["dialog"]["state"] == "ESTABLISHED"
    assert app.http.get(f"/calls/1/calls/{parent_id}").json()["state"] == "ESTABLISHED"  # answered by the child
    capture = {"maxLength": 4, "timeout": 20000, "terminator": "#"}
    assert app.http.post(f"/calls/1/calls/{parent_id}/capture/dtmf", json=capture).status_code == 200
    recording = {"recording": {"recordingType": "AUDIO", "channels": "STEREO"}}
    assert app.http.post(f"/calls/1/calls/{parent_id}/start-recording", json=recording).status_code == 200
    time.sleep(2.5)  # the caller's tone is crossing the bridge and coming back
    assert app.http.post(f"/calls/1/calls/{parent_id}/stop-recording").status_code == 200
    ready = receiver.wait_type(parent_id, "CALL_RECORDING_READY")
    file_id = ready["properties"]["recording"]["files"][0]["id"]
    path = tmp_path / "dialog.wav"
    path.write_bytes(app.http.get(f"/calls/1/recordings/files/{file_id}").content)
    samples, channels = _pcm(path)
    assert channels == 2
    assert abs(_loudest_frequency(samples[0::2]) - 700) < 15  # the caller, heard
    assert abs(_loudest_frequency(samples[1::2]) - 700) < 15  # the child's echo of it, sent to the caller

    # the caller's digits still reach the parent leg; after '#' its scenario waits for our BYE
    assert receiver.wait_type(parent_id, "DTMF_CAPTURED")["properties"]["dtmf"] == "15"
    listed = app.http.get("/calls/1/dialogs", params={"callsConfigurationId": app.configuration_id}).json()
    assert [d["id"] for d in listed["results"]] == [dialog_id]
    hung = app.http.post(f"/calls/1/dialogs/{dialog_id}/hangup")
    assert hung.status_code == 200, hung.text
    for process in (caller, child_sipp):
        code, output = sipp_result(process)
        assert code == 0, output
    finished = receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_FINISHED")
    assert finished["properties"]["hangupSource"] == "API"
    for call_id in (parent_id, child_id):
        assert settle_then_single_terminal(receiver, call_id)["type"] == "CALL_FINISHED"
    history = app.http.get(f"/calls/1/dialogs/{dialog_id}/history").json()
    assert (history["state"], history["parentCallId"], history["childCallId"]) == ("FINISHED", parent_id, child_id)


@pytest.mark.parametrize("voice_server", DATABASES, indirect=True)  # stores no file: no bucket run
def test_the_official_client_connects_two_calls_and_a_call_with_a_new_one(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    account_key = app.http.headers["authorization"].removeprefix("App ")
    calls = calls_api(voice_server.running.base_url, account_key)
    sipps = [uas(fresh_dir(tmp_path), "uas_answer.xml", BYE_TIMEOUT_MS="40000") for _ in range(4)]
    try:
        a, b, c = (_answered_call(calls, app, receiver, port) for _, port in sipps[:3])
        conference = calls.connect_calls(CallsConnectRequest(call_ids=[a, b]))
        assert [p.call_id for p in conference.participants or []] == [a, b]
        assert {p.state for p in conference.participants or []} == {CallsParticipantState.JOINED}
        conference_id = conference.id
        calls.hangup_call(a, CallsHangupRequest())
        receiver.wait_type(a, "PARTICIPANT_REMOVED")  # a conference ends with its last participant, not its first
        assert calls.get_call(b).state == CallState.ESTABLISHED
        calls.hangup_call(b, CallsHangupRequest())
        assert settle_then_single_terminal(receiver, b)["properties"]["callLog"]["hangupSource"] == "API"
        receiver.wait_for(lambda e: e.get("conferenceId") == conference_id and e["type"] == "CONFERENCE_FINISHED")

        endpoint = CallsSipEndpoint(
            type=CallEndpointType.SIP,
            username="agent",
            sip_trunk_id=static_trunk(calls, sipps[3][1]),
            custom_headers={"X-Campaign": "campaign-7"},
        )
        joined = calls.connect_with_new_call(
            c, CallsConnectWithNewCallRequest(call_request=CallsActionCallRequest(endpoint=endpoint))
        )
        assert joined.call is not None and joined.call.parent_call_id == c and joined.conference is not None
        conference_id = joined.conference.id
        receiver.wait_type(str(joined.call.id), "PARTICIPANT_JOINED")
        calls.hangup_conference(str(conference_id))  # every participant's call
        assert settle_then_single_terminal(receiver, c)["type"] == "CALL_FINISHED"
        receiver.wait_for(lambda e: e.get("conferenceId") == conference_id and e["type"] == "CONFERENCE_FINISHED")
        for process, _ in sipps:
            code, output = sipp_result(process)
            assert code == 0, output
    finally:
        calls.api_client.rest_client.pool_manager.clear()


def _answered_call(calls: CallsApi, app: App, receiver: Receiver, port: int) -> str:
    endpoint = CallsSipEndpoint(
        type=CallEndpointType.SIP,
        username="party",
        sip_trunk_id=static_trunk(calls, port),
        custom_headers={"X-Campaign": "campaign-7"},
    )
    call = calls.create_call(CallRequest(endpoint=endpoint, calls_configuration_id=app.configuration_id))
    assert call.id is not None
    receiver.wait_type(call.id, "CALL_ESTABLISHED")
    return call.id


def test_a_configuration_can_send_finished_calls_through_the_post_call_pipeline(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    configured = app.http.post("/calls/1/configurations", json={"name": "pipeline", "postCallProcessing": True})
    assert configured.status_code == 201 and configured.json()["postCallProcessing"] is True
    configuration_id = configured.json()["id"]
    app.native.post(f"/v1/voice/configurations/{configuration_id}/subscriptions", json={"url": receiver.url})
    sipp, port = uas(tmp_path, "uas_answer.xml", BYE_TIMEOUT_MS="40000")
    endpoint = {
        "type": "SIP",
        "username": "echo",
        "host": f"127.0.0.1:{port}",
        "customHeaders": {"X-Campaign": "campaign-7"},
    }
    created = app.http.post(
        "/calls/1/calls",
        json={"endpoint": endpoint, "callsConfigurationId": configuration_id, "recording": {"recordingType": "AUDIO"}},
    )
    call_id = created.json()["id"]
    receiver.wait_type(call_id, "CALL_ESTABLISHED")  # recording starts on answer (the create's `recording`)
    app.http.post(f"/calls/1/calls/{call_id}/say", json={"text": "This call is recorded.", "language": "en"})
    receiver.wait_type(call_id, "SAY_FINISHED")
    app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    code, output = sipp_result(sipp)
    assert code == 0, output
    receiver.wait_type(call_id, "CALL_RECORDING_READY")
    settle_then_single_terminal(receiver, call_id)

    deadline = time.monotonic() + 60
    call = app.native.get(f"/v1/calls/{call_id}").json()
    while call["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        call = app.native.get(f"/v1/calls/{call_id}").json()
    assert call["status"] == "completed", call
    assert call["origin"] == "voice" and call["recording_filename"].endswith(".wav")
    # on a bucket the API redirects to a presigned URL of the stored MP3
    normalized = app.native.get(f"/v1/calls/{call_id}/recording", follow_redirects=True)
    assert normalized.status_code == 200 and normalized.headers["content-type"] == "audio/mpeg"
