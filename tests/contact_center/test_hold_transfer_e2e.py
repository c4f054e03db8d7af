"""Hold and a transfer on the wire: a real server with the engine, sipp as two agents' phones and as the end user
behind a SIP trunk, SQLite and PostgreSQL. The end user's phone echoes what it receives (`-rtp_echo`), so a
recording of the end user's leg (heard channel: what came back from the phone) holds what the phone was sent:
silence while bridged to the first agent (whose phone echoes too), then the hold music."""

from __future__ import annotations

import io
import time
import wave
from pathlib import Path

import httpx
import numpy as np

from callplane.live.hold import HOLD_MUSIC, MELODY
from callplane.media.audio import SAMPLE_RATE
from callplane.testing.sipp import best_correlation, dominant_frequency, rms
from tests.contact_center import test_calls_e2e
from tests.contact_center.sipp import agent_phone, connected_outbound_call, end_user_phone
from tests.contact_center.support import END_USER_E164, new_center
from tests.contact_center.test_calls_e2e import Served, ended

served = test_calls_e2e.served  # the module's servers: one per database, engine on, sipp on loopback

HOLD_S = 2.5


def _heard(calls: httpx.Client, leg_id: str) -> np.ndarray:
    """The left channel (what the leg's far end sent us) of the leg's one STEREO recording."""
    listed = calls.get(f"/calls/1/recordings/calls/{leg_id}")
    assert listed.status_code == 200, listed.text
    [recording] = listed.json()["files"]
    wav = calls.get(f"/calls/1/recordings/files/{recording['id']}")
    assert wav.status_code == 200
    with wave.open(io.BytesIO(wav.content)) as source:
        assert source.getnchannels() == 2
        frames = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
    return frames[0::2]


def test_an_agent_holds_the_end_user_who_hears_music_then_transfers_to_a_second_agent(
    served: Served, tmp_path: Path
) -> None:
    base_url = served.running.base_url
    center = new_center(served.admin, base_url)
    first = agent_phone(tmp_path / "first")
    second = agent_phone(tmp_path / "second")
    end_user = end_user_phone(tmp_path, talk_ms=12000)
    calls = httpx.Client(base_url=base_url, headers={"Authorization": f"App {center.token}"}, timeout=30)
    try:
        call_id = connected_outbound_call(center, base_url, end_user, first, second)

        # the end user's leg (a voice call of the account) records what its phone sends back
        legs = calls.get("/calls/1/calls", params={"callsConfigurationId": f"contact-center-{center.account_id}"})
        [leg] = [c for c in legs.json()["results"] if c["endpoint"].get("phoneNumber") == END_USER_E164]
        started = calls.post(
            f"/calls/1/calls/{leg['id']}/start-recording",
            json={"recording": {"recordingType": "AUDIO", "channels": "STEREO"}},
        )
        assert started.status_code == 200, started.text
        time.sleep(1.0)  # bridged to the first agent: silence both ways

        held = center.api.post(f"/apps/api/v1/calls/{call_id}/hold")
        assert held.status_code == 200, held.text
        time.sleep(HOLD_S)
        moved = center.api.post(
            f"/apps/api/v1/calls/{call_id}/transfers",
            json={"transfer_type": "cold", "agent_email": "two@somedomain.com"},
        )
        assert moved.status_code == 201, moved.text
        # the call row and its transfers are separate reads of one GET: wait until both moved on
        transferred = center.wait_call(
            call_id, lambda c: c["transfers"][0]["status"] != "transferring" and c["status"] != "assigned"
        )
        assert transferred["status"] == "connected" and transferred["transfers"][0]["status"] == "transferred"
        code, output = first.result(timeout_s=30)
        assert code == 0, output  # the first agent got our BYE at the transfer
        assert calls.post(f"/calls/1/calls/{leg['id']}/stop-recording").status_code == 200

        call = center.wait_call(call_id, ended, timeout_s=60)
        assert call["status"] == "finished" and call["disconnected_by"] == "disconnected_by_end_user"
        [transfer] = call["transfers"]
        assert (transfer["from_agent"]["id"], transfer["to_agent"]["id"]) == (
            center.agents["one@somedomain.com"],
            center.agents["two@somedomain.com"],
        )
        assert transfer["fail_reason"] == "nothing" and transfer["created_at"] is not None
        assert call["agent_info"]["id"] == center.agents["two@somedomain.com"]
        assert call["hold_duration"] >= int(HOLD_S)  # on hold from the hold until agent two answered
        by_agent = {p["user_id"]: p for p in call["participants"] if p["type"] == "agent"}
        assert set(by_agent) == set(center.agents.values())
        end_user_part = next(p for p in call["participants"] if p["type"] == "end_user")
        assert end_user_part["hold_duration"] == call["hold_duration"]
        assert by_agent[center.agents["one@somedomain.com"]]["hold_duration"] == 0
        for phone in (end_user, second):
            code, output = phone.result()
            assert code == 0, output

        heard = _heard(calls, leg["id"])
        window = SAMPLE_RATE // 2  # half-second windows: silence before the hold, music during it
        levels = [rms(heard[i : i + window]) for i in range(0, len(heard) - window, window)]
        loud = [i for i, level in enumerate(levels) if level > 300]
        assert loud, levels
        quiet_before = levels[: loud[0]]
        assert quiet_before and max(quiet_before) * 20 < min(levels[loud[0] : loud[0] + 4])  # music, not noise
        music = heard[loud[0] * window : (loud[0] + 4) * window]
        notes_hz = {hz for note in MELODY for hz in note}  # the melody's notes and their bass notes
        assert min(abs(dominant_frequency(music) - hz) for hz in notes_hz) < 8, dominant_frequency(music)
        reference = _music_reference()
        assert best_correlation(reference[:SAMPLE_RATE], heard) > 0.8  # the shipped melody, through two G.711 hops
    finally:
        for phone in (first, second, end_user):
            phone.stop()
        calls.close()
        center.api.close()


def _music_reference() -> np.ndarray:
    with wave.open(str(HOLD_MUSIC)) as source:
        return np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
