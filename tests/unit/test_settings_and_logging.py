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
from callplane.logging import log_handler, redact
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
    logger = logging.getLogger("callplane.test.redaction")
    logger.addHandler(log_handler(stream))
    logger.propagate = False
    logger.warning("fetch https://x/r.wav?token=abc123&b=1", extra={"fields": {"query": "oauth_token=s3cr3t"}})
    line = json.loads(stream.getvalue())
    assert "abc123" not in stream.getvalue() and "s3cr3t" not in stream.getvalue()
    assert line["query"] == "oauth_token=[redacted]"
    assert line["msg"] == "fetch https://x/r.wav?token=[redacted]&b=1"
    assert redact("api_key=XYZ&password=pw") == "api_key=[redacted]&password=[redacted]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET https://user:pa%40ss@host.example/r.wav", "GET https://***@host.example/r.wav"),
        ("sftp://only-user@h/p", "sftp://***@h/p"),
        (
            "https://b.s3.amazonaws.com/r.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261207"
            "&X-Amz-Signature=deadbeef&X-Amz-Security-Token=FwoG&X-Amz-Expires=60",
            "https://b.s3.amazonaws.com/r.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[redacted]"
            "&X-Amz-Signature=[redacted]&X-Amz-Security-Token=[redacted]&X-Amz-Expires=60",
        ),
        (
            "https://a.blob.core.windows.net/c/r.wav?sv=2022-11-02&se=2026-12-08&sp=r&sig=AbC%2Bd%3D",
            "https://a.blob.core.windows.net/c/r.wav?sv=2022-11-02&se=2026-12-08&sp=r&sig=[redacted]",
        ),
        (
            "/v1/calls?key=k1&apikey=k2&access_token=k3&monkey=fine",
            "/v1/calls?key=[redacted]&apikey=[redacted]&access_token=[redacted]&monkey=fine",
        ),
        ("Authorization: Bearer abc.def", "Authorization: [redacted]"),
        (
            "{'Authorization': 'Basic dXNlcjpwYXNz', 'Accept': '*/*'}",
            "{'Authorization': '[redacted]', 'Accept': '*/*'}",
        ),
        (
            '{"webhook-signature": "v1,K5oZ=", "webhook-id": "msg_1"}',
            '{"webhook-signature": "[redacted]", "webhook-id": "msg_1"}',
        ),
        ("connect to 127.0.0.1:5060 failed", "connect to 127.0.0.1:5060 failed"),
        ("status: 401 Proxy-Authorization: Digest response=abc", "status: 401 Proxy-Authorization: [redacted]"),
        ("tokens: 5, monkey: 3, key: k1", "tokens: 5, monkey: 3, key: [redacted]"),
    ],
)
def test_redaction_of_urls_queries_and_headers(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    ["a." * 100_000 + "://x", "x://" * 50_000 + "@", "a" * 200_000 + ": token", "&=" * 100_000, "a=" * 100_000],
)
def test_redaction_stays_linear_on_hostile_text(text: str) -> None:
    # Quadratic patterns would take minutes on these; the bounded ones take milliseconds.
    assert len(redact(text)) <= len(text) + 20


def test_every_part_of_a_record_is_redacted_whoever_logs_it() -> None:
    stream = io.StringIO()
    handler = log_handler(stream)
    # uvicorn's access log shape: the full path with its query string is an argument.
    access = logging.makeLogRecord(
        {
            "name": "uvicorn.access",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": '%s - "%s %s HTTP/%s" %d',
            "args": ("127.0.0.1:5000", "GET", "/v1/calls?key=SECRET1", "1.1", 200),
        }
    )
    handler.handle(access)
    try:
        raise RuntimeError("GET https://u:SECRET2@h/x failed")
    except RuntimeError:
        logger = logging.getLogger("callplane.test.redaction.parts")
        logger.addHandler(handler)
        logger.propagate = False
        logger.exception(
            "%s sent",
            httpx.URL("https://u:SECRET3@h/y?sig=SECRET4"),
            extra={"fields": {"headers": {"Authorization": "Bearer SECRET5"}}, "token": "SECRET6"},
        )
    output = stream.getvalue()
    assert "SECRET" not in output
    first, second = (json.loads(line) for line in output.splitlines())
    assert first["msg"] == '127.0.0.1:5000 - "GET /v1/calls?key=[redacted] HTTP/1.1" 200'
    assert second["msg"] == "https://***@h/y?sig=[redacted] sent" and "https://***@h/x failed" in second["exc"]
    assert second["headers"] == {"Authorization": "[redacted]"}


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
