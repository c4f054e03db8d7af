"""Settings sources, secret handling in logs, and each surface's 500 body."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from callplane.app import RequestLogMiddleware
from callplane.logging import JsonFormatter, redact
from callplane.settings import Settings


def test_config_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "callplane.toml"
    config.write_text('database_url = "postgresql://db/callplane"\nbatch_rate_limit_per_minute = 7\n')
    monkeypatch.setenv("CALLPLANE_CONFIG_FILE", str(config))
    monkeypatch.setenv("CALLPLANE_BATCH_RATE_LIMIT_PER_MINUTE", "9")
    settings = Settings()
    assert settings.resolved_database_url == "postgresql+asyncpg://db/callplane"
    assert settings.batch_rate_limit_per_minute == 9  # the environment wins over the file


def test_sqlite_default_lives_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/callplane.db"


def test_production_refuses_generated_secrets(tmp_path: Path) -> None:
    settings = Settings(environment="production", data_dir=tmp_path)
    with pytest.raises(RuntimeError, match="CALLPLANE_ADMIN_TOKEN"):
        settings.effective_admin_token()
    with pytest.raises(RuntimeError, match="CALLPLANE_SECRET_KEY"):
        settings.effective_secret_key()


def test_generated_admin_token_is_private_and_stable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    token = settings.effective_admin_token()
    assert token == Settings(data_dir=tmp_path).effective_admin_token()
    assert (tmp_path / "admin-token").stat().st_mode & 0o077 == 0
    assert repr(settings).count(token) == 0


def test_credentials_are_redacted_in_log_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("callplane.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("fetch https://x/r.wav?token=abc123&b=1", extra={"fields": {"query": "oauth_token=s3cr3t"}})
    line = json.loads(stream.getvalue())
    assert "abc123" not in stream.getvalue() and "s3cr3t" not in stream.getvalue()
    assert line["query"] == "oauth_token=[redacted]"
    assert redact("api_key=XYZ&password=pw") == "api_key=[redacted]&password=[redacted]"


async def _explode(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/partner/ingest/batch-call", {"success": False, "message": "Internal server error"}),
        ("/api/2022-03-01/calls.json", {"errors": {"class": "InternalError", "invalid_data": "Internal server error"}}),
    ],
)
def test_unexpected_errors_get_each_surfaces_500_body(path: str, body: dict[str, object]) -> None:
    import asyncio

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=RequestLogMiddleware(_explode))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, json={})

    logging.getLogger("callplane.http").disabled = True
    try:
        response = asyncio.run(call())
    finally:
        logging.getLogger("callplane.http").disabled = False
    assert response.status_code == 500
    assert response.json() == body
