"""Fixtures of the live-plane tests: the real engine's decode/TTS cache (contract suite), and the control plane
served on the in-memory engine once per database, with a webhook receiver and a Calls API application."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callplane.testing.factories import Network
from tests.live.support import CallsApp, LiveServer, Receiver, calls_app, live_server, receiving


@pytest.fixture(scope="session")
def media_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live-media-cache")


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(request.param, tmp_path_factory.mktemp(f"live-{request.param}")) as server:
        yield server
        server.admin.client.close()


@pytest.fixture(scope="session")
def receiver(live: LiveServer) -> Iterator[Receiver]:
    """One receiver per server; when it closes (the server still up), no call has had two terminal events."""
    with receiving() as sink:
        yield sink
        time.sleep(0.5)  # a duplicate would be written with the first: a few delivery polls
        assert not sink.duplicate_terminals()


@pytest.fixture(scope="session")
def account(live: LiveServer) -> Network:
    """One account per server for the Calls API tests: each test gets its own calls configuration on it."""
    return live.admin.network()


@pytest.fixture
def app(live: LiveServer, receiver: Receiver, account: Network) -> Iterator[CallsApp]:
    with calls_app(live, receiver, account) as application:
        yield application
