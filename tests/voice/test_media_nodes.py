"""Scale-out: `callplane serve --role api` and `callplane media` as real, separate processes sharing one database.

Calls live on the media node; the API process relays every command to it (voice_node_commands + NOTIFY on
PostgreSQL; the node's poll on SQLite) and answers with the node's outcome. sipp is the far end, events arrive at
a loopback webhook receiver through the API process's delivery worker.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callplane.core.voice.node_models import CommandStatus, MediaNode, NodeCommand
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from callplane.testing.sipp import SIPP_PCAPS, free_even_port_pair, free_udp_port, render_scenario, tone, write_rtp_pcap
from tests.contact_center.sipp import agent_phone, connected_outbound_call, end_user_phone
from tests.contact_center.support import new_center
from tests.contact_center.test_calls_e2e import ended
from tests.voice.support import Webhooks

# one worker: the two-process cluster is set up once per database (minutes on a loaded CI machine), not once per worker
pytestmark = pytest.mark.xdist_group("media-nodes")

ADMIN_TOKEN = "media-node-admin"
NODE_ID = "media-a"
TERMINAL = ("CALL_FINISHED", "CALL_FAILED")


def _free_tcp_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    """One API process and one media node, started as `callplane` commands."""

    work: Path
    env: dict[str, str]
    api_url: str
    media_health_url: str
    sip_port: int
    media_args: list[str]
    settings: Settings
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str], ready_url: str) -> None:
        with (self.work / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", "callplane", *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.work
            )
        self.processes[name] = process
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited {process.returncode}: {self.log_tail(name)}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{name} did not become ready: {self.log_tail(name)}")

    def start_media(self) -> None:
        self.start(
            "media", self.media_args, {**self.env, "CALLPLANE_SIP_PORT": str(self.sip_port)}, self.media_health_url
        )

    def kill_media(self) -> None:
        process = self.processes.pop("media")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def log_tail(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def commands(self, call_id: str) -> list[NodeCommand]:
        """The relayed commands that named `call_id` (or a dialog id) or created it (from the shared database)."""

        async def read() -> list[NodeCommand]:
            engine = create_engine(self.settings)
            try:
                async with create_session_factory(engine)() as session:
                    rows = list(await session.scalars(select(NodeCommand).order_by(NodeCommand.created_at)))
                    nodes = list(await session.scalars(select(MediaNode)))
                assert [node.id for node in nodes] == [NODE_ID]
                return [row for row in rows if call_id in str(row.arguments) or call_id in str(row.result)]
            finally:
                await engine.dispose()

        return asyncio.run(read())


def _environment(work: Path, database_url: str | None) -> dict[str, str]:
    low = random.randrange(20000, 38000, 2)
    values = {
        "CALLPLANE_ENVIRONMENT": "test",
        "CALLPLANE_DATA_DIR": str(work / "data"),  # shared: recordings, the secret key
        "CALLPLANE_ADMIN_TOKEN": ADMIN_TOKEN,
        "CALLPLANE_LOG_LEVEL": "WARNING",
        "CALLPLANE_LOG_FORMAT": "text",
        "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "CALLPLANE_TRANSCRIPTION_ENABLED": "false",
        "CALLPLANE_DELIVERY_POLL_SECONDS": "0.1",
        "CALLPLANE_VOICE_NODE_ID": NODE_ID,
        "CALLPLANE_RTP_PORT_MIN": str(low),
        "CALLPLANE_RTP_PORT_MAX": str(low + 400),
        "CALLPLANE_VOICE_NODE_HEARTBEAT_SECONDS": "1",
        "CALLPLANE_VOICE_NODE_DEAD_AFTER_SECONDS": "5",
        "CALLPLANE_VOICE_RELAY_TIMEOUT_SECONDS": "10",
    }
    if database_url:
        values["CALLPLANE_DATABASE_URL"] = database_url
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")}, **values}


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp(f"nodes-{request.param}")
    if request.param == "sqlite":
        yield from _cluster(work, None)
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url:
        yield from _cluster(work, url)


def _cluster(work: Path, database_url: str | None) -> Iterator[Cluster]:
    env = _environment(work, database_url)
    settings = Settings(environment="test", data_dir=work / "data", database_url=database_url)  # type: ignore[call-arg]
    upgrade(settings)  # once, before two processes start
    api_port, health_port = _free_tcp_port(), _free_tcp_port()
    cluster = Cluster(
        work=work,
        env=env,
        api_url=f"http://127.0.0.1:{api_port}",
        media_health_url=f"http://127.0.0.1:{health_port}/healthz",
        sip_port=free_udp_port(),
        media_args=["media", "--health-port", str(health_port)],
        settings=settings,
    )
    try:
        cluster.start(
            "api",
            ["serve", "--role", "api", "--port", str(api_port)],
            {**env, "CALLPLANE_VOICE_ENABLED": "true"},  # --role api wins: no engine in this process
            f"{cluster.api_url}/healthz",
        )
        cluster.start_media()
        yield cluster
    finally:
        cluster.stop()


@dataclass
class App:
    api: httpx.Client
    configuration_id: str
    called: str


@pytest.fixture(scope="module")
def webhooks() -> Webhooks:
    return Webhooks()


@pytest.fixture
def app(cluster: Cluster, webhooks: Webhooks) -> Iterator[App]:
    admin = Admin(cluster.api_url, ADMIN_TOKEN)
    account = admin.network()
    admin.client.close()
    with (
        httpx.Client(base_url=cluster.api_url, headers={"Authorization": f"App {account.token}"}, timeout=60) as api,
        httpx.Client(base_url=cluster.api_url, headers={"Authorization": f"Bearer {account.token}"}, timeout=60) as v1,
    ):
        created = api.post("/calls/1/configurations", json={"name": "nodes"})
        assert created.status_code == 201, created.text
        configuration_id = created.json()["id"]
        subscribed = v1.post(f"/v1/voice/configurations/{configuration_id}/subscriptions", json={"url": webhooks.url})
        assert subscribed.status_code == 201, subscribed.text
        called = f"desk-{secrets.token_hex(3)}"
        routed = v1.post(f"/v1/voice/configurations/{configuration_id}/routes", json={"called_user": called})
        assert routed.status_code == 201, routed.text
        yield App(api, configuration_id, called)


_SIPPS: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _stop_sipps() -> Iterator[None]:
    yield
    while _SIPPS:
        process = _SIPPS.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def _sipp(scenario: Path, *, extra: list[str], port: int | None = None) -> subprocess.Popen[bytes]:
    args = [
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port or free_udp_port()),
        "-mp", str(free_even_port_pair()), "-nostdin", "-trace_err", "-m", "1", "-timeout", "90s",
        "-timeout_error", *extra,
    ]  # fmt: skip
    process = subprocess.Popen(
        args, cwd=scenario.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"}
    )
    _SIPPS.append(process)
    return process


def _result(process: subprocess.Popen[bytes], timeout_s: float = 90) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output.decode(errors="replace")[-3000:]


def _caller(
    cluster: Cluster, app: App, tmp_path: Path, *, bye_timeout_ms: int, tone_ms: int = 5000
) -> subprocess.Popen[bytes]:
    """sipp calls the media node: a 700 Hz tone, then (`tone_ms` after the answer) RFC 4733 digits 1, 5, #,
    then waits for our BYE."""
    tone_pcap = tmp_path / "tone.pcap"
    write_rtp_pcap(tone_pcap, tone(700, 3.0))
    scenario = render_scenario(
        "uac_ivr.xml",
        tmp_path,
        TONE_PCAP=str(tone_pcap),
        TONE_MS=str(tone_ms),
        PCAPS=str(SIPP_PCAPS),
        BYE_TIMEOUT_MS=str(bye_timeout_ms),
    )
    return _sipp(scenario, extra=["-s", app.called, f"127.0.0.1:{cluster.sip_port}"])


def _wait_type(webhooks: Webhooks, call_id: str, event_type: str, timeout_s: float = 60) -> dict[str, Any]:
    return webhooks.wait_for(lambda e: e.get("callId") == call_id and e["type"] == event_type, timeout_s)


def _single_terminal(webhooks: Webhooks, call_id: str) -> dict[str, Any]:
    webhooks.wait_for(lambda e: e.get("callId") == call_id and e["type"] in TERMINAL, 60)
    time.sleep(1.5)  # room for a duplicate to arrive
    found = [e for e in webhooks.of_call(call_id) if e["type"] in TERMINAL]
    assert len(found) == 1, [e["type"] for e in webhooks.of_call(call_id)]
    return found[0]


def _wait_node(cluster: Cluster, *, alive: bool, timeout_s: float = 60) -> dict[str, Any]:
    """The media node as `GET /v1/admin/voice/nodes` shows it, once its `alive` is as asked."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = httpx.get(
            f"{cluster.api_url}/v1/admin/voice/nodes", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        [node] = answer.json()["nodes"]
        if node["alive"] is alive or time.monotonic() > deadline:
            assert node["alive"] is alive, node
            return dict(node)
        time.sleep(0.2)


