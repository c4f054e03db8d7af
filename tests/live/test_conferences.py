"""Conferences on the in-memory engine (`/calls/1/conferences`, connect, conference recordings): rooms of up to 15
calls on the engine's mixer, their participants' lifecycle and events, prompts, mute/deaf, recordings and their
composition, on SQLite and PostgreSQL, over HTTP and through the official client."""

from __future__ import annotations

import asyncio
import json
import secrets
import wave
from collections.abc import Iterator
from datetime import timedelta
from io import BytesIO
from typing import Any

import httpx
import pytest
from infobip_api_client.exceptions import ApiException
from infobip_api_client.models.call_endpoint_type import CallEndpointType
from infobip_api_client.models.calls_action_call_request import CallsActionCallRequest
from infobip_api_client.models.calls_add_new_call_request import CallsAddNewCallRequest
from infobip_api_client.models.calls_billing_package import CallsBillingPackage
from infobip_api_client.models.calls_conference_request import CallsConferenceRequest
from infobip_api_client.models.calls_conference_say_request import CallsConferenceSayRequest
from infobip_api_client.models.calls_language import CallsLanguage
from infobip_api_client.models.calls_sip_endpoint import CallsSipEndpoint
from infobip_api_client.models.calls_sip_trunk_type import CallsSipTrunkType
from infobip_api_client.models.calls_static_sip_trunk_request import CallsStaticSipTrunkRequest
from infobip_api_client.models.calls_update_call_request import CallsUpdateCallRequest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from callplane.core.voice.conference_models import VoiceConference
from callplane.core.voice.retention import sweep
from callplane.db.base import utcnow
from callplane.media.engine import RINGBACK, SpeechSource
from callplane.testing.engine import BUSY, FarEnd
from callplane.testing.infobip import calls_api
from tests.live.support import CallsApp, LiveServer, Receiver, eventually, serving

pytestmark = pytest.mark.xdist_group("live-fake-engine")

CONFERENCE_EVENTS = ("CONFERENCE_", "PARTICIPANT_", "SAY_FINISHED", "PLAY_FINISHED")


