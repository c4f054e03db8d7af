"""Voice test helpers: a migrated SQLite database with one account, loopback webhook receivers, and what the sipp
end-to-end tests of the Calls API share (a server with the engine, an application, sipp runs and their results)."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import random
import secrets
import subprocess
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from infobip_api_client.api.calls_api import CallsApi
from infobip_api_client.models.calls_billing_package import CallsBillingPackage
from infobip_api_client.models.calls_sip_trunk_type import CallsSipTrunkType
from infobip_api_client.models.calls_static_sip_trunk_request import CallsStaticSipTrunkRequest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.tenancy.models import AccountKind
from callplane.core.tenancy.service import create_account
from callplane.core.webhooks.signing import verify
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.s3 import S3Server, local_voice_files
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)
from callplane.testing.sipp import free_even_port_pair, free_udp_port, render_scenario, tone


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


# ---- the Calls API end to end with sipp: a server with the engine per database, a receiver, an application ----

ADMIN_TOKEN = "voice-e2e-admin"
TERMINAL = ("CALL_FINISHED", "CALL_FAILED")
VOICE_SCENARIOS = Path(__file__).parent / "scenarios"
STARTED_SIPPS: list[subprocess.Popen[bytes]] = []  # killed after each test by conftest's stop_sipps


@dataclass
class Receiver:
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    basic: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, call_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            bodies = [json.loads(body) for _, body in self.received]
        return [body for body in bodies if call_id is None or body.get("callId") == call_id]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 40) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no matching event within {timeout_s}s; got {[e['type'] for e in self.events()]}")

    def wait_type(self, call_id: str, event_type: str, timeout_s: float = 40) -> dict[str, Any]:
        return self.wait_for(lambda e: e.get("callId") == call_id and e["type"] == event_type, timeout_s)


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A loopback receiver: events POSTed to /events (and a second subscription's to /basic), audio for GETs."""
    sink = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with sink.lock:
                if self.path == "/basic":  # a second subscription's copies, kept apart
                    sink.basic.append(({k.lower(): v for k, v in self.headers.items()}, body))
                else:
                    sink.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:  # audio for play-by-URL
            body = sink.files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("content-type", "audio/wav")
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class VoiceServer:
    running: RunningServer
    sip_port: int
    admin: Admin


def voice_settings(data_dir: Path, database_url: str | None, sip_port: int) -> Settings:
    low = random.randrange(20000, 38000, 2)
    return Settings(
        environment="test",
        data_dir=data_dir,
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        log_level="WARNING",
        fetch_allowed_networks=["127.0.0.1/32"],
        workers_enabled=True,
        transcription_enabled=False,
        delivery_poll_seconds=0.1,
        voice_enabled=True,
        sip_port=sip_port,
        rtp_port_min=low,
        rtp_port_max=low + 1000,
        voice_node_id="test-node",
    )


def serving(running: RunningServer, sip_port: int) -> Iterator[VoiceServer]:
    admin = Admin(running.base_url, ADMIN_TOKEN)
    try:
        yield VoiceServer(running, sip_port, admin)
    finally:
        admin.client.close()


DATABASES = ["sqlite", "postgresql"]
VOICE_S3_PREFIX = "voice-e2e"  # where the "postgresql-s3" servers keep recordings and files in their bucket


def voice_server_fixture(*, with_s3: bool = False) -> Any:  # pytest's fixture type is private
    """A module-scoped `voice_server` fixture: the server with the engine on SQLite and on PostgreSQL and, `with_s3`,
    on PostgreSQL with recordings, compositions and files in a fresh bucket on moto's server ("postgresql-s3"),
    checked once the server has stopped: everything it stored is in the bucket, nothing only on its disk. Each test
    that runs on the bucket keeps a file there: xdist may give a worker's bucket server just one of them."""
    params = [*DATABASES, *(["postgresql-s3"] if with_s3 else [])]

    @pytest.fixture(scope="module", params=params)
    def voice_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoiceServer]:
        data_dir = tmp_path_factory.mktemp(f"voice-{request.param}")
        sip_port = free_udp_port()
        with ExitStack() as stack:
            url = None
            if request.param != "sqlite":
                admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
                url = stack.enter_context(scratch_postgres_database(admin_url))
            settings = voice_settings(data_dir, url, sip_port)
            if request.param == "postgresql-s3":
                s3: S3Server = request.getfixturevalue("s3_server")
                bucket = s3.new_bucket()
                settings = settings.model_copy(update=s3.settings(bucket, VOICE_S3_PREFIX))
                # registered before the server is started, so it runs once the server has stopped (uploads done)
                stack.callback(assert_stored_in_the_bucket, s3, bucket, data_dir)
            running = stack.enter_context(running_server(settings))
            yield from serving(running, sip_port)

    return voice_server


