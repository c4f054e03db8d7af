"""/metrics: the exposition, who may read it, and a small listener for processes without an HTTP API.

Reading needs ``Authorization: Bearer <token>`` with the metrics token (CALLPLANE_METRICS_TOKEN) or the admin
token (docs/decisions.md "Metrics: authenticated, one scrape target per process").
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from callplane.settings import Settings

log = logging.getLogger("callplane.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition() -> bytes:
    """This process's series; under ``serve --workers N`` every API process's, added up from their files."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def prepare_multiprocess(directory: Path) -> None:
    """Before `serve --workers N` starts its processes: they inherit the variable and keep their values in files
    there (emptied first: files of an earlier run's processes would be added to this run's)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    os.environ[MULTIPROCESS_ENV] = str(directory)


def authorized(authorization: str | None, tokens: tuple[str, ...]) -> bool:
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    # Every token compared, in constant time: which one matched (or how much of it) must not show in the timing.
    matches = [hmac.compare_digest(presented.strip().encode(), token.encode()) for token in tokens if token]
    return any(matches)


def _answer(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n"
    if status.startswith("401"):
        head += 'www-authenticate: Bearer realm="metrics"\r\n'
    return head.encode() + b"\r\n" + body


async def serve_metrics(host: str, port: int, tokens: tuple[str, ...]) -> asyncio.Server:
    """GET /metrics on HOST:PORT for `callplane worker` and `callplane media`, which have no HTTP API to mount it on.

    One request per connection, head only (no body is read), answered from memory: enough for a Prometheus scraper,
    and nothing a slow client can hold open for long (10 s to send the head).
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            async with asyncio.timeout(10):
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            method, _, rest = request_line.partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in header_lines if line)
            }
            if method != "GET" or path != "/metrics":
                writer.write(_answer("404 Not Found", b"not found\n"))
            elif not authorized(headers.get("authorization"), tokens):
                writer.write(_answer("401 Unauthorized", b"a bearer token is required\n"))
            else:
                writer.write(_answer("200 OK", exposition(), CONTENT_TYPE_LATEST))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host, port)
    log.info("metrics listening", extra={"fields": {"address": f"{host}:{port}"}})
    return server


async def serve_metrics_for(settings: Settings) -> asyncio.Server | None:
    """The listener of a worker or media process, where CALLPLANE_METRICS_PORT asks for one."""
    if settings.metrics_port is None:
        return None
    tokens = (settings.metrics_token or "", settings.admin_token or "")
    if not any(tokens):
        log.warning("metrics listener not started: set CALLPLANE_METRICS_TOKEN (or CALLPLANE_ADMIN_TOKEN)")
        return None
    return await serve_metrics(settings.metrics_host, settings.metrics_port, tokens)
