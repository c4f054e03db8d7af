"""A PHONE call placed through `/calls/1/calls` and a SIP trunk, end to end: the trunk's number format and digest
credentials reach a sipp carrier, the trunk's status counts the live call, its channel limit refuses a second."""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from infobip_api_client.exceptions import ApiException

from callplane.settings import Settings
from callplane.testing.factories import Admin
from callplane.testing.infobip import calls_api
from callplane.testing.server import running_server
from callplane.testing.sipp import free_even_port_pair, free_udp_port
from tests.voice.support import Webhooks

ADMIN_TOKEN = "trunk-e2e-admin"
SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.fixture
def webhooks() -> Iterator[Webhooks]:
    receiver = Webhooks()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def _carrier(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """sipp as a carrier: checks the numbers' format, challenges with 407, answers, waits for our BYE."""
    text = (SCENARIOS / "uas_trunk_invite.xml").read_text()
    values = {
        "TO_USER": "14155550100",
        "FROM_USER": "14155550199",
        "CODE": "407",
        "PHRASE": "Proxy Authentication Required",
        "CHALLENGE_HEADER": "Proxy-Authenticate",
        "AUTH_HEADER": "Proxy-Authorization",
    }
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    scenario = tmp_path / "carrier.xml"
    scenario.write_text(text)
    port = free_udp_port()
    process = subprocess.Popen(
        ["sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_even_port_pair()),
         "-nostdin", "-trace_logs", "-m", "1", "-timeout", "60s", "-timeout_error"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    time.sleep(0.3)  # sipp binds its port
    return process, port


def _digest_is_valid(credentials: str, *, username: str, password: str) -> bool:
    fields = {name: quoted or bare for name, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', credentials)}

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{username}:{fields['realm']}:{password}")
    ha2 = md5(f"INVITE:{fields['uri']}")
    return fields["response"] == md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")


def test_phone_call_through_a_trunk_with_digest_number_format_and_channel_limit(
    tmp_path: Path, webhooks: Webhooks
) -> None:
    low = random.randrange(20000, 38000, 2)
    settings = Settings(  # type: ignore[call-arg]
        environment="test", data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, log_level="WARNING",
        fetch_allowed_networks=["127.0.0.1/32"], workers_enabled=True, transcription_enabled=False,
        delivery_poll_seconds=0.1, voice_enabled=True, sip_port=free_udp_port(), rtp_port_min=low,
        rtp_port_max=low + 200,
    )  # fmt: skip
    carrier, carrier_port = _carrier(tmp_path)
    try:
        with running_server(settings) as server:
            admin = Admin(server.base_url, ADMIN_TOKEN)
            account = admin.network()
            calls = calls_api(server.base_url, account.token)
            app = {"Authorization": f"App {account.token}"}
            with httpx.Client(base_url=server.base_url, timeout=30) as http:
                trunk = http.post(
                    "/calls/1/sip-trunks",
                    headers=app,
                    json={
                        "type": "STATIC", "name": "carrier", "channelLimit": 1, "numberFormat": "INTERNATIONAL",
                        "destinationHosts": [f"127.0.0.1:{carrier_port}"], "username": "alice", "password": "s3cret",
                    },
                ).json()  # fmt: skip
                configuration = http.post("/calls/1/configurations", json={"name": "out"}, headers=app).json()["id"]
                subscribed = http.post(
                    f"/v1/voice/configurations/{configuration}/subscriptions",
                    json={"url": webhooks.url},
                    headers={"Authorization": f"Bearer {account.token}"},
                )
                assert subscribed.status_code == 201, subscribed.text
                request = {
                    "endpoint": {"type": "PHONE", "phoneNumber": "+1 (415) 555-0100", "sipTrunkId": trunk["id"]},
                    "from": "+14155550199",
                    "callsConfigurationId": configuration,
                }
                created = http.post("/calls/1/calls", json=request, headers=app)
                assert created.status_code == 201, created.text
                call_id = created.json()["id"]
                webhooks.wait_for(lambda e: e.get("callId") == call_id and e["type"] == "CALL_ESTABLISHED")
                assert calls.get_sip_trunk_status(trunk["id"]).active_calls == 1

                second = http.post("/calls/1/calls", json=request, headers=app)
                assert second.status_code == 400, second.text
                assert "channel" in second.json()["requestError"]["serviceException"]["text"]

                assert http.post(f"/calls/1/calls/{call_id}/hangup", json={}, headers=app).status_code == 200
                webhooks.wait_for(lambda e: e.get("callId") == call_id and e["type"] == "CALL_FINISHED")
                assert calls.get_sip_trunk_status(trunk["id"]).active_calls == 0
                calls.delete_sip_trunk(trunk["id"])
                with pytest.raises(ApiException):
                    calls.get_sip_trunk(trunk["id"])
            admin.client.close()
        output, _ = carrier.communicate(timeout=60)
    finally:
        if carrier.poll() is None:
            carrier.kill()
            carrier.communicate()
    assert carrier.returncode == 0, output.decode(errors="replace")[-3000:]
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.glob("*_logs.log"))
    logged = re.search(r"CREDENTIALS\s+(.*)", logs)
    assert logged is not None, logs
    assert _digest_is_valid(logged.group(1), username="alice", password="s3cret")
    assert json.dumps(trunk).count("s3cret") == 0