def assert_stored_in_the_bucket(s3: S3Server, bucket: str, data_dir: Path) -> None:
    """The bucket holds the server's voice files; a file left on its disk is only a fetched copy of one of them."""
    keys = s3.keys(bucket, VOICE_S3_PREFIX)
    assert keys, "nothing was stored in the bucket"
    only_on_disk = [
        path
        for path in local_voice_files(data_dir)
        if f"{VOICE_S3_PREFIX}/{path.relative_to(data_dir).as_posix()}" not in keys
    ]
    assert only_on_disk == [], f"stored on local disk, not in the bucket: {only_on_disk}"


@dataclass
class App:
    """One account's application: its API key, a calls configuration subscribed to the receiver."""

    http: httpx.Client
    native: httpx.Client
    configuration_id: str
    secret: str


def run_sipp(scenario: Path, *, remote: str | None, extra: list[str]) -> subprocess.Popen[bytes]:
    args = [
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mp", str(free_even_port_pair()), "-nostdin", "-trace_err", "-m", "1", "-timeout", "60s",
        "-timeout_error", *extra,
    ]  # fmt: skip
    if remote:
        args.append(remote)
    process = subprocess.Popen(
        args, cwd=scenario.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"}
    )
    STARTED_SIPPS.append(process)
    return process


def sipp_result(process: subprocess.Popen[bytes], timeout_s: float = 60) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output.decode(errors="replace")[-3000:]


def uas(tmp_path: Path, name: str, **values: str) -> tuple[subprocess.Popen[bytes], int]:
    """A sipp UAS listening on its own port; returns the process and the port."""
    port = free_udp_port()
    scenario = render_scenario(name, tmp_path, **values)
    args = [
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_even_port_pair()),
        "-nostdin", "-trace_err", "-m", "1", "-timeout", "60s", "-timeout_error", "-rtp_echo",
    ]  # fmt: skip
    process = subprocess.Popen(
        args,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TERM": "dumb"},
    )
    STARTED_SIPPS.append(process)
    time.sleep(0.3)  # sipp binds its socket
    return process, port


def check_signed(receiver: Receiver, secret: str, call_id: str) -> None:
    with receiver.lock:
        received = list(receiver.received)
    signed = [(h, b) for h, b in received if json.loads(b).get("callId") == call_id]
    assert signed
    for headers, body in signed:
        verify(secret, headers, body)


def terminal_events(receiver: Receiver, call_id: str) -> list[dict[str, Any]]:
    return [event for event in receiver.events(call_id) if event["type"] in TERMINAL]


def settle_then_single_terminal(receiver: Receiver, call_id: str) -> dict[str, Any]:
    """Exactly one terminal event, even after a second to let any duplicate arrive."""
    receiver.wait_for(lambda e: e.get("callId") == call_id and e["type"] in TERMINAL)
    time.sleep(1.0)
    found = terminal_events(receiver, call_id)
    assert len(found) == 1, [e["type"] for e in receiver.events(call_id)]
    return found[0]


def fresh_dir(tmp_path: Path) -> Path:
    directory = tmp_path / secrets.token_hex(3)
    directory.mkdir()
    return directory


def static_trunk(calls: CallsApi, port: int) -> str:
    trunk = calls.create_sip_trunk(
        CallsStaticSipTrunkRequest(
            name=f"sipp-{port}",
            channel_limit=2,
            billing_package=CallsBillingPackage(package_type="METERED"),
            destination_hosts=[f"127.0.0.1:{port}"],
            codecs=["PCMU", "PCMA"],
            type=CallsSipTrunkType.STATIC,
        )
    )
    return str(trunk.id)


def render_voice_scenario(name: str, directory: Path, **values: str) -> Path:
    text = (VOICE_SCENARIOS / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, name
    target = directory / name
    target.write_text(text)
    return target


def upload_tone_file(http: httpx.Client, directory: Path, frequency_hz: float, seconds: float) -> str:
    """A tone as a WAV file uploaded through the Infobip files API: its file id (for play / say into calls)."""
    path = directory / f"tone-{int(frequency_hz)}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(tone(frequency_hz, seconds).tobytes())
    with path.open("rb") as handle:
        uploaded = http.post("/calls/1/files", files={"file": (path.name, handle, "audio/wav")})
    assert uploaded.status_code == 200, uploaded.text
    return str(uploaded.json()["id"])