# ---- tests --------------------------------------------------------------------------------------


def test_an_inbound_call_on_the_media_node_is_driven_through_the_api_process(
    cluster: Cluster, app: App, webhooks: Webhooks, tmp_path: Path
) -> None:
    node = _wait_node(cluster, alive=True)
    assert node["id"] == NODE_ID and node["sip_address"] == f"127.0.0.1:{cluster.sip_port}"
    sipp = _caller(cluster, app, tmp_path, bye_timeout_ms=60000)
    received = webhooks.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == app.called)
    call_id = received["callId"]
    assert received["properties"]["call"]["customData"] == {"x-customer-id": "cust-42"}

    assert app.api.post(f"/calls/1/calls/{call_id}/send-ringing").json() == {"status": "PENDING"}
    assert app.api.post(f"/calls/1/calls/{call_id}/answer", json={}).json() == {"status": "PENDING"}
    _wait_type(webhooks, call_id, "CALL_ESTABLISHED")
    # errors come back from the node as the in-process code raises them: same status, same text
    refused = app.api.post(f"/calls/1/calls/{call_id}/answer", json={})
    assert refused.status_code == 400, refused.text
    refusal = refused.json()["requestError"]["serviceException"]
    assert refusal == {"messageId": "CONFLICT", "text": "only an unanswered inbound call can be answered"}
    capture = app.api.post(
        f"/calls/1/calls/{call_id}/capture/dtmf", json={"maxLength": 4, "timeout": 20000, "terminator": "#"}
    )
    assert capture.status_code == 200, capture.text
    repeated = app.api.post(f"/calls/1/calls/{call_id}/capture/dtmf", json={"maxLength": 2, "timeout": 1000})
    assert repeated.status_code == 400, repeated.text
    assert repeated.json()["requestError"]["serviceException"] == {
        "messageId": "CONFLICT",
        "text": "a DTMF capture is already running on this call",
    }
    said = app.api.post(f"/calls/1/calls/{call_id}/say", json={"text": "Please enter your code.", "language": "en"})
    assert said.status_code == 200, said.text

    captured = _wait_type(webhooks, call_id, "DTMF_CAPTURED")
    assert captured["properties"]["dtmf"] == "15" and captured["properties"]["timeout"] is False
    live = app.api.get("/calls/1/calls", params={"callsConfigurationId": app.configuration_id}).json()
    assert [c["id"] for c in live["results"]] == [call_id] and live["results"][0]["state"] == "ESTABLISHED"

    hung = app.api.post(f"/calls/1/calls/{call_id}/hangup", json={})
    assert hung.status_code == 200 and hung.json()["id"] == call_id, hung.text
    code, output = _result(sipp)
    assert code == 0, output

    finished = _single_terminal(webhooks, call_id)
    assert finished["type"] == "CALL_FINISHED"
    assert finished["properties"]["callLog"]["hangupSource"] == "API"
    assert finished["properties"]["callLog"]["state"] == "FINISHED"
    # every command went through the table to the node: none ran in the API process
    commands = cluster.commands(call_id)
    assert [c.command for c in commands] == [
        "send_ringing", "answer", "answer", "capture_dtmf", "capture_dtmf", "say", "hangup",
    ]  # fmt: skip
    assert all(c.node_id == NODE_ID for c in commands)
    assert [c.status for c in commands].count(CommandStatus.FAILED) == 2
    missing = app.api.post("/calls/1/calls/no-such-call/hangup", json={})
    assert missing.status_code == 404, missing.text


