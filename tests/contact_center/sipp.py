"""sipp peers for contact-center tests: the agent's phone and the end user behind a SIP trunk."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from callplane.testing.sipp import free_even_port_pair, free_udp_port
from tests.contact_center.support import END_USER, END_USER_E164, OUTBOUND, OUTBOUND_E164, Center

SCENARIOS = Path(__file__).parent / "scenarios"


@dataclass
class Peer:
    process: subprocess.Popen[bytes]
    port: int

    def result(self, timeout_s: float = 90) -> tuple[int, str]:
        try:
            output, _ = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return self.process.returncode, output.decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        self.process.communicate()


def uas(directory: Path, name: str, calls: int = 1, **values: str) -> Peer:
    """A sipp UAS for `calls` calls on its own port, its scenario's {{PLACEHOLDERS}} filled."""
    text = (SCENARIOS / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, f"unfilled placeholder in {name}"
    directory.mkdir(parents=True, exist_ok=True)
    scenario = directory / name
    scenario.write_text(text)
    port = free_udp_port()
    args = [
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_even_port_pair()),
        "-nostdin", "-trace_err", "-m", str(calls), "-timeout", "90s", "-timeout_error", "-rtp_echo",
    ]  # fmt: skip
    process = subprocess.Popen(
        args, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"}
    )
    time.sleep(0.3)  # sipp binds its socket
    return Peer(process, port)


def agent_phone(directory: Path, answer_ms: int = 500) -> Peer:
    return uas(directory / "agent", "uas_agent.xml", ANSWER_MS=str(answer_ms))


def end_user_phone(directory: Path, talk_ms: int = 2500, calls: int = 1) -> Peer:
    return uas(
        directory / "end-user",
        "uas_customer.xml",
        calls,
        TO_DIGITS=END_USER_E164.lstrip("+"),
        FROM_DIGITS=OUTBOUND_E164.lstrip("+"),
        TALK_MS=str(talk_ms),
    )


def busy_end_user(directory: Path) -> Peer:
    return uas(directory / "busy", "uas_busy.xml")


def trunk_to(center: Center, base_url: str, port: int, name: str = "carrier") -> str:
    """A static SIP trunk (E.164 numbers) to a sipp peer."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"App {center.token}"}, timeout=30) as http:
        created = http.post(
            "/calls/1/sip-trunks",
            json={
                "type": "STATIC",
                "name": name,
                "channelLimit": 10,
                "numberFormat": "E164",
                "destinationHosts": [f"127.0.0.1:{port}"],
            },
        )
        assert created.status_code in (200, 201, 202), created.text
        return str(created.json()["id"])


def wire_carrier(center: Center, base_url: str, carrier_port: int) -> str:
    """A SIP trunk to the end user's carrier (sipp) and the default outbound number that uses it."""
    trunk_id = trunk_to(center, base_url, carrier_port)
    center.admin.post(center.path("/outbound-numbers"), {"number": OUTBOUND, "trunk_id": trunk_id, "is_default": True})
    return trunk_id


def connected_outbound_call(center: Center, base_url: str, end_user: Peer, first: Peer, second: Peer) -> int:
    """Two available agents on their own sipp phones ("one@..." and "two@..."), the end user's carrier wired, and an
    outbound API call from agent one connected to the end user: its CCAI id."""
    wire_carrier(center, base_url, end_user.port)
    center.add_agent("one@somedomain.com", sip_uri=f"sip:one@127.0.0.1:{first.port}", status="available")
    center.add_agent("two@somedomain.com", sip_uri=f"sip:two@127.0.0.1:{second.port}", status="available")
    created = center.create(
        {"call_type": "Voice Outbound (API)", "agent_email": "one@somedomain.com", "end_user_number": END_USER}
    )
    assert created.status_code == 201, created.text
    call_id = int(created.json()["id"])
    connected = center.wait_call(call_id, lambda c: c["status"] in ("connected", "finished", "failed"), 60)
    assert connected["status"] == "connected", (connected["fail_reason"], connected["fail_details"])
    return call_id