def _user(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _engine_id(live: LiveServer, to_user: str) -> str:
    calls = eventually(lambda: live.fake.calls_to(to_user), f"a call to {to_user}")
    assert len(calls) == 1, calls
    return calls[0].call_id


def _answered_calls(live: LiveServer, app: CallsApp, receiver: Receiver, count: int) -> list[tuple[str, str]]:
    """`count` outbound calls, answered: (our call id, the engine's id) each."""
    users = [_user("party") for _ in range(count)]
    for user in users:
        live.fake.route(user, FarEnd())
    ids = [app.create_call(user) for user in users]
    for call_id in ids:
        receiver.wait_type(call_id, "CALL_ESTABLISHED")
    return [(call_id, _engine_id(live, user)) for call_id, user in zip(ids, users, strict=True)]


# Where an event stands in a conference's or participant's life: orders events of the same millisecond.
_RANK = {"CONFERENCE_CREATED": 0, "PARTICIPANT_JOINING": 1, "PARTICIPANT_JOINED": 2, "PARTICIPANT_REMOVED": 8}
_RANK |= {"PARTICIPANT_JOIN_FAILED": 8, "CONFERENCE_FINISHED": 9}


def _events(receiver: Receiver, conference_id: str) -> list[dict[str, Any]]:
    """The conference's events, oldest first: deliveries are concurrent, so by their timestamps (milliseconds),
    and within one millisecond by where each stands in a conference's life."""
    found = [e for e in receiver.events() if e.get("conferenceId") == conference_id]
    return sorted(found, key=lambda e: (e["timestamp"], _RANK.get(e["type"], 5)))


def _wait_event(
    receiver: Receiver, conference_id: str, event_type: str, call_id: str | None = None, count: int = 1
) -> list[dict[str, Any]]:
    def matching() -> list[dict[str, Any]]:
        return [
            e
            for e in _events(receiver, conference_id)
            if e["type"] == event_type and (call_id is None or e.get("callId") == call_id)
        ]

    def enough() -> list[dict[str, Any]] | None:
        found = matching()
        return found if len(found) >= count else None

    return eventually(enough, f"{count} x {event_type}")


def _types(receiver: Receiver, conference_id: str, call_id: str | None = None) -> list[str]:
    return [e["type"] for e in _events(receiver, conference_id) if call_id is None or e.get("callId") == call_id]


def _create(app: CallsApp, name: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"callsConfigurationId": app.configuration_id, **({"name": name} if name else {}), **fields}
    created = app.http.post("/calls/1/conferences", json=body)
    assert created.status_code == 201, created.text
    conference: dict[str, Any] = created.json()
    return conference


def _error(response: Any) -> str:
    text: str = response.json()["requestError"]["serviceException"]["text"]
    return text


# ---- a conference's lifecycle -------------------------------------------------------------------


def test_three_calls_join_a_conference_hear_its_prompt_are_muted_removed_and_it_ends_when_the_last_leaves(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    (a, a_engine), (b, b_engine), (c, c_engine) = _answered_calls(live, app, receiver, 3)
    name = _user("room")
    created = _create(app, name)
    conference_id = created["id"]
    assert created["name"] == name and created["participants"] == []
    assert created["callsConfigurationId"] == app.configuration_id
    assert live.fake.mixes[conference_id].members == {}
    first = _wait_event(receiver, conference_id, "CONFERENCE_CREATED")[0]
    assert "callId" not in first and first["properties"]["conference"]["id"] == conference_id

    for call_id in (a, b, c):
        added = app.http.put(f"/calls/1/conferences/{conference_id}/call/{call_id}", json={})
        assert added.status_code == 200, added.text
        assert call_id in [p["callId"] for p in added.json()["participants"]]
    for call_id in (a, b, c):
        joined = _wait_event(receiver, conference_id, "PARTICIPANT_JOINED", call_id)[0]
        assert joined["properties"]["participant"]["state"] == "JOINED"
        assert _types(receiver, conference_id, call_id) == ["PARTICIPANT_JOINING", "PARTICIPANT_JOINED"]
    assert set(live.fake.mixes[conference_id].members) == {a_engine, b_engine, c_engine}

    got = app.http.get(f"/calls/1/conferences/{conference_id}").json()
    assert [p["callId"] for p in got["participants"]] == [a, b, c]
    assert {p["state"] for p in got["participants"]} == {"JOINED"}
    assert all(p["joinTime"] and p["leaveTime"] is None for p in got["participants"])
    assert app.http.get(f"/calls/1/calls/{a}").json()["conferenceId"] == conference_id
    listed = app.http.get("/calls/1/calls", params={"conferenceId": conference_id}).json()
    assert {call["id"] for call in listed["results"]} == {a, b, c}
    by_name = app.http.get("/calls/1/conferences", params={"name": name}).json()
    assert [found["id"] for found in by_name["results"]] == [conference_id]
    by_call = app.http.get("/calls/1/conferences", params={"callId": b}).json()
    assert [found["id"] for found in by_call["results"]] == [conference_id]
    paged = app.http.get("/calls/1/conferences", params={"callsConfigurationId": app.configuration_id, "size": 1})
    assert paged.json()["paging"]["totalResults"] == 1

    # a call already in the room, a call of nobody's, a conference of nobody's
    again = app.http.put(f"/calls/1/conferences/{conference_id}/call/{a}", json={})
    assert again.status_code == 400 and "already in conference" in _error(again)
    assert app.http.put(f"/calls/1/conferences/{conference_id}/call/nope", json={}).status_code == 404
    assert app.http.get("/calls/1/conferences/nope").status_code == 404
    assert app.http.post("/calls/1/conferences/nope/say", json={"text": "x", "language": "en"}).status_code == 404

    # mute one, then everyone deaf; the engine's members follow
    muted = app.http.patch(f"/calls/1/conferences/{conference_id}/call/{a}", json={"muted": True})
    assert muted.status_code == 200 and muted.json() == {"status": "PENDING"}
    change = _wait_event(receiver, conference_id, "PARTICIPANT_MEDIA_CHANGED", a)[0]
    assert change["properties"]["audio"]["muted"] is True
    assert live.fake.mixes[conference_id].members[a_engine].muted
    assert app.http.patch(f"/calls/1/conferences/{conference_id}", json={"deaf": True}).status_code == 200
    eventually(lambda: all(m.deaf for m in live.fake.mixes[conference_id].members.values()), "every participant deaf")
    assert app.http.patch(f"/calls/1/conferences/{conference_id}", json={"deaf": False}).status_code == 200
    role = app.http.patch(f"/calls/1/conferences/{conference_id}/call/{b}", json={"role": {"type": "LISTENER"}})
    assert role.status_code == 200
    assert _wait_event(receiver, conference_id, "PARTICIPANT_ROLE_CHANGED", b)[0]["properties"]["participant"][
        "role"
    ] == {"type": "LISTENER"}

    # the room hears a prompt
    said = app.http.post(f"/calls/1/conferences/{conference_id}/say", json={"text": "Welcome all", "language": "en"})
    assert said.status_code == 200, said.text
    finished = _wait_event(receiver, conference_id, "SAY_FINISHED")[0]
    assert finished["properties"]["playedCompletely"] is True and "callId" not in finished
    assert [p.source.text for p in live.fake.mixes[conference_id].played if isinstance(p.source, SpeechSource)] == [
        "Welcome all"
    ]

    # removed: the call stays up, out of the room
    removed = app.http.delete(f"/calls/1/conferences/{conference_id}/call/{c}")
    assert removed.status_code == 200, removed.text
    assert (
        _wait_event(receiver, conference_id, "PARTICIPANT_REMOVED", c)[0]["properties"]["participant"]["state"]
        == "LEFT"
    )
    assert c_engine not in live.fake.mixes[conference_id].members and live.fake.calls[c_engine].live
    assert app.http.get(f"/calls/1/calls/{c}").json()["conferenceId"] is None
    assert app.http.delete(f"/calls/1/conferences/{conference_id}/call/{c}").status_code == 404

    # the far end of one hangs up, the API hangs up the last: the conference ends once
    live.fake.far_end(a_engine).hang_up()
    _wait_event(receiver, conference_id, "PARTICIPANT_REMOVED", a)
    assert app.http.get(f"/calls/1/conferences/{conference_id}").json()["participants"][0]["callId"] == b
    assert app.http.post(f"/calls/1/calls/{b}/hangup", json={}).status_code == 200
    ended = _wait_event(receiver, conference_id, "CONFERENCE_FINISHED")[0]
    assert ended["properties"]["errorCode"]["name"] == "NORMAL_HANGUP"
    assert live.fake.mixes[conference_id].destroyed
    assert receiver.single_terminal(a)["properties"]["callLog"]["conferenceIds"] == [conference_id]
    assert app.http.post(f"/calls/1/calls/{c}/hangup", json={}).status_code == 200

    ended_say = app.http.post(f"/calls/1/conferences/{conference_id}/say", json={"text": "x", "language": "en"})
    assert ended_say.status_code == 400 and "ended" in _error(ended_say)
    history = app.http.get(f"/calls/1/conferences/{conference_id}/history").json()
    assert history["conferenceId"] == conference_id and history["name"] == name
    assert [s["callId"] for s in history["sessions"]] == [a, b, c]
    assert history["errorCode"]["name"] == "NORMAL_HANGUP" and history["duration"] is not None
    listed_history = app.http.get("/calls/1/conferences/history", params={"callId": a}).json()
    assert [found["conferenceId"] for found in listed_history["results"]] == [conference_id]
    assert app.http.get("/calls/1/conferences", params={"name": name}).json()["results"] == []

    _wait_event(receiver, conference_id, "PARTICIPANT_JOINED", count=3)  # deliveries are concurrent
    _wait_event(receiver, conference_id, "PARTICIPANT_REMOVED", count=3)
    types = _types(receiver, conference_id)
    assert types[0] == "CONFERENCE_CREATED" and types[-1] == "CONFERENCE_FINISHED"
    assert types.count("CONFERENCE_FINISHED") == 1
    assert types.count("PARTICIPANT_REMOVED") == 3 and types.count("PARTICIPANT_JOINED") == 3


def test_a_sixteenth_participant_is_refused_and_hangup_ends_every_call_and_the_conference(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    conference_id = _create(app)["id"]
    users = [_user("crowd") for _ in range(16)]
    for user in users:
        live.fake.route(user, FarEnd())
    placed: list[str] = []
    for user in users[:15]:
        added = app.http.post(
            f"/calls/1/conferences/{conference_id}/call",
            json={"callRequest": {"endpoint": {"type": "SIP", "username": user, "host": "127.0.0.1:5999"}}},
        )
        assert added.status_code == 200, added.text
        assert added.json()["call"]["conferenceId"] == conference_id
        placed.append(added.json()["call"]["id"])
    for call_id in placed:
        _wait_event(receiver, conference_id, "PARTICIPANT_JOINED", call_id)
    refused = app.http.post(
        f"/calls/1/conferences/{conference_id}/call",
        json={"callRequest": {"endpoint": {"type": "SIP", "username": users[15], "host": "127.0.0.1:5999"}}},
    )
    assert refused.status_code == 400 and "at most 15 participants" in _error(refused)
    assert live.fake.calls_to(users[15]) == []  # nothing was dialled
    assert len(live.fake.mixes[conference_id].members) == 15

    hung = app.http.post(f"/calls/1/conferences/{conference_id}/hangup")
    assert hung.status_code == 200, hung.text
    assert hung.json()["id"] == conference_id
    for call_id in placed:
        assert receiver.single_terminal(call_id)["properties"]["callLog"]["hangupSource"] == "API"
    _wait_event(receiver, conference_id, "CONFERENCE_FINISHED")
    _wait_event(receiver, conference_id, "PARTICIPANT_REMOVED", count=15)  # deliveries are concurrent
    assert _types(receiver, conference_id).count("PARTICIPANT_REMOVED") == 15
    assert app.http.post(f"/calls/1/conferences/{conference_id}/hangup").status_code == 400


def test_an_empty_conference_hangs_up_at_once_and_a_new_call_that_fails_never_joins(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    empty = _create(app)["id"]
    assert app.http.post(f"/calls/1/conferences/{empty}/hangup").status_code == 200
    _wait_event(receiver, empty, "CONFERENCE_FINISHED")
    assert app.http.post(f"/calls/1/conferences/{empty}/broadcast-webrtc-text", json={"text": "hi"}).status_code == 400

    conference_id = _create(app)["id"]
    ok = app.http.post(f"/calls/1/conferences/{conference_id}/broadcast-webrtc-text", json={"text": "hi"})
    assert ok.status_code == 200 and ok.json() == {"status": "PENDING"}
    busy_user = _user("busy")
    live.fake.route(busy_user, FarEnd(fail=BUSY))
    added = app.http.post(
        f"/calls/1/conferences/{conference_id}/call",
        json={"callRequest": {"endpoint": {"type": "SIP", "username": busy_user, "host": "127.0.0.1:5999"}}},
    )
    assert added.status_code == 200, added.text
    call_id = added.json()["call"]["id"]
    failed = _wait_event(receiver, conference_id, "PARTICIPANT_JOIN_FAILED", call_id)[0]
    assert failed["properties"]["participant"]["state"] == "LEFT"
    assert _types(receiver, conference_id, call_id) == ["PARTICIPANT_JOINING", "PARTICIPANT_JOIN_FAILED"]
    _wait_event(receiver, conference_id, "CONFERENCE_FINISHED")  # its only participant never made it in


# ---- connect ------------------------------------------------------------------------------------


def test_connect_puts_two_calls_in_a_conference_that_outlives_one_of_them(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    (a, a_engine), (b, b_engine) = _answered_calls(live, app, receiver, 2)
    connected = app.http.post("/calls/1/connect", json={"callIds": [a, b], "conferenceRequest": {"name": "pair"}})
    assert connected.status_code == 200, connected.text
    conference = connected.json()
    assert conference["name"] == "pair" and [p["callId"] for p in conference["participants"]] == [a, b]
    conference_id = conference["id"]
    # deliveries are concurrent: a JOINED may arrive before the JOINING written ahead of it, so wait for each
    for call_id in (a, b):
        _wait_event(receiver, conference_id, "PARTICIPANT_JOINING", call_id)
        _wait_event(receiver, conference_id, "PARTICIPANT_JOINED", call_id)
    _wait_event(receiver, conference_id, "CONFERENCE_CREATED")
    assert set(live.fake.mixes[conference_id].members) == {a_engine, b_engine}
    types = _types(receiver, conference_id)
    assert types[0] == "CONFERENCE_CREATED" and types.count("PARTICIPANT_JOINING") == 2
    assert app.http.post("/calls/1/connect", json={"callIds": [a]}).status_code == 400
    assert app.http.post("/calls/1/connect", json={"callIds": [a, b]}).status_code == 400  # already in one
    in_dialog = app.http.post(f"/calls/1/dialogs/parent-call/{a}/child-call/{b}", json={})
    assert in_dialog.status_code == 400 and "in a conference" in _error(in_dialog)

    live.fake.far_end(a_engine).hang_up()
    _wait_event(receiver, conference_id, "PARTICIPANT_REMOVED", a)
    # a conference ends when its last participant leaves: the other call stays up, alone in the room
    assert app.http.get(f"/calls/1/calls/{b}").json()["state"] == "ESTABLISHED"
    assert app.http.get(f"/calls/1/conferences/{conference_id}").json()["participants"][0]["callId"] == b
    assert app.http.post(f"/calls/1/calls/{b}/hangup", json={}).status_code == 200
    _wait_event(receiver, conference_id, "CONFERENCE_FINISHED")


def test_connect_with_a_new_call_plays_ringback_to_the_room_and_can_join_on_early_media(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    ((first, first_engine),) = _answered_calls(live, app, receiver, 1)
    callee = _user("callee")
    live.fake.route(callee, FarEnd(answer_after_s=None))
    joined = app.http.post(
        f"/calls/1/calls/{first}/connect",
        json={
            "callRequest": {"endpoint": {"type": "SIP", "username": callee, "host": "127.0.0.1:5999"}},
            "ringbackGeneration": {"enabled": True},
        },
    )
    assert joined.status_code == 200, joined.text
    new_call, conference_id = joined.json()["call"], joined.json()["conference"]["id"]
    assert new_call["id"] != first
    _wait_event(receiver, conference_id, "PARTICIPANT_JOINED", first)
    mix = live.fake.mixes[conference_id]
    eventually(lambda: any(p.source == RINGBACK for p in mix.played), "ringback in the room")
    assert mix.playing is not None and mix.playing.source == RINGBACK
    live.fake.far_end(_engine_id(live, callee)).answer()
    _wait_event(receiver, conference_id, "PARTICIPANT_JOINED", new_call["id"])
    eventually(lambda: mix.playing is None, "the ringback stopped")
    assert set(mix.members) == {first_engine, _engine_id(live, callee)}
    assert app.http.post(f"/calls/1/conferences/{conference_id}/hangup").status_code == 200
    _wait_event(receiver, conference_id, "CONFERENCE_FINISHED")

    ((caller, _),) = _answered_calls(live, app, receiver, 1)
    early = _user("early")
    live.fake.route(early, FarEnd(early_media=True, answer_after_s=None))
    joined = app.http.post(
        f"/calls/1/calls/{caller}/connect",
        json={
            "callRequest": {"endpoint": {"type": "SIP", "username": early, "host": "127.0.0.1:5999"}},
            "connectOnEarlyMedia": True,
        },
    )
    assert joined.status_code == 200, joined.text
    new_id, conference_id = joined.json()["call"]["id"], joined.json()["conference"]["id"]
    _wait_event(receiver, conference_id, "PARTICIPANT_JOINED", new_id)  # in the room before any answer
    assert app.http.get(f"/calls/1/calls/{new_id}").json()["state"] == "RINGING"  # a SIP call's 183 rings
    assert _engine_id(live, early) in live.fake.mixes[conference_id].members
    assert app.http.post(f"/calls/1/conferences/{conference_id}/hangup").status_code == 200
    assert receiver.single_terminal(new_id)["type"] == "CALL_FAILED"  # cancelled before its answer
    assert receiver.single_terminal(caller)["type"] == "CALL_FINISHED"
    _wait_event(receiver, conference_id, "CONFERENCE_FINISHED")


# ---- recordings ---------------------------------------------------------------------------------


def _channels(app: CallsApp, file_id: str) -> int:
    download = app.http.get(f"/calls/1/recordings/files/{file_id}")
    assert download.status_code == 200 and download.content[:4] == b"RIFF"
    with wave.open(BytesIO(download.content)) as wav:
        channels: int = wav.getnchannels()
    return channels


def test_conference_recordings_are_composed_or_per_participant_and_can_be_composed_later(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    (a, _), (b, _) = _answered_calls(live, app, receiver, 2)
    conference_id = _create(app, recording={"recordingType": "AUDIO", "conferenceComposition": {"enabled": True}})["id"]
    for call_id in (a, b):
        assert app.http.put(f"/calls/1/conferences/{conference_id}/call/{call_id}", json={}).status_code == 200
    eventually(lambda: live.fake.mixes[conference_id].recording is not None, "the recording asked at creation")
    again = app.http.post(f"/calls/1/conferences/{conference_id}/start-recording", json={"recordingType": "AUDIO"})
    assert again.status_code == 400 and "already being recorded" in _error(again)
    assert app.http.post(f"/calls/1/conferences/{conference_id}/stop-recording").status_code == 200
    ready = _wait_event(receiver, conference_id, "CONFERENCE_RECORDING_READY")[0]["properties"]["recording"]
    assert ready["conferenceId"] == conference_id and len(ready["composedFiles"]) == 1
    assert ready["callRecordings"] == []
    composed_file = ready["composedFiles"][0]["id"]
    assert _channels(app, composed_file) == 1
    stop_again = app.http.post(f"/calls/1/conferences/{conference_id}/stop-recording")
    assert stop_again.status_code == 400 and "not being recorded" in _error(stop_again)

    started = app.http.post(
        f"/calls/1/conferences/{conference_id}/start-recording",
        json={"recordingType": "AUDIO", "filePrefix": "room-", "customData": {"k": "v"}},
    )
    assert started.status_code == 200, started.text
    assert app.http.post(f"/calls/1/conferences/{conference_id}/hangup").status_code == 200  # ends the recording
    ready = _wait_event(receiver, conference_id, "CONFERENCE_RECORDING_READY", count=2)[1]["properties"]["recording"]
    assert {r["callId"] for r in ready["callRecordings"]} == {a, b} and ready["composedFiles"] == []
    per_call = [f for r in ready["callRecordings"] for f in r["files"]]
    assert all(f["name"].startswith("room-") and f["customData"] == {"k": "v"} for f in per_call)
    _wait_event(receiver, conference_id, "CONFERENCE_FINISHED")

    got = app.http.get(f"/calls/1/recordings/conferences/{conference_id}").json()
    assert len(got["composedFiles"]) == 1 and len(got["callRecordings"]) == 2
    listed = app.http.get("/calls/1/recordings/conferences", params={"callId": a}).json()
    assert [r["conferenceId"] for r in listed["results"]] == [conference_id]
    composed_only = app.http.get(
        "/calls/1/recordings/conferences", params={"conferenceId": conference_id, "composition": "true"}
    ).json()["results"][0]
    assert composed_only["callRecordings"] == []
    assert app.http.get("/calls/1/recordings/calls", params={"callId": a}).json()["results"] == []  # not a call's
    history = app.http.get(f"/calls/1/conferences/{conference_id}/history").json()
    assert len(history["recording"]["composedFiles"]) == 1

    compose = app.http.post(
        f"/calls/1/recordings/conferences/{conference_id}/compose", json={"multiChannel": {"enabled": True}}
    )
    assert compose.status_code == 200, compose.text
    finished = _wait_event(receiver, conference_id, "CONFERENCE_COMPOSITION_FINISHED")[0]["properties"]["recording"]
    assert _channels(app, finished["composedFiles"][0]["id"]) == 2
    after = app.http.get(f"/calls/1/recordings/conferences/{conference_id}").json()
    assert after["callRecordings"] == [] and len(after["composedFiles"]) == 2  # the per-call files were deleted
    deleted = app.http.delete(f"/calls/1/recordings/conferences/{conference_id}")
    assert deleted.status_code == 200 and len(deleted.json()["composedFiles"]) == 2
    assert app.http.get(f"/calls/1/recordings/conferences/{conference_id}").status_code == 404
    assert app.http.get(f"/calls/1/recordings/files/{composed_file}").status_code == 404


# ---- the official client -----------------------------------------------------------------------


def test_the_official_client_drives_a_conference(live: LiveServer, app: CallsApp, receiver: Receiver) -> None:
    calls = calls_api(live.base_url, app.token)
    users = [_user("sdk") for _ in range(2)]
    for user in users:
        live.fake.route(user, FarEnd())
    trunk = calls.create_sip_trunk(
        CallsStaticSipTrunkRequest(
            name=_user("fake-peer"),
            channel_limit=5,
            billing_package=CallsBillingPackage(package_type="METERED"),
            destination_hosts=["127.0.0.1:5999"],
            codecs=["PCMU", "PCMA"],
            type=CallsSipTrunkType.STATIC,
        )
    )
    name = _user("sdk-room")
    conference = calls.create_conference(CallsConferenceRequest(name=name, calls_configuration_id=app.configuration_id))
    assert conference.name == name and conference.id is not None
    added = [
        calls.add_new_conference_call(
            conference.id,
            CallsAddNewCallRequest(
                call_request=CallsActionCallRequest(
                    endpoint=CallsSipEndpoint(type=CallEndpointType.SIP, username=user, sip_trunk_id=str(trunk.id))
                )
            ),
        )
        for user in users
    ]
    call_ids = [str(item.call.id) for item in added if item.call is not None]
    assert len(call_ids) == 2 and all(item.conference.id == conference.id for item in added if item.conference)
    for call_id in call_ids:
        _wait_event(receiver, conference.id, "PARTICIPANT_JOINED", call_id)
    got = calls.get_conference(conference.id)
    assert [p.call_id for p in got.participants or []] == call_ids
    assert {str(p.state.value if p.state else "") for p in got.participants or []} == {"JOINED"}
    page = calls.get_conferences(name=name)
    assert [found.id for found in page.results or []] == [conference.id]
    said = calls.conference_say_text(
        conference.id, CallsConferenceSayRequest(text="hello room", language=CallsLanguage.EN)
    )
    assert said.status is not None
    _wait_event(receiver, conference.id, "SAY_FINISHED")
    assert calls.update_conference_call(conference.id, call_ids[0], CallsUpdateCallRequest(muted=True)).status
    _wait_event(receiver, conference.id, "PARTICIPANT_MEDIA_CHANGED", call_ids[0])
    with pytest.raises(ApiException) as missing:
        calls.get_conference("missing")
    assert missing.value.status == 404
    assert json.loads(missing.value.body or "{}")["requestError"]["serviceException"]["text"]
    hung = calls.hangup_conference(conference.id)
    assert hung.id == conference.id
    _wait_event(receiver, conference.id, "CONFERENCE_FINISHED")
    history = calls.get_conference_history(conference.id)
    assert [s.call_id for s in history.sessions or []] == call_ids
    listed = calls.get_conferences_history(name=name)
    assert [found.conference_id for found in listed.results or []] == [conference.id]


# ---- an API process without the engine -----------------------------------------------------------


@pytest.fixture(scope="module")
def api_only(live: LiveServer) -> Iterator[str]:
    """An API process beside the media node: same database and data folder, no engine, no workers."""
    settings = live.settings.model_copy(update={"voice_enabled": False, "workers_enabled": False})
    with serving(settings, None) as base_url:
        yield base_url


def test_an_api_only_process_relays_a_conference_to_the_node_that_mixes_it(
    live: LiveServer, app: CallsApp, receiver: Receiver, api_only: str
) -> None:
    users = [_user("relayed") for _ in range(2)]
    for user in users:
        live.fake.route(user, FarEnd())
    with httpx.Client(base_url=api_only, headers={"Authorization": f"App {app.token}"}, timeout=30) as api:
        created = api.post("/calls/1/conferences", json={"callsConfigurationId": app.configuration_id})
        assert created.status_code == 201, created.text
        conference_id = created.json()["id"]
        assert conference_id in live.fake.mixes  # created on the node
        placed = []
        for user in users:
            added = api.post(
                f"/calls/1/conferences/{conference_id}/call",
                json={"callRequest": {"endpoint": {"type": "SIP", "username": user, "host": "127.0.0.1:5999"}}},
            )
            assert added.status_code == 200, added.text
            placed.append(added.json()["call"]["id"])
        for call_id in placed:
            _wait_event(receiver, conference_id, "PARTICIPANT_JOINED", call_id)
        said = api.post(f"/calls/1/conferences/{conference_id}/say", json={"text": "Relayed.", "language": "en"})
        assert said.status_code == 200, said.text
        _wait_event(receiver, conference_id, "SAY_FINISHED")
        muted = api.patch(f"/calls/1/conferences/{conference_id}/call/{placed[0]}", json={"muted": True})
        assert muted.status_code == 200, muted.text
        _wait_event(receiver, conference_id, "PARTICIPANT_MEDIA_CHANGED", placed[0])
        missing = api.delete(f"/calls/1/conferences/{conference_id}/call/nobody")
        assert missing.status_code == 404, missing.text  # the node's error, relayed
        hung = api.post(f"/calls/1/conferences/{conference_id}/hangup")
        assert hung.status_code == 200 and hung.json()["id"] == conference_id
        _wait_event(receiver, conference_id, "CONFERENCE_FINISHED")
        ended = api.post(f"/calls/1/conferences/{conference_id}/say", json={"text": "x", "language": "en"})
        assert ended.status_code == 400, ended.text


def test_the_retention_sweep_deletes_a_finished_conference_after_the_history_days(
    live: LiveServer, app: CallsApp, receiver: Receiver
) -> None:
    live_one, old = _create(app)["id"], _create(app)["id"]
    assert app.http.post(f"/calls/1/conferences/{old}/hangup").status_code == 200
    _wait_event(receiver, old, "CONFERENCE_FINISHED")

    async def backdate_and_sweep() -> int:
        engine = create_async_engine(live.settings.resolved_database_url)
        try:
            async with AsyncSession(engine) as session, session.begin():
                await session.execute(
                    update(VoiceConference)
                    .where(VoiceConference.id == old)
                    .values(ended_at=utcnow() - timedelta(days=6), created_at=utcnow() - timedelta(days=6))
                )
                result = await sweep(
                    session=session, data_dir=live.settings.data_dir, now=utcnow(), history_days=5, recording_days=0
                )
            return result.conferences
        finally:
            await engine.dispose()

    assert asyncio.run(backdate_and_sweep()) >= 1
    assert app.http.get(f"/calls/1/conferences/{old}").status_code == 404
    assert app.http.get(f"/calls/1/conferences/{live_one}").status_code == 200  # live: never swept
    assert app.http.post(f"/calls/1/conferences/{live_one}/hangup").status_code == 200