def test_an_outbound_call_created_on_the_api_process_is_placed_by_the_media_node(
    cluster: Cluster, app: App, webhooks: Webhooks, tmp_path: Path
) -> None:
    port = free_udp_port()
    callee = _sipp(render_scenario("uas_answer.xml", tmp_path, BYE_TIMEOUT_MS="60000"), extra=["-rtp_echo"], port=port)
    time.sleep(0.3)  # sipp binds its socket
    created = app.api.post(
        "/calls/1/calls",
        json={
            "endpoint": {  # the callee checks the custom header arrives on our INVITE
                "type": "SIP",
                "username": "echo",
                "host": f"127.0.0.1:{port}",
                "customHeaders": {"X-Campaign": "campaign-7"},
            },
            "from": "alice",
            "connectTimeout": 30,
            "callsConfigurationId": app.configuration_id,
            "customData": {"order": "A1"},
        },
    )
    assert created.status_code == 201, created.text
    call = created.json()
    call_id = call["id"]
    assert call["direction"] == "OUTBOUND" and call["customData"] == {"order": "A1"}
    _wait_type(webhooks, call_id, "CALL_ESTABLISHED")

    refused = app.api.post(f"/calls/1/calls/{call_id}/answer", json={})
    assert refused.status_code == 400, refused.text
    assert "only an inbound call" in refused.json()["requestError"]["serviceException"]["text"]
    hung = app.api.post(f"/calls/1/calls/{call_id}/hangup", json={})
    assert hung.status_code == 200, hung.text
    code, output = _result(callee)
    assert code == 0, output
    finished = _single_terminal(webhooks, call_id)
    assert finished["type"] == "CALL_FINISHED" and finished["properties"]["callLog"]["hangupSource"] == "API"
    assert [(c.command, c.status) for c in cluster.commands(call_id)] == [
        ("create_call", "DONE"),  # placed by the media node: the API process has no engine
        ("answer", "FAILED"),
        ("hangup", "DONE"),
    ]


