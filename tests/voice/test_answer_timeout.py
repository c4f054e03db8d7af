"""The inbound answer timeout: a call the application never answers ends once, NO_ANSWER, with a 480 to the
caller (a server whose timeout is 2 s, a real sipp caller; both databases)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, running_server, scratch_postgres_database
from callplane.testing.sipp import free_udp_port
from tests.voice.support import (
    Receiver,
    VoiceServer,
    render_voice_scenario,
    run_sipp,
    serving,
    settle_then_single_terminal,
    sipp_result,
    voice_settings,
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def impatient_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoiceServer]:
    """A server whose inbound answer timeout is 2 s."""
    data_dir = tmp_path_factory.mktemp(f"impatient-{request.param}")
    sip_port = free_udp_port()
    update = {"voice_inbound_answer_timeout_seconds": 2.0}
    if request.param == "sqlite":
        with running_server(voice_settings(data_dir, None, sip_port).model_copy(update=update)) as running:
            yield from serving(running, sip_port)
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with (
        scratch_postgres_database(admin_url) as url,
        running_server(voice_settings(data_dir, url, sip_port).model_copy(update=update)) as running,
    ):
        yield from serving(running, sip_port)


def test_an_inbound_call_nobody_answers_ends_no_answer_after_the_answer_timeout(
    impatient_server: VoiceServer, receiver: Receiver, tmp_path: Path
) -> None:
    account = impatient_server.admin.network()
    base = impatient_server.running.base_url
    called = f"unanswered-{secrets.token_hex(3)}"
    with (
        httpx.Client(base_url=base, headers={"Authorization": f"App {account.token}"}, timeout=30) as api,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {account.token}"}, timeout=30) as native,
    ):
        configuration_id = api.post("/calls/1/configurations", json={"name": "impatient"}).json()["id"]
        native.post(f"/v1/voice/configurations/{configuration_id}/subscriptions", json={"url": receiver.url})
        native.post(f"/v1/voice/configurations/{configuration_id}/routes", json={"called_user": called})
        caller = run_sipp(
            render_voice_scenario("uac_unanswered.xml", tmp_path, TIMEOUT_MS="60000"),
            remote=f"127.0.0.1:{impatient_server.sip_port}",
            extra=["-s", called],
        )
        event = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
        call_id = event["callId"]
        code, output = sipp_result(caller)
        assert code == 0, output  # 480 with Q.850 cause 19, checked by sipp
        final = settle_then_single_terminal(receiver, call_id)
        log = final["properties"]["callLog"]
        assert final["type"] == "CALL_FAILED" and log["state"] == "NO_ANSWER"
        assert log["hangupSource"] == "PLATFORM" and log["errorCode"]["name"] == "NO_ANSWER"
