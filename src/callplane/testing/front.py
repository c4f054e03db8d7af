"""A scale-out cluster on loopback for tests and bench/scale.py: PostgreSQL, API processes (`serve --role api`),
media nodes (`callplane media`) and Kamailio in front of them (`callplane sip-front`), every one a real process;
an application that answers each call it is told about (CALL_RECEIVED) through the API processes in turn; sipp
callers that go through the front door; reads of the shared database (which node carried which call)."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from callplane.core.voice.events import TERMINAL_EVENT_TYPES, VoiceEventType
from callplane.core.voice.models import VoiceCall
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.settings import Settings
from callplane.surfaces.infobip.calls_mapping import EVENT_NAMES
from callplane.testing.factories import Admin
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from callplane.testing.sipp import free_even_port_pair, free_udp_port

ADMIN_TOKEN = "scale-admin"  # noqa: S105 - the scratch cluster's own token
# The webhook names come from the Infobip surface, the only place that spells them.
TERMINAL = tuple(EVENT_NAMES[event_type] for event_type in TERMINAL_EVENT_TYPES)
RECEIVED = EVENT_NAMES[VoiceEventType.CALL_RECEIVED]

# A caller through the front door: INVITE, the answer (Record-Route kept: ACK and BYE go back through the front
# door to the node that answered), CALL_MS of call, BYE.
CALLER_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="caller through the front door">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[local_ip_type] [local_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 0
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true">
    <action>
      <ereg regexp="&lt;(sip:[^&gt;]*)&gt;" search_in="hdr" header="Contact:" assign_to="contact,contact_uri"/>
    </action>
  </recv>
  <Reference variables="contact"/>
  <send>
    <![CDATA[

      ACK [$contact_uri] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{{CALL_MS}}"/>
  <send retrans="500">
    <![CDATA[

      BYE [$contact_uri] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sip_options(port: int, host: str = "127.0.0.1", timeout_s: float = 2.0) -> int | None:
    """Send one OPTIONS and return the status code of the answer (None: no answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout_s)
        local = sock.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch={branch}\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\nTo: <sip:{host}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (host, port))
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return None
    match = re.match(rb"SIP/2\.0 (\d{3})", data)
    return int(match.group(1)) if match else None


@dataclass
class CallRow:
    id: str
    node_id: str
    state: str
    created_at: datetime
    ended_at: datetime | None
    hangup_source: str | None
    error_code: int | None
    answered_at: datetime | None = None


