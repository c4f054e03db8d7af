"""SIP targets and SIP header values under the Calls API, end to end (issue 12): a real server with the engine,
real sipp, on SQLite and PostgreSQL.

The server allow-lists 127.0.0.1/32 only (so sipp on loopback answers); every other loopback spelling, the
unspecified address, private and link-local ranges are refused at request time with Infobip's 400, and UDP
traps on the loopback targets prove that no packet left. Private ranges are never sent to: their refusal is
asserted by the 400 and by no call existing afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from callplane.core.voice.trunk_models import SipTrunk
from callplane.db.engine import create_engine, create_session_factory
from callplane.testing.sipp import free_even_port_pair, free_udp_port, render_scenario
from tests.voice.support import (
    STARTED_SIPPS,
    App,
    Receiver,
    VoiceServer,
    settle_then_single_terminal,
    sipp_result,
    uas,
)


@contextmanager
def udp_trap(address: str) -> Iterator[tuple[int, socket.socket]]:
    """A UDP socket on a loopback address: anything callplane sent to it would be waiting there."""
    trap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        trap.bind((address, 0))
        yield trap.getsockname()[1], trap
    finally:
        trap.close()


def assert_nothing_arrived(trap: socket.socket) -> None:
    trap.settimeout(1.0)
    with pytest.raises(TimeoutError):
        data = trap.recv(65535)
        pytest.fail(f"a packet reached the trap: {data[:200]!r}")


def service_exception(response: httpx.Response) -> dict[str, Any]:
    exception: dict[str, Any] = response.json()["requestError"]["serviceException"]
    return exception


def call_body(app: App, endpoint: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "callsConfigurationId": app.configuration_id, "connectTimeout": 10, **extra}


def no_calls_exist(app: App) -> None:
    for path in ("/calls/1/calls", "/calls/1/calls/history"):
        listed = app.http.get(path)
        assert listed.status_code == 200 and listed.json()["paging"]["totalResults"] == 0, listed.text


def test_calls_to_non_public_sip_hosts_are_refused_before_any_packet(app: App) -> None:
    with udp_trap("127.0.0.2") as (port, trap), udp_trap("127.0.0.1") as (any_port, any_trap):
        refused = {
            f"127.0.0.2:{port}": "127.0.0.2 is a loopback address",
            f"2130706434:{port}": "2130706434 resolves to 127.0.0.2, a loopback address",  # decimal
            f"0x7f.2:{port}": "0x7f.2 resolves to 127.0.0.2, a loopback address",  # hex, short
            f"127.2:{port}": "127.2 resolves to 127.0.0.2, a loopback address",  # short
            f"[::ffff:127.0.0.2]:{port}": "IPv4-mapped loopback",
            f"0.0.0.0:{any_port}": "0.0.0.0 is a unspecified address",  # Linux delivers 0.0.0.0 to this host
            f"[::1]:{port}": "::1 is a loopback address",
            "10.11.12.13:5060": "10.11.12.13 is a private address",
            "192.168.1.20": "192.168.1.20 is a private address",
            "169.254.169.254:5060": "169.254.169.254 is a link-local address",
            "[fe80::1]:5060": "fe80::1 is a link-local address",
        }
        for host, reason in refused.items():
            response = app.http.post(
                "/calls/1/calls", json=call_body(app, {"type": "SIP", "username": "bob", "host": host})
            )
            assert response.status_code == 400, (host, response.text)
            exception = service_exception(response)
            assert exception["messageId"] == "BAD_REQUEST"
            assert exception["text"].startswith(f"refusing to call SIP host {host}: "), exception
            assert reason in exception["text"] and "CALLPLANE_FETCH_ALLOWED_NETWORKS" in exception["text"]
        assert_nothing_arrived(trap)
        assert_nothing_arrived(any_trap)
    no_calls_exist(app)


def test_trunk_destinations_are_refused_at_request_time_and_again_before_the_invite(
    voice_server: VoiceServer, app: App
) -> None:
    trunk = {"type": "STATIC", "name": "carrier", "channelLimit": 2, "numberFormat": "E164"}
    for host in ("127.0.0.2:5060", "2130706434", "0x7f.2:5062", "0.0.0.0", "10.0.0.1:5060", "169.254.1.1"):
        created = app.http.post("/calls/1/sip-trunks", json=trunk | {"destinationHosts": [host]})
        assert created.status_code == 400, (host, created.text)
        exception = service_exception(created)
        assert exception["messageId"] == "BAD_REQUEST" and "refusing to call SIP trunk destination" in exception["text"]
        assert exception["validationErrors"]["destinationHosts"] == [exception["text"]]
    # every destination host is a target, not only the first
    mixed = app.http.post("/calls/1/sip-trunks", json=trunk | {"destinationHosts": ["127.0.0.1:5060", "10.9.9.9"]})
    assert mixed.status_code == 400 and "10.9.9.9 is a private address" in service_exception(mixed)["text"]
    many = app.http.post(
        "/calls/1/sip-trunks", json=trunk | {"destinationHosts": [f"pbx{i}.example.com" for i in range(11)]}
    )
    assert (
        many.status_code == 400 and "destinationHosts" in service_exception(many)["validationErrors"]
    )  # lookups bounded
    assert app.http.get("/calls/1/sip-trunks").json()["paging"]["totalResults"] == 0

    with udp_trap("127.0.0.2") as (port, trap):
        allowed = app.http.post("/calls/1/sip-trunks", json=trunk | {"destinationHosts": ["127.0.0.1:5060"]})
        assert allowed.status_code == 202, allowed.text
        trunk_id = allowed.json()["id"]
        # A trunk stored before the policy, or whose name now resolves elsewhere: the dial-time check refuses it.
        _move_trunk(voice_server, trunk_id, "127.0.0.2", port)
        phone = app.http.post(
            "/calls/1/calls",
            json=call_body(app, {"type": "PHONE", "phoneNumber": "+14155550100", "sipTrunkId": trunk_id}),
        )
        assert phone.status_code == 400, phone.text
        assert service_exception(phone)["text"].startswith(f"refusing to call SIP trunk {trunk_id} (127.0.0.2): ")
        sip = app.http.post(
            "/calls/1/calls", json=call_body(app, {"type": "SIP", "username": "pbx", "sipTrunkId": trunk_id})
        )
        assert sip.status_code == 400 and "127.0.0.2 is a loopback address" in service_exception(sip)["text"]
        assert_nothing_arrived(trap)
    status = app.http.get(f"/calls/1/sip-trunks/{trunk_id}/status")
    assert status.status_code == 200 and status.json()["activeCalls"] == 0  # no channel held by a refused call
    no_calls_exist(app)


def _move_trunk(voice_server: VoiceServer, trunk_id: str, host: str, port: int) -> None:
    async def move() -> None:
        engine = create_engine(voice_server.running.settings)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                await session.execute(update(SipTrunk).where(SipTrunk.id == trunk_id).values(host=host, port=port))
        finally:
            await engine.dispose()

    asyncio.run(move())


def test_header_injection_and_forbidden_headers_are_refused_before_any_packet(app: App) -> None:
    with udp_trap("127.0.0.1") as (port, trap):
        endpoint = {"type": "SIP", "username": "bob", "host": f"127.0.0.1:{port}"}
        injected = app.http.post(
            "/calls/1/calls",
            json=call_body(app, endpoint, fromDisplayName="Eve\r\nContact: <sip:evil@10.0.0.1>"),
        )
        assert injected.status_code == 400, injected.text
        assert "display name holds the control character '\\r'" in service_exception(injected)["text"]

        for headers, problem in (
            ({"Via": "SIP/2.0/UDP 10.0.0.1:5060"}, "custom header 'Via' is set by callplane"),
            ({"Contact": "<sip:evil@10.0.0.1>"}, "custom header 'Contact' is set by callplane"),
            ({"P-Asserted-Identity": "<sip:+14155550100@x>"}, "'P-Asserted-Identity' is set by callplane"),
            ({"m": "<sip:evil@10.0.0.1>"}, "custom header 'm' is set by callplane"),  # compact Contact
            ({"X-Evil": "a\r\nVia: SIP/2.0/UDP 10.0.0.1"}, "holds the control character '\\r'"),
            ({"Bad Name": "1"}, "is not a SIP token"),
        ):
            refused = app.http.post("/calls/1/calls", json=call_body(app, endpoint | {"customHeaders": headers}))
            assert refused.status_code == 400, (headers, refused.text)
            exception = service_exception(refused)
            assert exception["messageId"] == "BAD_REQUEST" and problem in exception["text"], exception
            assert [problem in p for p in exception["validationErrors"]["endpoint.customHeaders"]] == [True]

        for changed in ({"from": "alice\r\nVia: x"}, {"endpoint": endpoint | {"username": "bob\r\nVia: x"}}):
            refused = app.http.post("/calls/1/calls", json=call_body(app, endpoint) | changed)
            assert refused.status_code == 400 and "is not a SIP user" in service_exception(refused)["text"]
        assert_nothing_arrived(trap)
    no_calls_exist(app)


def test_a_quoted_display_name_and_an_x_header_reach_the_wire_intact(
    app: App, receiver: Receiver, tmp_path: Path
) -> None:
    port = free_udp_port()
    messages = tmp_path / "messages.log"
    scenario = render_scenario("uas_fail.xml", tmp_path, STATUS="486", PHRASE="Busy Here", CAUSE="17", REASON_TEXT="x")
    sipp = subprocess.Popen(
        [
            "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_even_port_pair()),
            "-nostdin", "-trace_err", "-m", "1", "-timeout", "30s", "-timeout_error",
            "-trace_msg", "-message_file", str(messages),
        ],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "TERM": "dumb"},
    )  # fmt: skip
    STARTED_SIPPS.append(sipp)
    time.sleep(0.3)  # sipp binds its socket
    tag = secrets.token_hex(3)
    created = app.http.post(
        "/calls/1/calls",
        json=call_body(
            app,
            {"type": "SIP", "username": "bob", "host": f"127.0.0.1:{port}", "customHeaders": {"X-Campaign": tag}},
            fromDisplayName='Eve "the boss" \\ Ops',
            **{"from": "alice"},
        ),
    )
    assert created.status_code == 201, created.text
    call_id = created.json()["id"]
    code, output = sipp_result(sipp, 40)
    assert code == 0, output
    final = settle_then_single_terminal(receiver, call_id)
    assert (final["type"], final["properties"]["callLog"]["state"]) == ("CALL_FAILED", "BUSY")

    invite = _received_invite(messages.read_text(errors="replace"))
    lines = invite.split("\r\n")
    assert lines[0] == f"INVITE sip:bob@127.0.0.1:{port} SIP/2.0"
    names = [line.split(":", 1)[0].lower() for line in lines[1:] if line and not line[0].isspace()]
    for name in ("via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "content-length"):
        assert names.count(name) == 1, (name, invite)
    [from_line] = [line for line in lines if line.lower().startswith("from:")]
    assert re.match(r'From: "Eve \\"the boss\\" \\\\ Ops" <sip:alice@', from_line), from_line
    assert f"X-Campaign: {tag}" in lines


def _received_invite(log: str) -> str:
    for block in re.split(r"-{20,}[^\n]*\n", log):
        if "message received" in block and "INVITE sip:" in block:
            return block[block.index("INVITE sip:") :].split("\n\n\n", 1)[0].replace("\r\n", "\n").replace("\n", "\r\n")
    raise AssertionError(f"sipp logged no INVITE: {log[-2000:]}")


def test_dialogs_and_connect_refuse_non_public_children_before_a_dialog_exists(
    app: App, receiver: Receiver, tmp_path: Path
) -> None:
    sipp, port = uas(tmp_path, "uas_answer.xml", BYE_TIMEOUT_MS="30000")
    parent = {"type": "SIP", "username": "parent", "host": f"127.0.0.1:{port}"}
    created = app.http.post(
        "/calls/1/calls", json=call_body(app, parent | {"customHeaders": {"X-Campaign": "campaign-7"}})
    )  # the scenario checks the header
    assert created.status_code == 201, created.text
    parent_id = created.json()["id"]
    receiver.wait_type(parent_id, "CALL_ESTABLISHED")
    child = {"endpoint": {"type": "SIP", "username": "agent", "host": "10.0.0.1:5060"}}
    dialog = app.http.post("/calls/1/dialogs", json={"parentCallId": parent_id, "childCallRequest": child})
    assert dialog.status_code == 400 and "10.0.0.1 is a private address" in service_exception(dialog)["text"]
    child_headers = {"endpoint": {"type": "SIP", "username": "agent", "host": f"127.0.0.1:{port}"}} | {
        "fromDisplayName": "a\nb"
    }
    dialog = app.http.post("/calls/1/dialogs", json={"parentCallId": parent_id, "childCallRequest": child_headers})
    assert dialog.status_code == 400 and "control character" in service_exception(dialog)["text"]
    connect = app.http.post(f"/calls/1/calls/{parent_id}/connect", json={"callRequest": child})
    assert connect.status_code == 400 and "10.0.0.1 is a private address" in service_exception(connect)["text"]
    assert app.http.get("/calls/1/dialogs").json()["paging"]["totalResults"] == 0
    assert app.http.post(f"/calls/1/calls/{parent_id}/hangup", json={}).status_code == 200
    code, output = sipp_result(sipp)
    assert code == 0, output


def test_promo_destinations_and_agent_phones_are_customer_named_targets(voice_server: VoiceServer) -> None:
    network = voice_server.admin.network()
    admin = voice_server.admin.client
    promos = f"/v1/admin/accounts/{network.account_id}/promo-numbers"
    for destination, reason in (
        ("sip:agent@10.0.0.5:5060", "10.0.0.5 is a private address"),
        ("sip:agent@0x7f.2", "0x7f.2 resolves to 127.0.0.2, a loopback address"),
        ("sip:agent@169.254.169.254", "link-local"),
    ):
        refused = admin.post(
            promos, json={"campaign_id": network.campaign_id, "number": "sales-line", "destination": destination}
        )
        assert refused.status_code == 422 and reason in refused.json()["detail"], refused.text
    allowed = admin.post(
        promos, json={"campaign_id": network.campaign_id, "number": "sales-line", "destination": "sip:a@127.0.0.1"}
    )
    assert allowed.status_code == 201, allowed.text
    agents = f"/v1/admin/accounts/{network.account_id}/contact-center/agents"
    created = admin.post(agents, json={"email": "ada@x.io", "sip_uri": "sip:ada@127.0.0.1:5070"})
    assert created.status_code == 201, created.text
    for host, reason in (("0x7f.2:5060", "0x7f.2 resolves to 127.0.0.2"), ("[::1]:5060", "::1 is a loopback")):
        moved = admin.patch(f"{agents}/{created.json()['id']}", json={"endpoint_host": host})
        assert moved.status_code == 422 and reason in moved.json()["detail"], moved.text
    refused = admin.post(agents, json={"email": "bo@x.io", "endpoint_user": "bo", "endpoint_host": "10.1.1.1"})
    assert refused.status_code == 422 and "10.1.1.1 is a private address" in refused.json()["detail"]
    assert admin.get(f"{agents}/{created.json()['id']}").json()["endpoint_host"] == "127.0.0.1:5070"
