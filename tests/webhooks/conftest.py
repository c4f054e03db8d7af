"""Real databases (SQLite and a scratch PostgreSQL, migrated) and a real loopback receiver that verifies signatures."""

from __future__ import annotations

import asyncio
import http.server
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.tenancy.models import AccountKind
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.tenancy.service import create_account
from callplane.core.webhooks.errors import InvalidSignature, InvalidWebhookSecret
from callplane.core.webhooks.models import Delivery, DeliveryStatus
from callplane.core.webhooks.signing import verify
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.settings import Settings
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database


@dataclass
class Db:
    settings: Settings

    @asynccontextmanager
    async def sessions(self) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
        """A fresh engine per use: asyncpg connections belong to the event loop that made them."""
        engine = create_engine(self.settings)
        try:
            yield create_session_factory(engine)
        finally:
            await engine.dispose()


def _settings(data_dir: Path, database_url: str | None) -> Settings:
    return Settings(environment="test", data_dir=data_dir, database_url=database_url, log_level="WARNING")


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    data_dir = tmp_path_factory.mktemp(f"webhooks-{request.param}")
    if request.param == "sqlite":
        settings = _settings(data_dir, None)
        upgrade(settings)
        yield Db(settings)
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url:
        settings = _settings(data_dir, url)
        upgrade(settings)
        yield Db(settings)


@pytest.fixture(autouse=True)
def _settle_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests share a database; fail what a test left pending so the next test's workers never send it."""
    yield
    if "db" not in request.fixturenames:
        return
    db: Db = request.getfixturevalue("db")

    async def settle() -> None:
        async with db.sessions() as sessions, sessions() as session, session.begin():
            await session.execute(
                update(Delivery).where(Delivery.status == DeliveryStatus.PENDING).values(status=DeliveryStatus.FAILED)
            )

    asyncio.run(settle())


@pytest.fixture(scope="session")
def secret_box() -> SecretBox:
    return SecretBox(Fernet.generate_key().decode())


async def new_account(sessions: async_sessionmaker[AsyncSession]) -> str:
    async with sessions() as session, session.begin():
        account = await create_account(
            session=session, kind=AccountKind.PARTNER, name=f"webhooks {secrets.token_hex(4)}"
        )
        return account.id


# --- the receiver ---------------------------------------------------------------------------------------------


@dataclass
class Receipt:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None  # None: the route has no secret to check against
    status: int


@dataclass
class _Route:
    secret: str | None
    statuses: list[int]
    delay_s: float
    headers: dict[str, str] = field(default_factory=dict)
    body_bytes: int = 2


class Receiver:
    """Answers each route's planned statuses in order, then 200; a bad signature is answered 401."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._receipts: list[Receipt] = []

    def route(
        self,
        *,
        secret: str | None = None,
        statuses: list[int] | None = None,
        delay_s: float = 0.0,
        headers: dict[str, str] | None = None,
        body_bytes: int = 2,
    ) -> str:
        path = f"/hook/{secrets.token_hex(6)}"
        with self._lock:
            self._routes[path] = _Route(secret, list(statuses or []), delay_s, headers or {}, body_bytes)
        return self.base_url + path

    def set_secret(self, url: str, secret: str) -> None:
        with self._lock:
            self._routes[url.removeprefix(self.base_url)].secret = secret

    def receipts(self, url: str) -> list[Receipt]:
        path = url.removeprefix(self.base_url)
        with self._lock:
            return [r for r in self._receipts if r.path == path]

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, _Route | None]:
        path = path.split("?", 1)[0]
        with self._lock:
            route = self._routes.get(path)
            if route is None:
                return 404, None
            verified: bool | None = None
            if route.secret is not None:
                try:
                    verify(route.secret, headers, body)
                    verified = True
                except (InvalidSignature, InvalidWebhookSecret):
                    verified = False
            status = 401 if verified is False else (route.statuses.pop(0) if route.statuses else 200)
            self._receipts.append(Receipt(path, headers, body, verified, status))
            return status, route


class _Handler(http.server.BaseHTTPRequestHandler):
    receiver: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, route = self.receiver.answer(self.path, headers, body)
        if route is not None and route.delay_s:
            time.sleep(route.delay_s)
        size = route.body_bytes if route is not None else 2
        try:
            self.send_response(status)
            for name, value in (route.headers if route is not None else {}).items():
                self.send_header(name, value)
            self.send_header("content-length", str(size))
            self.end_headers()
            for offset in range(0, size, 65536):
                self.wfile.write(b"x" * min(65536, size - offset))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender timed out and went away

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender hanging up early is part of the tests


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    recv = Receiver("")

    class Handler(_Handler):
        receiver = recv

    server = _Server(("127.0.0.1", 0), Handler)
    recv.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recv
    finally:
        server.shutdown()
        server.server_close()