class Application:
    """The webhook receiver of the application: keeps every event, and answers each CALL_RECEIVED through the API
    processes in turn (so both API processes relay commands to both nodes)."""

    def __init__(self, api_urls: list[str], token: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.answers: dict[str, int] = {}  # call id -> status of the answer request
        self.retries = 0  # answer requests tried again after a 503
        self.lock = threading.Lock()
        self.clients = [
            httpx.Client(base_url=url, headers={"Authorization": f"App {token}"}, timeout=60) for url in api_urls
        ]
        self.pool = ThreadPoolExecutor(8)
        self.turn = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                self.send_response(200)
                self.end_headers()
                sink.received(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, body: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(body)
            first = body["type"] == RECEIVED and body["callId"] not in self.answers
            if first:
                self.answers[body["callId"]] = 0
                client = self.clients[self.turn % len(self.clients)]
                self.turn += 1
        if first:
            self.pool.submit(self._answer, client, body["callId"])

    def _answer(self, client: httpx.Client, call_id: str) -> None:
        """Answer as an application would: a 503 (the node did not take the command in time: a busy machine) is
        retried a few times; the last status is kept (`retries` counts the retried ones)."""
        for attempt in range(5):
            try:
                status = client.post(f"/calls/1/calls/{call_id}/answer", json={}).status_code
            except httpx.HTTPError:
                status = -1
            if status not in (503, -1):
                break
            with self.lock:
                self.retries += 1
            time.sleep(0.5 * (attempt + 1))
        with self.lock:
            self.answers[call_id] = status

    def of_call(self, call_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [event for event in self.events if event.get("callId") == call_id]

    def terminal(self, call_id: str) -> list[dict[str, Any]]:
        return [event for event in self.of_call(call_id) if event["type"] in TERMINAL]

    def wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout_s}s: {what}")
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.pool.shutdown(wait=True)
        for client in self.clients:
            client.close()


@dataclass
class Cluster:
    work: Path
    database_url: str
    env: dict[str, str]
    settings: Settings
    api_urls: list[str] = field(default_factory=list)
    node_ports: dict[str, int] = field(default_factory=dict)  # node id -> SIP port
    node_health: dict[str, int] = field(default_factory=dict)
    front_port: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    sipps: list[subprocess.Popen[bytes]] = field(default_factory=list)
    app: Application | None = None
    called: str = ""
    configuration_id: str = ""

    # ---- processes ----------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.work / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(  # noqa: S603 - our own command line
                [sys.executable, "-m", "callplane", *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.work
            )
        self.processes[name] = process
        return process

    def _ready(self, name: str, check: Callable[[], bool], timeout_s: float = 240) -> None:
        process = self.processes[name]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited {process.returncode}: {self.log_tail(name)}")
            if check():
                return
            time.sleep(0.2)
        raise AssertionError(f"{name} did not become ready: {self.log_tail(name)}")

    def spawn_api(self, name: str) -> Callable[[], None]:
        """Start an API process; returns the wait for its readiness (several can start at once)."""
        port = free_tcp_port()
        url = f"http://127.0.0.1:{port}"
        self._spawn(name, ["serve", "--role", "api", "--port", str(port)], self.env)
        self.api_urls.append(url)
        return lambda: self._ready(name, lambda: _http_ok(f"{url}/healthz"))

    def start_node(self, node_id: str) -> None:
        self.spawn_node(node_id)()

    def spawn_node(self, node_id: str) -> Callable[[], None]:
        """Start a media node; returns the wait for its readiness."""
        sip_port = self.node_ports.get(node_id) or free_udp_port()
        health = self.node_health.get(node_id) or free_tcp_port()
        self.node_ports[node_id], self.node_health[node_id] = sip_port, health
        low = 20000 + 800 * (sorted(self.node_ports).index(node_id)) + random.randrange(0, 9000, 2)  # noqa: S311
        env = {
            **self.env,
            "CALLPLANE_VOICE_NODE_ID": node_id,
            "CALLPLANE_SIP_PORT": str(sip_port),
            "CALLPLANE_RTP_PORT_MIN": str(low),
            "CALLPLANE_RTP_PORT_MAX": str(low + 600),
        }
        self._spawn(node_id, ["media", "--health-port", str(health)], env)
        return lambda: self._ready(node_id, lambda: _http_ok(f"http://127.0.0.1:{health}/healthz"))

    def start_front(self, probe_seconds: int = 1) -> None:
        self.front_port = self.front_port or free_udp_port()
        args = ["sip-front", "--listen", f"127.0.0.1:{self.front_port}", "--work-dir", str(self.work / "front")]
        args += ["--probe-seconds", str(probe_seconds)]
        for node in sorted(self.node_ports):
            args += ["--node", f"127.0.0.1:{self.node_ports[node]}"]
        self._spawn("front", args, self.env)
        self._ready("front", lambda: sip_options(self.front_port, timeout_s=0.5) == 200)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def wait_exit(self, name: str, timeout_s: float) -> int:
        process = self.processes[name]
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            raise AssertionError(f"{name} still runs: {self.log_tail(name)}") from error
        del self.processes[name]
        return code

    def log_tail(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")[-4000:]

    def front_log(self) -> str:
        return (self.work / "front.log").read_text(errors="replace")

    def front_mark(self) -> int:
        """Where Kamailio's log is now: wait_front_says(after=) looks only at what it logs from here on."""
        return len(self.front_log())

    def wait_front_says(self, text: str, *, after: int = 0, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.front_log()[after:]:
            if time.monotonic() > deadline:
                raise AssertionError(f"Kamailio never logged {text!r}: {self.front_log()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.sipps:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.app is not None:
            self.app.close()

    # ---- the application ----------------------------------------------------------------------------

    def set_up_application(self) -> Application:
        admin = Admin(self.api_urls[0], ADMIN_TOKEN)
        account = admin.network()
        admin.client.close()
        self.app = Application(self.api_urls, account.token)
        with httpx.Client(
            base_url=self.api_urls[-1], headers={"Authorization": f"Bearer {account.token}"}, timeout=60
        ) as v1:
            created = self.app.clients[0].post("/calls/1/configurations", json={"name": "front door"})
            assert created.status_code == 201, created.text
            self.configuration_id = created.json()["id"]
            subscribed = v1.post(
                f"/v1/voice/configurations/{self.configuration_id}/subscriptions", json={"url": self.app.url}
            )
            assert subscribed.status_code == 201, subscribed.text
            self.called = f"desk-{secrets.token_hex(3)}"
            routed = v1.post(
                f"/v1/voice/configurations/{self.configuration_id}/routes", json={"called_user": self.called}
            )
            assert routed.status_code == 201, routed.text
        return self.app

    def admin(self, method: str, path: str, api: int = 0) -> httpx.Response:
        return httpx.request(
            method, f"{self.api_urls[api]}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        )

    # ---- callers ------------------------------------------------------------------------------------

    def callers(self, calls: int, *, rate: float, call_ms: int, name: str) -> subprocess.Popen[bytes]:
        """sipp places `calls` calls through the front door at `rate` per second, each `call_ms` long."""
        directory = self.work / f"sipp-{name}"
        directory.mkdir()
        scenario = directory / "caller.xml"
        scenario.write_text(CALLER_SCENARIO.replace("{{CALL_MS}}", str(call_ms)))
        args = [
            "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()),
            "-mp", str(free_even_port_pair()), "-nostdin", "-trace_err", "-trace_stat", "-fd", "1",
            "-m", str(calls), "-r", str(rate), "-l", str(calls), "-timeout", "300s", "-timeout_error",
            "-s", self.called, f"127.0.0.1:{self.front_port}",
        ]  # fmt: skip
        process = subprocess.Popen(  # noqa: S603 - our own command line
            args, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"}
        )
        self.sipps.append(process)
        return process

    @staticmethod
    def finished(process: subprocess.Popen[bytes], timeout_s: float = 300) -> tuple[int, str]:
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        return process.returncode, output.decode(errors="replace")[-3000:]

    # ---- the shared database ------------------------------------------------------------------------

    def calls(self) -> list[CallRow]:
        """Every call to the application's number, oldest first, as the database has it."""

        async def read() -> list[CallRow]:
            engine = create_engine(self.settings)
            try:
                async with create_session_factory(engine)() as session:
                    rows = await session.scalars(
                        select(VoiceCall).where(VoiceCall.to_user == self.called).order_by(VoiceCall.created_at)
                    )
                    return [
                        CallRow(
                            call.id,
                            call.node_id,
                            str(call.state),
                            call.created_at,
                            call.ended_at,
                            str(call.hangup_source) if call.hangup_source else None,
                            call.error_code,
                            call.answered_at,
                        )
                        for call in rows
                    ]
            finally:
                await engine.dispose()

        return asyncio.run(read())


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def environment(work: Path, database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    values = {
        "CALLPLANE_ENVIRONMENT": "test",
        "CALLPLANE_DATABASE_URL": database_url,
        "CALLPLANE_DATA_DIR": str(work / "data"),
        "CALLPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
        "CALLPLANE_LOG_LEVEL": "WARNING",
        "CALLPLANE_LOG_FORMAT": "text",
        "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "CALLPLANE_TRANSCRIPTION_ENABLED": "false",
        "CALLPLANE_DELIVERY_POLL_SECONDS": "0.1",
        "CALLPLANE_VOICE_NODE_HEARTBEAT_SECONDS": "1",
        "CALLPLANE_VOICE_NODE_DEAD_AFTER_SECONDS": "3",
        "CALLPLANE_VOICE_RELAY_TIMEOUT_SECONDS": "15",
        **(extra or {}),
    }
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")}, **values}


@contextmanager
def cluster(
    work: Path,
    *,
    apis: int = 2,
    nodes: tuple[str, ...] = ("media-a", "media-b"),
    extra_env: dict[str, str] | None = None,
    admin_url: str | None = None,
) -> Iterator[Cluster]:
    """A scratch PostgreSQL database, `apis` API processes, the media nodes, Kamailio in front, an application."""
    work.mkdir(parents=True, exist_ok=True)
    with scratch_postgres_database(
        admin_url or os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    ) as url:
        settings = Settings(environment="test", data_dir=work / "data", database_url=url)
        upgrade(settings)  # once, before several processes start
        running = Cluster(work=work, database_url=url, env=environment(work, url, extra_env), settings=settings)
        try:
            # all at once: each spends seconds importing and connecting (far more on a loaded CI machine)
            waits = [running.spawn_api(f"api-{index + 1}") for index in range(apis)]
            waits += [running.spawn_node(node) for node in nodes]
            for wait in waits:
                wait()
            running.start_front()
            running.set_up_application()
            yield running
        finally:
            running.stop()