def test_a_dialog_created_through_the_api_process_is_placed_and_bridged_by_the_media_node(
    cluster: Cluster, app: App, webhooks: Webhooks, tmp_path: Path
) -> None:
    """The dialog, its child call, its propagation (the child's 180 reaches the caller, whose scenario requires
    one), its recording and its hangup all run on the node that carries the parent."""
    child_port = free_udp_port()
    child_dir = tmp_path / "child"
    child_dir.mkdir()
    child = _sipp(
        render_scenario("uas_answer.xml", child_dir, BYE_TIMEOUT_MS="90000"), extra=["-rtp_echo"], port=child_port
    )
    # The digits wait 30 s after the answer: the capture below goes out only after the child was dialled and
    # answered, DIALOG_ESTABLISHED reached the webhook and the command was relayed, which took over 15 s on a CI run
    # (two test workers). The capture waits 45 s, so a capture that starts early still hears the digits.
    caller = _caller(cluster, app, tmp_path, bye_timeout_ms=90000, tone_ms=30000)
    received = webhooks.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == app.called)
    parent_id = received["callId"]
    created = app.api.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": parent_id,
            "childCallRequest": {
                "endpoint": {
                    "type": "SIP",
                    "username": "agent",
                    "host": f"127.0.0.1:{child_port}",
                    "customHeaders": {"X-Campaign": "campaign-7"},
                }
            },
            "recording": {"recordingType": "AUDIO", "dialogComposition": {"enabled": True}},
            "maxDuration": 120,
            "propagationOptions": {"childCallRinging": True},
        },
    )
    assert created.status_code == 201, created.text
    dialog_id = created.json()["id"]
    child_id = created.json()["childCall"]["id"]
    webhooks.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_ESTABLISHED", 60)
    capture = {"maxLength": 4, "timeout": 45000, "terminator": "#"}
    assert app.api.post(f"/calls/1/calls/{parent_id}/capture/dtmf", json=capture).status_code == 200
    assert _wait_type(webhooks, parent_id, "DTMF_CAPTURED", 90)["properties"]["dtmf"] == "15"
    hung = app.api.post(f"/calls/1/dialogs/{dialog_id}/hangup")
    assert hung.status_code == 200, hung.text
    for process in (caller, child):
        code, output = _result(process)
        assert code == 0, output
    finished = webhooks.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_FINISHED", 60)
    assert finished["properties"]["hangupSource"] == "API"
    webhooks.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_RECORDING_READY", 60)
    for call_id in (parent_id, child_id):
        assert _single_terminal(webhooks, call_id)["type"] == "CALL_FINISHED"
    ran = {(c.command, c.status) for c in cluster.commands(dialog_id)} | {
        (c.command, c.status) for c in cluster.commands(parent_id)
    }
    assert {
        ("create_dialog", "DONE"),
        ("limit_dialog_duration", "DONE"),
        ("record_dialog_when_established", "DONE"),
        ("capture_dtmf", "DONE"),
        ("hangup_dialog", "DONE"),
    } <= ran, ran


