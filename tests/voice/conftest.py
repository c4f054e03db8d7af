"""Voice tests run the real engine against sipp; the TTS/decode cache is shared across the session. The Calls API
end-to-end fixtures (a server with the engine per database, a receiver, an application) serve every module here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.voice.support import STARTED_SIPPS, App, Receiver, VoiceServer, receiving, voice_server_fixture


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


voice_server = voice_server_fixture()  # the modules that store voice files add "postgresql-s3"


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
