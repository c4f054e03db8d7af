"""A real server with its workers, real processed calls (the test set's spoken call, transcribed by the real model),
a failed call, a failing webhook receiver, and Debian's chromium driven by Playwright (never a downloaded browser).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import http.server
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from sqlalchemy import select

from callplane.core.transcripts.models import CallTranscript
from callplane.db.engine import create_engine, create_session_factory
from callplane.testing.factories import Admin, Network
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)
from callplane.testing.speech_calls import read_references
from tests.conftest import ADMIN_TOKEN, _settings
from tests.pipeline.conftest import FileServer, invoca_call, wait_for_outcome

CHROMIUM = os.environ.get("CALLPLANE_TEST_CHROMIUM", "/usr/bin/chromium")
TESTSET = Path(__file__).parents[1] / "transcripts" / "testset"
SPOKEN = next(ref for ref in read_references(TESTSET / "references.json") if ref.name == "en_us_cancel")
SCREENSHOTS = Path(__file__).parents[2] / "artifacts" / "console-screenshots"


class Receiver:
    """A webhook receiver on loopback that refuses (500) until told to accept."""

    def __init__(self) -> None:
        self.accepting = False
        self.received: list[bytes] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.received.append(body)
                self.send_response(204 if receiver.accepting else 500)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Console:
    """A running server and what the tests look at: one tenant's calls, another tenant, the files served."""

    database: str
    server: RunningServer
    admin: Admin
    files: FileServer
    receiver: Receiver
    network: Network
    other: Network
    spoken_call_id: str = ""
    failed_call_id: str = ""
    late_file: str = ""
    other_call_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def rewrite_first_word(self, call_id: str, text: str) -> None:
        """Put `text` in place of the first word the recognizer heard (as if it had been said)."""

        async def rewrite() -> None:
            engine = create_engine(self.server.settings)
            try:
                async with create_session_factory(engine)() as session, session.begin():
                    row = await session.scalar(select(CallTranscript).where(CallTranscript.call_id == call_id))
                    assert row is not None
                    stored = copy.deepcopy(row.transcript)
                    segment = min(
                        (segment for channel in stored["channels"] for segment in channel["segments"]),
                        key=lambda segment: segment["start_s"],
                    )
                    segment["words"][0]["text"] = text
                    segment["text"] = " ".join(word["text"] for word in segment["words"])
                    first_turn = stored["turns"][0]  # what the search index reads
                    first_turn["text"] = f"{text} {first_turn['text'].split(' ', 1)[1]}"
                    row.transcript = stored
            finally:
                await engine.dispose()

        # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, rewrite()).result()

    def screenshot(self, page: Page, name: str) -> None:
        folder = SCREENSHOTS / self.database
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _signals(admin: Admin, network: Network) -> None:
    for definition in (
        {"name": "Cancellation", "phrases": {"caller": ["want to cancel"]}},
        {"name": "Asked For Account", "phrases": {"agent": ["account number"]}},
    ):
        admin.post(f"/accounts/{network.account_id}/signal-definitions", definition)


def _submit(client: httpx.Client, network: Network, body: dict[str, Any]) -> str:
    response = client.post("/api/2022-03-01/calls.json", headers={"Authorization": network.token}, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["cuid"])


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def console(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data_dir = tmp_path_factory.mktemp(f"console-{request.param}")
    root = tmp_path_factory.mktemp(f"console-files-{request.param}")
    overrides: dict[str, Any] = {
        "workers_enabled": True,
        "worker_poll_seconds": 0.05,
        "job_backoff_base_seconds": 0.05,
        "job_backoff_cap_seconds": 0.2,
        "delivery_poll_seconds": 0.05,
        "delivery_backoff_base_seconds": 0.05,
        "delivery_backoff_cap_seconds": 0.2,
        "asr_models_dir": tmp_path_factory.getbasetemp() / "asr-models",
    }
    handler = _file_server(root)
    receiver = Receiver()
    try:
        if request.param == "sqlite":
            with running_server(_settings(data_dir, None, **overrides)) as running:
                populated = _populate(request.param, running, handler, receiver)
                yield populated
                populated.admin.client.close()
            return
        admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
        with (
            scratch_postgres_database(admin_url) as url,
            running_server(_settings(data_dir, url, **overrides)) as running,
        ):
            populated = _populate(request.param, running, handler, receiver)
            yield populated
            populated.admin.client.close()
    finally:
        handler[1].shutdown()
        handler[1].server_close()
        receiver.close()


def _file_server(root: Path) -> tuple[FileServer, http.server.ThreadingHTTPServer]:
    import functools

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return FileServer(root, f"http://127.0.0.1:{server.server_address[1]}"), server


def _populate(database: str, running: RunningServer, handler: tuple[FileServer, Any], receiver: Receiver) -> Console:
    files = handler[0]
    admin = Admin(running.base_url, ADMIN_TOKEN)
    network, other = admin.network(), admin.network()
    _signals(admin, network)
    console = Console(database, running, admin, files, receiver, network, other)
    shutil.copy(TESTSET / SPOKEN.audio, files.root / SPOKEN.audio)
    console.late_file = f"late-{secrets.token_hex(4)}.mp3"
    with httpx.Client(base_url=running.base_url, timeout=30) as client:
        hook = client.post(
            "/v1/webhook-endpoints",
            headers={"Authorization": f"Bearer {network.token}"},
            json={"url": receiver.url, "event_types": ["call.processed"]},
        )
        assert hook.status_code == 201, hook.text
        console.spoken_call_id = _submit(
            client,
            network,
            {
                "call": invoca_call(files.url(SPOKEN.audio), calling_phone_number=8005550101),
                "custom_data": [{"name": "account_type", "value": "<b>premium</b><script>window.pwned=1</script>"}],
            },
        )
        console.failed_call_id = _submit(client, network, {"call": invoca_call(files.url(console.late_file))})
        console.other_call_id = _submit(client, other, {"call": invoca_call(files.url(SPOKEN.audio))})
        for token, call_id in (
            (network.token, console.spoken_call_id),
            (network.token, console.failed_call_id),
            (other.token, console.other_call_id),
        ):
            wait_for_outcome(client, token, call_id, timeout=600)
    return console


# Per test: Playwright's sync API runs an event loop in this thread while it is started, and the next database's
# server fixture (asyncio.run for migrations and the scratch database) must not find one running.
@pytest.fixture
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Debian's chromium, never one Playwright would download; audio plays without a gesture or a sound card.
    launched = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
    )
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport={"width": 1280, "height": 900})
    made.set_default_timeout(20_000)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, console: Console, token: str) -> None:
    page.goto(f"{console.base_url}/console/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/calls")


def wait_until(condition: Any, timeout: float = 60.0, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)