def test_a_media_node_killed_mid_call_ends_the_call_once_when_it_restarts(
    cluster: Cluster, app: App, webhooks: Webhooks, tmp_path: Path
) -> None:
    sipp = _caller(cluster, app, tmp_path, bye_timeout_ms=120000)
    received = webhooks.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == app.called)
    call_id = received["callId"]
    assert app.api.post(f"/calls/1/calls/{call_id}/send-ringing").status_code == 200
    assert app.api.post(f"/calls/1/calls/{call_id}/answer", json={}).status_code == 200
    _wait_type(webhooks, call_id, "CALL_ESTABLISHED")

    cluster.kill_media()
    # the node is gone: a command is refused with a 503 (not run later), the call stays live in the meantime
    refused = app.api.post(f"/calls/1/calls/{call_id}/say", json={"text": "anyone there?", "language": "en"})
    assert refused.status_code == 503, refused.text
    assert app.api.get(f"/calls/1/calls/{call_id}").json()["state"] == "ESTABLISHED"

    # operators see the node go dead once its heartbeat is stale
    assert _wait_node(cluster, alive=False)["id"] == NODE_ID

    cluster.start_media()
    assert _wait_node(cluster, alive=True)["stopped_at"] is None
    failed = _single_terminal(webhooks, call_id)
    log = failed["properties"]["callLog"]
    assert failed["type"] == "CALL_FAILED" and log["errorCode"]["name"] == "ENGINE_RESTARTED"
    assert log["hangupSource"] == "PLATFORM"
    # the say was either refused at once (the heartbeat already stale) or written and expired unrun
    commands = [(c.command, c.status) for c in cluster.commands(call_id)]
    done = [("send_ringing", "DONE"), ("answer", "DONE")]
    assert commands in (done, [*done, ("say", "EXPIRED")]), commands
    sipp.kill()  # its dialog died with the node (no BYE can come from a new process)
    # the restarted node carries new calls
    again = _caller(cluster, app, tmp_path, bye_timeout_ms=60000)
    second = webhooks.wait_for(
        lambda e: (
            e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == app.called and e["callId"] != call_id
        )
    )
    assert app.api.post(f"/calls/1/calls/{second['callId']}/send-ringing").status_code == 200
    assert app.api.post(f"/calls/1/calls/{second['callId']}/answer", json={}).status_code == 200
    _wait_type(webhooks, second["callId"], "CALL_ESTABLISHED")
    capture = {"maxLength": 4, "timeout": 20000, "terminator": "#"}
    assert app.api.post(f"/calls/1/calls/{second['callId']}/capture/dtmf", json=capture).status_code == 200
    assert _wait_type(webhooks, second["callId"], "DTMF_CAPTURED")["properties"]["dtmf"] == "15"
    assert app.api.post(f"/calls/1/calls/{second['callId']}/hangup", json={}).status_code == 200
    code, output = _result(again)
    assert code == 0, output
    assert _single_terminal(webhooks, second["callId"])["type"] == "CALL_FINISHED"


def test_a_contact_center_agent_holds_and_transfers_through_the_api_process(cluster: Cluster, tmp_path: Path) -> None:
    """The CCAI hold and transfer routes on the API process (no engine, no contact-center runtime) are relayed to
    the media node carrying the end user's leg, whose runtime holds it and hands it to the second agent."""
    admin = Admin(cluster.api_url, ADMIN_TOKEN)
    center = new_center(admin, cluster.api_url)
    first, second = agent_phone(tmp_path / "first"), agent_phone(tmp_path / "second")
    end_user = end_user_phone(tmp_path, talk_ms=8000)
    try:
        call_id = connected_outbound_call(center, cluster.api_url, end_user, first, second)

        held = center.api.post(f"/apps/api/v1/calls/{call_id}/hold")
        assert held.status_code == 200, held.text
        again = center.api.post(f"/apps/api/v1/calls/{call_id}/hold")  # the node's answer, relayed back
        assert again.status_code == 400 and "already on hold" in again.text
        time.sleep(1.5)
        moved = center.api.post(
            f"/apps/api/v1/calls/{call_id}/transfers",
            json={"transfer_type": "cold", "agent_email": "two@somedomain.com"},
        )
        assert moved.status_code == 201, moved.text
        transferred = center.wait_call(
            call_id, lambda c: c["transfers"][0]["status"] != "transferring" and c["status"] != "assigned", 60
        )
        assert transferred["status"] == "connected" and transferred["transfers"][0]["status"] == "transferred"
        call = center.wait_call(call_id, ended, timeout_s=60)
        assert call["agent_info"]["id"] == center.agents["two@somedomain.com"]
        assert call["hold_duration"] >= 1
        for phone in (first, second, end_user):
            code, output = phone.result()
            assert code == 0, output
        relayed = {command.command for command in cluster.commands("") if command.status == "DONE"}  # all of them
        assert {"contact_center_hold", "contact_center_transfer"} <= relayed, relayed
    finally:
        for phone in (first, second, end_user):
            phone.stop()
        center.api.close()
        admin.client.close()
