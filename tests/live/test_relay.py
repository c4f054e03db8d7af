"""Two processes' roles on one database: an API-only server (no engine: `serve --role api`) places calls on the media
node running the fake engine and relays commands for its calls there (NOTIFY on PostgreSQL, polling on SQLite).
The real-process path with sipp stays in tests/voice/test_media_nodes.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from callplane.testing.engine import FarEnd
from tests.live.support import CallsApp, LiveServer, Receiver, eventually, serving

# The tests sharing the fake-engine servers run on one xdist worker, which starts each server once.
pytestmark = pytest.mark.xdist_group("live-fake-engine")


@pytest.fixture(scope="module")
def api_only(live: LiveServer) -> Iterator[str]:
    """An API process beside the media node: same database and data folder, no engine, no workers."""
    settings = live.settings.model_copy(update={"voice_enabled": False, "workers_enabled": False})
    with serving(settings, None) as base_url:
        yield base_url


def test_an_api_only_process_places_a_call_on_the_media_node_and_relays_its_commands(
    live: LiveServer, app: CallsApp, receiver: Receiver, api_only: str
) -> None:
    callee = f"relayed-{secrets.token_hex(3)}"
    live.fake.route(callee, FarEnd())
    with httpx.Client(base_url=api_only, headers={"Authorization": f"App {app.token}"}, timeout=30) as api:
        created = api.post(
            "/calls/1/calls",
            json={
                "endpoint": {"type": "SIP", "username": callee, "host": "127.0.0.1:5999"},
                "callsConfigurationId": app.configuration_id,
            },
        )
        assert created.status_code == 201, created.text
        call_id = created.json()["id"]
        receiver.wait_type(call_id, "CALL_ESTABLISHED")
        [engine_call] = eventually(lambda: live.fake.calls_to(callee), "the node dialled")
        assert api.get(f"/calls/1/calls/{call_id}").json()["state"] == "ESTABLISHED"  # read from the database

        said = api.post(f"/calls/1/calls/{call_id}/say", json={"text": "Relayed to the node.", "language": "en"})
        assert said.status_code == 200, said.text
        receiver.wait_type(call_id, "SAY_FINISHED")
        assert engine_call.said == ["Relayed to the node."]
        sent = api.post(f"/calls/1/calls/{call_id}/send-dtmf", json={"dtmf": "9"})
        assert sent.status_code == 200, sent.text
        assert engine_call.sent_dtmf == "9"  # the relay answers once the node has run the command

        assert api.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
        log = receiver.single_terminal(call_id)["properties"]["callLog"]
        assert (log["state"], log["hangupSource"]) == ("FINISHED", "API")
        assert engine_call.ended is not None and engine_call.ended.initiator.value == "LOCAL"
        gone = api.post(f"/calls/1/calls/{call_id}/say", json={"text": "Too late.", "language": "en"})
        assert gone.status_code == 400, gone.text
