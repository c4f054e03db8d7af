"""Every API test runs against a real server on loopback, once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.s3 import S3Server, moto_server
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)

ADMIN_TOKEN = "test-admin-token"


def _settings(data_dir: Path, database_url: str | None, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "log_level": "WARNING",
        "fetch_allowed_networks": ["127.0.0.1/32"],
        # The API suites check what was stored; the pipeline suite runs its own server with workers.
        "workers_enabled": False,
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp(f"data-{request.param}")
    if request.param == "sqlite":
        with running_server(_settings(data_dir, None)) as running:
            yield running
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url, running_server(_settings(data_dir, url)) as running:
        yield running


@pytest.fixture(scope="session")
def admin(server: RunningServer) -> Iterator[Admin]:
    operator = Admin(server.base_url, ADMIN_TOKEN)
    yield operator
    operator.client.close()


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server, one per test process, for every suite that stores in a bucket (tests/storage, tests/voice)."""
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server
