"""Voice test helpers: a migrated SQLite database with one account, and a loopback webhook receiver."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.tenancy.models import AccountKind
from callplane.core.tenancy.service import create_account
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.settings import Settings


@asynccontextmanager
async def database(tmp_path: Path) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], str]]:
    """A migrated SQLite database with one account; yields the session factory and the account id."""
    settings = Settings(environment="test", data_dir=tmp_path / "data")  # type: ignore[call-arg]
    await asyncio.to_thread(upgrade, settings)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    async with sessions() as session, session.begin():
        account = await create_account(session=session, kind=AccountKind.NETWORK, name="voice", external_id="v1")
        account_id = account.id
    try:
        yield sessions, account_id
    finally:
        await engine.dispose()


class Webhooks:
    """A loopback receiver for the application's events."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with sink.lock:
                    sink.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 40) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                found = [body for body in self.bodies if predicate(body)]
            if found:
                return found[0]
            time.sleep(0.05)
        with self.lock:
            seen = [body.get("type") for body in self.bodies]
        raise AssertionError(f"no matching event within {timeout_s}s; got {seen}")

    def of_call(self, call_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for body in self.bodies if body.get("callId") == call_id]
