"""One server per database with everything that moves the series: ingestion, the pipeline workers (transcription
included), webhook delivery and a live-call plane on the in-memory engine; a loopback file server for recordings."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from callplane.settings import Settings
from callplane.testing.engine import FakeCallEngine
from callplane.testing.factories import Admin
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from tests.live.support import ADMIN_TOKEN, LiveServer, Receiver, live_settings, receiving, serving
from tests.pipeline.conftest import _QuietHandler, make_tone

METRICS_TOKEN = "scrape-token"


class Scrape(dict[tuple[str, frozenset[tuple[str, str]]], float]):
    """One scrape: (sample name, labels) -> value."""

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 when none)."""
        wanted = set(labels.items())
        return sum(value for (sample, have), value in self.items() if sample == name and wanted <= have)


def scrape(base_url: str, token: str = METRICS_TOKEN) -> Scrape:
    response = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    return parse(response.text)


def parse(exposition: str) -> Scrape:
    samples = Scrape()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


@dataclass
class Observed:
    live: LiveServer
    recordings: str  # base URL of the file server: stereo.wav, a 3 s two-tone call


@pytest.fixture(scope="session")
def media_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("observability-media-cache")


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("observability-recordings")
    make_tone(root / "stereo.wav", left_hz=440, right_hz=1000)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def observed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, recordings: str
) -> Iterator[Observed]:
    data_dir = tmp_path_factory.mktemp(f"observability-{request.param}")

    def settings_for(url: str | None) -> Settings:
        return live_settings(data_dir, url).model_copy(
            update={
                "transcription_enabled": True,
                "signals_embedder": "hashed",  # the call's transcript is what matters here, not sentence models
                "asr_models_dir": tmp_path_factory.getbasetemp() / "asr-models",
                "worker_poll_seconds": 0.05,
                "metrics_token": METRICS_TOKEN,
                "voice_node_id": "observed-node",
            }
        )

    fake = FakeCallEngine()
    if request.param == "sqlite":
        settings = settings_for(None)
        with serving(settings, fake) as base_url:
            admin = Admin(base_url, ADMIN_TOKEN)
            yield Observed(LiveServer(base_url, fake, admin, settings), recordings)
            admin.client.close()
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url:
        settings = settings_for(url)
        with serving(settings, fake) as base_url:
            admin = Admin(base_url, ADMIN_TOKEN)
            yield Observed(LiveServer(base_url, fake, admin, settings), recordings)
            admin.client.close()


@pytest.fixture(scope="session")
def receiver(observed: Observed) -> Iterator[Receiver]:
    with receiving() as sink:
        yield sink
