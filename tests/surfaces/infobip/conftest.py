"""Fixtures for the Infobip Calls surface: an account with an API key and the official client pointed at us."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from infobip_api_client.api.calls_api import CallsApi

from callplane.testing.factories import Admin, Network
from callplane.testing.infobip import calls_api
from callplane.testing.server import RunningServer


@pytest.fixture
def voice_account(admin: Admin) -> Network:
    """A fresh account per test, so lists and counts see only that test's resources."""
    return admin.network()


@pytest.fixture
def calls(server: RunningServer, voice_account: Network) -> Iterator[CallsApi]:
    """The vendor's `CallsApi`, sending `Authorization: App <key>` to the test server."""
    api = calls_api(server.base_url, voice_account.token)
    yield api
    api.api_client.rest_client.pool_manager.clear()


@pytest.fixture
def voice_http(server: RunningServer, voice_account: Network) -> Iterator[httpx.Client]:
    """Plain HTTP with the same key, for what the client cannot send (callplane fields, broken bodies)."""
    headers = {"Authorization": f"App {voice_account.token}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
        yield http
