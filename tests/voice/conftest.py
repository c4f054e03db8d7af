"""Voice tests run the real engine against sipp; the TTS/decode cache is shared across the session. The Calls API
end-to-end fixtures (a server with the engine per database, a receiver, an application) serve every module here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, running_server, scratch_postgres_database
from callplane.testing.sipp import free_udp_port
from tests.voice.support import STARTED_SIPPS, App, Receiver, VoiceServer, receiving, serving, voice_settings


@pytest.fixture(scope="session")
def media_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voice-media-cache")


@pytest.fixture(autouse=True)
def stop_sipps() -> Iterator[None]:
    """A failed test must not leave its sipp running (nor its pipes open)."""
    yield
    while STARTED_SIPPS:
        process = STARTED_SIPPS.pop()
        if process.returncode is None:
            process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as sink:
        yield sink


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def voice_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoiceServer]:
    data_dir = tmp_path_factory.mktemp(f"voice-{request.param}")
    sip_port = free_udp_port()
    if request.param == "sqlite":
        with running_server(voice_settings(data_dir, None, sip_port)) as running:
            yield from serving(running, sip_port)
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with (
        scratch_postgres_database(admin_url) as url,
        running_server(voice_settings(data_dir, url, sip_port)) as running,
    ):
        yield from serving(running, sip_port)


@pytest.fixture
def app(voice_server: VoiceServer, receiver: Receiver) -> Iterator[App]:
    account = voice_server.admin.network()
    base = voice_server.running.base_url
    with (
        httpx.Client(base_url=base, headers={"Authorization": f"App {account.token}"}, timeout=30) as api,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {account.token}"}, timeout=30) as native,
    ):
        created = api.post("/calls/1/configurations", json={"name": "e2e"})
        assert created.status_code == 201, created.text
        configuration_id = created.json()["id"]
        subscription = native.post(
            f"/v1/voice/configurations/{configuration_id}/subscriptions", json={"url": receiver.url}
        )
        assert subscription.status_code == 201, subscription.text
        yield App(api, native, configuration_id, subscription.json()["secret"])
