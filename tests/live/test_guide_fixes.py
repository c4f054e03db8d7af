"""Where the Calls API followed its own reading rather than Infobip's guide (seeds/infobip-calls-api-guide.txt), now
the guide's: recording file names, DTMF in prompts and unsolicited, SIP early media, the call and recording
lifecycle events and the start-recording options. On the in-memory engine, SQLite and PostgreSQL
(docs/decisions.md "Part 1 vs the guide")."""

from __future__ import annotations

import secrets

import pytest

from tests.live.support import CallsApp, LiveServer, Receiver, eventually

# The tests sharing the fake-engine servers run on one xdist worker, which starts each server once.
pytestmark = pytest.mark.xdist_group("live-fake-engine")


def _user(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _engine_id(live: LiveServer, to_user: str) -> str:
    calls = eventually(lambda: live.fake.calls_to(to_user), f"a call to {to_user}")
    assert len(calls) == 1, calls
    return calls[0].call_id


def _answered_call(live: LiveServer, app: CallsApp, receiver: Receiver, prefix: str) -> tuple[str, str]:
    """An outbound call the far end answered at once: (our call id, the engine's)."""
    callee = _user(prefix)
    call_id = app.create_call(callee)
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    return call_id, _engine_id(live, callee)


def test_a_recording_file_is_named_by_its_file_id_whatever_the_prefix(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    """The guide: "The filename for recordings ... is always fileId.ext"; filePrefix only names SFTP zips."""
    call_id, _ = _answered_call(live, app, receiver, "named")
    recording = {"recording": {"recordingType": "AUDIO", "filePrefix": "sales-"}}
    assert app.http.post(f"/calls/1/calls/{call_id}/start-recording", json=recording).status_code == 200
    assert app.http.post(f"/calls/1/calls/{call_id}/stop-recording").status_code == 200
    [file] = receiver.wait_type(call_id, "CALL_RECORDING_READY")["properties"]["recording"]["files"]
    assert file["name"] == f"{file['id']}.wav"
    [listed] = app.http.get(f"/calls/1/recordings/calls/{call_id}").json()["files"]
    assert listed["name"] == f"{file['id']}.wav"
    app.http.post(f"/calls/1/calls/{call_id}/hangup", json={})
    receiver.single_terminal(call_id)
