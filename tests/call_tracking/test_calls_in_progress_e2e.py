"""Call tracking and the Invoca Calls In Progress API end to end: a real server with the in-process engine, a
sipp caller dialling a campaign promo number, a sipp UAS as the campaign's destination, on SQLite and
PostgreSQL. The call is visible by every filter while it is up and gone once the caller hangs up; its recording
goes through the post-call pipeline."""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from callplane.settings import Settings
from callplane.testing.factories import Admin, Network
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)
from callplane.testing.sipp import free_even_port_pair, free_udp_port, render_scenario, tone, write_rtp_pcap
from tests.contact_center.sipp import agent_phone, end_user_phone, wire_carrier
from tests.contact_center.support import END_USER, END_USER_E164, OUTBOUND, OUTBOUND_E164, new_center

ADMIN_TOKEN = "call-tracking-admin"
VERSION = "2022-08-01"
SCENARIOS = Path(__file__).parent / "scenarios"
CALLER = "+15305550123"
DESTINATION = "+18005550100"
_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _stop_sipps() -> Iterator[None]:
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.returncode is None:
            process.kill()
        process.communicate()


@dataclass
class VoiceServer:
    running: RunningServer
    sip_port: int
    admin: Admin

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.running.base_url, timeout=30, **kwargs)


def _settings(data_dir: Path, database_url: str | None, sip_port: int) -> Settings:
    low = random.randrange(20000, 38000, 2)
    return Settings(
        environment="test",
        data_dir=data_dir,
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        log_level="WARNING",
        workers_enabled=True,
        transcription_enabled=False,
        voice_enabled=True,
        fetch_allowed_networks=["127.0.0.1/32"],  # agents/destinations are sipp on loopback (SSRF policy)
        sip_port=sip_port,
        rtp_port_min=low,
        rtp_port_max=low + 1000,
        voice_node_id="tracking-node",
        contact_center_poll_seconds=0.5,
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def voice_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoiceServer]:
    data_dir = tmp_path_factory.mktemp(f"tracking-{request.param}")
    sip_port = free_udp_port()
    if request.param == "sqlite":
        with running_server(_settings(data_dir, None, sip_port)) as running:
            yield from _serving(running, sip_port)
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url, running_server(_settings(data_dir, url, sip_port)) as running:
        yield from _serving(running, sip_port)


def _serving(running: RunningServer, sip_port: int) -> Iterator[VoiceServer]:
    admin = Admin(running.base_url, ADMIN_TOKEN)
    try:
        yield VoiceServer(running, sip_port, admin)
    finally:
        admin.client.close()


# ---- sipp ---------------------------------------------------------------------------------------------


def _render(name: str, directory: Path, **values: str) -> Path:
    text = (SCENARIOS / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, name
    target = directory / name
    target.write_text(text)
    return target


def _sipp(scenario: Path, *, port: int, extra: list[str], remote: str | None = None) -> subprocess.Popen[bytes]:
    args = [
        "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_even_port_pair()),
        "-nostdin", "-trace_err", "-m", "1", "-timeout", "90s", "-timeout_error", *extra,
    ]  # fmt: skip
    if remote:
        args.append(remote)
    process = subprocess.Popen(
        args, cwd=scenario.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"}
    )
    _STARTED.append(process)
    return process


def destination(tmp_path: Path, caller_re: str) -> tuple[subprocess.Popen[bytes], int]:
    """A sipp UAS (the campaign's destination) that echoes the audio it gets; returns it and its port."""
    port = free_udp_port()
    scenario = _render("uas_destination.xml", tmp_path, CALLER_RE=re.escape(caller_re), BYE_TIMEOUT_MS="60000")
    process = _sipp(scenario, port=port, extra=["-rtp_echo"])
    time.sleep(0.3)  # sipp binds its socket
    return process, port


def sipp_result(process: subprocess.Popen[bytes], timeout_s: float = 90) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output.decode(errors="replace")[-3000:]


def wait_until(probe: Callable[[], Any], what: str, timeout_s: float = 45) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s}s: {what}")


# ---- a tenant with marketing data ---------------------------------------------------------------------


@dataclass
class Tenant:
    network: Network
    network_external_id: str
    advertiser_external_id: str
    other_advertiser_id: str
    api: httpx.Client


@pytest.fixture
def tenant(voice_server: VoiceServer) -> Iterator[Tenant]:
    admin = voice_server.admin
    network = admin.network()
    account = admin.client.get(f"/v1/admin/accounts/{network.account_id}").json()
    organizations = admin.client.get(f"/v1/admin/accounts/{network.account_id}/organizations").json()
    advertiser = next(o for o in organizations["organizations"] if o["id"] == network.advertiser_id)
    other = admin.post(f"/accounts/{network.account_id}/organizations", {"kind": "advertiser", "external_id": "other"})
    for name in ("channel", "offer"):
        admin.post(f"/accounts/{network.account_id}/custom-data-fields", {"api_name": name})
    values = [
        ("network", None, {"account_type": "consumer", "channel": "network"}),
        ("advertiser", network.advertiser_id, {"channel": "advertiser"}),
        ("campaign", network.campaign_id, {"offer": "spring"}),
    ]
    for owner_type, owner_id, named in values:
        response = admin.client.put(
            f"/v1/admin/accounts/{network.account_id}/custom-data-values",
            json={"owner_type": owner_type, "owner_id": owner_id, "values": named},
        )
        assert response.status_code == 200, response.text
    with voice_server.http(headers={"Authorization": network.token}) as api:
        yield Tenant(network, account["external_id"], advertiser["external_id"], other["id"], api)


def current(tenant: Tenant, organization_type: str = "Network", **params: str) -> httpx.Response:
    org_id = tenant.network_external_id if organization_type.lower() == "network" else tenant.advertiser_external_id
    return tenant.api.get(
        f"/api/{VERSION}/calls_in_progress/current_calls.json",
        params={"organization_type": organization_type, "id": org_id, **params},
    )


def calls_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["current_calls"]
    return found


def _promo_number() -> tuple[str, str]:
    """A toll-free promo number: (as dialled, national digits; E.164)."""
    line = f"{random.randrange(0, 10000):04d}"
    return f"888555{line}", f"+1888555{line}"


# ---- tests --------------------------------------------------------------------------------------------


def test_a_promo_number_call_is_in_progress_by_every_filter_while_up_and_gone_after_hangup(
    voice_server: VoiceServer, tenant: Tenant, tmp_path: Path
) -> None:
    network = tenant.network
    dest_sipp, dest_port = destination(tmp_path, CALLER)
    dialled, promo_e164 = _promo_number()
    promo = voice_server.admin.post(
        f"/accounts/{network.account_id}/promo-numbers",
        {
            "campaign_id": network.campaign_id,
            "number": f"({dialled[:3]}) {dialled[3:6]}-{dialled[6:]}",
            "destination": f"sip:{DESTINATION}@127.0.0.1:{dest_port}",
            "description": "Spring radio spot",
            "external_id": "pn-77",
            "media_type": "Offline",
            "custom_data": {"channel": "radio"},
        },
    )
    assert promo["number"] == promo_e164 and promo["destination_type"] == "SIP" and promo["record"] is True
    assert calls_of(current(tenant)) == []

    tone_pcap = tmp_path / "tone.pcap"
    write_rtp_pcap(tone_pcap, tone(600, 14.0))
    caller_scenario = _render("uac_promo.xml", tmp_path, CALLER=CALLER, TONE_PCAP=str(tone_pcap), HOLD_MS="14000")
    caller = _sipp(
        caller_scenario,
        port=free_udp_port(),
        extra=["-s", dialled],
        remote=f"127.0.0.1:{voice_server.sip_port}",
    )

    listed = wait_until(
        lambda: [c for c in calls_of(current(tenant)) if c["call_status"] == "bridged"], "the call is bridged"
    )
    assert len(listed) == 1
    call = listed[0]
    transaction_id = call["transaction_id"]
    assert re.fullmatch(r"[0-9A-F]{8}-[0-9A-F]{8}", transaction_id), call
    assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{12}", call["call_record_id"]), call
    assert (call["calling_phone_number"], call["destination_phone_number"], call["called_phone_number"]) == (
        CALLER,
        DESTINATION,
        promo_e164,
    )
    assert call["external_unique_id"] is None
    assert call["bridge_start_time"] is not None and re.search(r"[+-]\d\d:\d\d$", call["bridge_start_time"])
    assert call["call_start_time_utc"].endswith("Z") and call["transfer_start_time_utc"].endswith("Z")
    assert call["advertiser_id"] == network.advertiser_id
    assert call["advertiser_id_from_network"] == tenant.advertiser_external_id
    assert call["advertiser_campaign_id"] == network.campaign_id
    assert call["advertiser_campaign_id_from_network"] == network.campaign_external_id
    assert (call["promo_number_id"], call["promo_number_description"], call["media_type"]) == (
        "pn-77",
        "Spring radio spot",
        "Offline",
    )
    # the most specific owner wins: promo number > campaign > advertiser > network
    assert call["custom_data"] == {
        "account_type": {"value": "consumer", "source": "Network"},
        "channel": {"value": "radio", "source": "VirtualLine"},
        "offer": {"value": "spring", "source": "AdvertiserCampaign"},
    }
    assert call["demographics_data"] == {}

    # by transaction id; an unknown one finds nothing
    assert [c["transaction_id"] for c in calls_of(current(tenant, transaction_id=transaction_id))] == [transaction_id]
    assert calls_of(current(tenant, transaction_id="FFFFFFFF-FFFFFFFF")) == []
    # by the phone pair, in each documented format
    for calling, dest in (
        ("530-555-0123", "800-555-0100"),
        ("5305550123", "8005550100"),
        ("+15305550123", "+18005550100"),
        ("15305550123", "18005550100"),
    ):
        found = calls_of(current(tenant, calling_phone_number=calling, destination_phone_number=dest))
        assert [c["transaction_id"] for c in found] == [transaction_id], (calling, dest)
    assert calls_of(current(tenant, calling_phone_number="530-555-0123", destination_phone_number="800-555-0101")) == []
    # the advertiser sees it; the account's other advertiser does not
    assert [c["transaction_id"] for c in calls_of(current(tenant, "Advertiser"))] == [transaction_id]
    other = tenant.api.get(
        f"/api/{VERSION}/calls_in_progress/current_calls",
        params={"organization_type": "advertiser", "id": tenant.other_advertiser_id},
    )
    assert calls_of(other) == []

    # the update: external unique id and custom data (PUT by transaction id, POST by external unique id)
    updated = tenant.api.put(
        f"/api/{VERSION}/calls_in_progress.json",
        params={"organization_type": "Network", "id": tenant.network_external_id, "transaction_id": transaction_id},
        json={"call_in_progress": {"external_unique_id": "crm-0001"}},
    )
    assert updated.status_code == 202, updated.text
    assert updated.json()["current_call"]["external_unique_id"] == "crm-0001"
    assert updated.json()["current_call"]["transaction_id"] == transaction_id
    posted = tenant.api.post(
        f"/api/{VERSION}/calls_in_progress",
        params={"organization_type": "network", "id": tenant.network_external_id, "external_unique_id": "crm-0001"},
        json={"call_in_progress": {"custom_data": [{"name": "Offer", "value": "summer"}]}},
    )
    assert posted.status_code == 202, posted.text
    assert {
        "source": "CallsInProgressAPI",
        "name": "offer",
        "value": "summer",
        "data_type": "Short Text",
    } in posted.json()["current_call"]["custom_data"]
    by_external = calls_of(current(tenant, external_unique_id="crm-0001"))
    assert [c["transaction_id"] for c in by_external] == [transaction_id]
    assert by_external[0]["custom_data"]["offer"] == {"value": "summer", "source": "CallsInProgressAPI"}
    assert calls_of(current(tenant, external_unique_id="crm-9999")) == []

    # the attribution form: identifiers and phones only
    attribution = tenant.api.get(
        f"/api/{VERSION}/calls_in_progress",
        params={"organization_type": "Network", "id": tenant.network_external_id, "transaction_id": transaction_id},
    )
    assert calls_of(attribution) == [
        {
            "transaction_id": transaction_id,
            "call_status": "bridged",
            "external_unique_id": "crm-0001",
            "calling_phone_number": CALLER,
            "destination_phone_number": DESTINATION,
            "called_phone_number": promo_e164,
            "bridge_start_time": call["bridge_start_time"],
            "call_record_id": call["call_record_id"],
            "phone_type": call["phone_type"],
        }
    ]

    # another network's token sees none of it, and may not name this network
    stranger = voice_server.admin.network()
    with voice_server.http(params={"oauth_token": stranger.token}) as foreign:
        mine = foreign.get(
            f"/api/{VERSION}/calls_in_progress/current_calls.json",
            params={"organization_type": "Network", "id": stranger.account_id, "transaction_id": transaction_id},
        )
        assert calls_of(mine) == []
        theirs = foreign.get(
            f"/api/{VERSION}/calls_in_progress/current_calls.json",
            params={"organization_type": "Network", "id": tenant.network_external_id},
        )
        assert (theirs.status_code, theirs.json()) == (401, {"error": "NotAuthorized"})

    # the caller hangs up: the destination gets our BYE and the call leaves the list
    for process in (caller, dest_sipp):
        code, output = sipp_result(process)
        assert code == 0, output
    wait_until(lambda: calls_of(current(tenant)) == [], "the call leaves the list")
    assert calls_of(current(tenant, transaction_id=transaction_id)) == []
    gone = tenant.api.put(
        f"/api/{VERSION}/calls_in_progress.json",
        params={"organization_type": "Network", "id": tenant.network_external_id, "transaction_id": transaction_id},
        json={"call_in_progress": {"external_unique_id": "crm-0002"}},
    )
    assert (gone.status_code, gone.json()) == (404, {"error": "RecordNotFound"})

    # one core Call of the campaign (native /v1/calls), whose bridged recording goes through the pipeline
    with voice_server.http(headers={"Authorization": f"Bearer {network.token}"}) as native:
        listed_core = native.get("/v1/calls", params={"campaign": network.campaign_id}).json()["calls"]
        assert len(listed_core) == 1
        call_id = listed_core[0]["id"]

        def processed() -> dict[str, Any] | None:
            found: dict[str, Any] = native.get(f"/v1/calls/{call_id}").json()
            return found if found["status"] in ("completed", "failed") else None

        core = wait_until(processed, "the post-call pipeline finishes", timeout_s=90)
        assert core["status"] == "completed", core
        assert core["origin"] == "voice" and core["recording_filename"].endswith(".wav")
        assert core["campaign"]["id"] == network.campaign_id
        assert {(c["name"], c["value"]) for c in core["custom_data"]} >= {("channel", "radio"), ("offer", "summer")}
        normalized = native.get(f"/v1/calls/{call_id}/recording")
        assert normalized.status_code == 200 and normalized.headers["content-type"] == "audio/mpeg"


def test_a_promo_number_whose_destination_is_a_phone_number_is_dialled_through_a_sip_trunk(
    voice_server: VoiceServer, tenant: Tenant, tmp_path: Path
) -> None:
    """The destination is a phone number: the call goes out through the account's SIP trunk (the sipp carrier
    sees the caller's number as From) and is in progress by its phone pair until the caller hangs up."""
    network = tenant.network
    carrier, carrier_port = destination(tmp_path, CALLER)
    with voice_server.http(headers={"Authorization": f"App {network.token}"}) as calls:
        trunk = calls.post(
            "/calls/1/sip-trunks",
            json={
                "type": "STATIC",
                "name": "carrier",
                "channelLimit": 2,
                "numberFormat": "E164",
                "destinationHosts": [f"127.0.0.1:{carrier_port}"],
            },
        )
        assert trunk.status_code in (200, 201, 202), trunk.text
    dialled, _ = _promo_number()
    promo = voice_server.admin.post(
        f"/accounts/{network.account_id}/promo-numbers",
        {
            "campaign_id": network.campaign_id,
            "number": dialled,
            "destination": "800-555-0100",
            "trunk_id": trunk.json()["id"],
        },
    )
    assert (promo["destination_type"], promo["destination"]) == ("PHONE", DESTINATION)
    tone_pcap = tmp_path / "tone.pcap"
    write_rtp_pcap(tone_pcap, tone(600, 6.0))
    caller = _sipp(
        _render("uac_promo.xml", tmp_path, CALLER=CALLER, TONE_PCAP=str(tone_pcap), HOLD_MS="6000"),
        port=free_udp_port(),
        extra=["-s", dialled],
        remote=f"127.0.0.1:{voice_server.sip_port}",
    )
    pair = {"calling_phone_number": "(530) 555-0123", "destination_phone_number": "1-800-555-0100"}
    found = wait_until(
        lambda: [c for c in calls_of(current(tenant, **pair)) if c["call_status"] == "bridged"], "bridged via the trunk"
    )
    assert [(c["calling_phone_number"], c["destination_phone_number"]) for c in found] == [(CALLER, DESTINATION)]
    for process in (caller, carrier):
        code, output = sipp_result(process)
        assert code == 0, output
    wait_until(lambda: calls_of(current(tenant, **pair)) == [], "the call leaves the list")


def test_a_busy_destination_refuses_the_caller_and_the_call_is_not_left_in_progress(
    voice_server: VoiceServer, tenant: Tenant, tmp_path: Path
) -> None:
    network = tenant.network
    port = free_udp_port()
    busy_scenario = render_scenario(
        "uas_fail.xml", tmp_path, STATUS="486", PHRASE="Busy Here", CAUSE="17", REASON_TEXT="User busy"
    )
    busy = _sipp(busy_scenario, port=port, extra=[])
    time.sleep(0.3)  # sipp binds its socket
    dialled, _ = _promo_number()
    voice_server.admin.post(
        f"/accounts/{network.account_id}/promo-numbers",
        {"campaign_id": network.campaign_id, "number": dialled, "destination": f"sip:sales@127.0.0.1:{port}"},
    )
    caller = _sipp(
        _render("uac_promo_refused.xml", tmp_path, CALLER=CALLER),
        port=free_udp_port(),
        extra=["-s", dialled],
        remote=f"127.0.0.1:{voice_server.sip_port}",
    )
    for process in (caller, busy):
        code, output = sipp_result(process)
        assert code == 0, output  # the destination was tried; the caller got 480 (cause 16)
    with voice_server.http(headers={"Authorization": f"Bearer {network.token}"}) as native:

        def ended() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = native.get("/v1/calls", params={"campaign": network.campaign_id}).json()[
                "calls"
            ]
            return [c for c in found if c["status"] == "completed"]

        assert len(wait_until(ended, "the promo-number call ends")) == 1
    assert calls_of(current(tenant)) == []


def test_a_live_calls_api_call_is_in_progress_for_its_tenant_and_can_be_annotated(
    voice_server: VoiceServer, tenant: Tenant, tmp_path: Path
) -> None:
    """A call placed through /calls/1 shows in calls in progress (its transaction id is its call id) until it ends."""
    network = tenant.network
    dest_sipp, dest_port = destination(tmp_path, "callplane")
    with voice_server.http(headers={"Authorization": f"App {network.token}"}) as calls:
        configuration = calls.post("/calls/1/configurations", json={"name": "cip"}).json()["id"]
        created = calls.post(
            "/calls/1/calls",
            json={
                "endpoint": {"type": "SIP", "username": "agent", "host": f"127.0.0.1:{dest_port}"},
                "callsConfigurationId": configuration,
            },
        )
        assert created.status_code == 201, created.text
        call_id = created.json()["id"]
        wait_until(
            lambda: calls.get(f"/calls/1/calls/{call_id}").json()["state"] == "ESTABLISHED", "the call is answered"
        )
        found = calls_of(current(tenant, transaction_id=call_id))
        assert [(c["transaction_id"], c["call_record_id"], c["call_status"]) for c in found] == [
            (call_id, call_id, "bridged")
        ]
        assert found[0]["called_phone_number"] == "agent" and found[0]["promo_number_id"] is None
        assert call_id in [c["transaction_id"] for c in calls_of(current(tenant))]
        annotated = tenant.api.post(
            f"/api/{VERSION}/calls_in_progress.json",
            params={"organization_type": "Network", "id": tenant.network_external_id, "transaction_id": call_id},
            json={"call_in_progress": {"external_unique_id": "api-call-1"}},
        )
        assert annotated.status_code == 202, annotated.text
        assert [c["transaction_id"] for c in calls_of(current(tenant, external_unique_id="api-call-1"))] == [call_id]
        # not the advertiser's: an API call belongs to no advertiser
        assert calls_of(current(tenant, "Advertiser")) == []
        assert calls.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
        code, output = sipp_result(dest_sipp)
        assert code == 0, output
        wait_until(lambda: calls_of(current(tenant, transaction_id=call_id)) == [], "the call leaves the list")


def test_a_contact_center_call_is_one_call_in_progress_of_its_tenant(voice_server: VoiceServer, tmp_path: Path) -> None:
    """An outbound contact-center call (agent rung, then the end user through a trunk, bridged) is listed once,
    by its core call id and its phone pair, while connected; not in another tenant's list; gone when it ends."""
    center = new_center(voice_server.admin, voice_server.running.base_url)
    agent = agent_phone(tmp_path)
    end_user = end_user_phone(tmp_path, talk_ms=12000)
    stranger = voice_server.admin.network()
    try:
        wire_carrier(center, voice_server.running.base_url, end_user.port)
        center.add_agent("agent@somedomain.com", endpoint_host=f"127.0.0.1:{agent.port}", status="available")
        created = center.create(
            {
                "call_type": "Voice Outbound (API)",
                "agent_email": "agent@somedomain.com",
                "end_user_number": END_USER,
                "outbound_number": OUTBOUND,
                "lang": "en",
            }
        )
        assert created.status_code == 201, created.text
        cc_id = created.json()["id"]
        center.wait_call(cc_id, lambda c: c["status"] in ("connected", "finished", "failed"))
        with voice_server.http(params={"oauth_token": center.token}) as api:
            native = api.get(
                "/v1/calls", params={"origin": "contact_center"}, headers={"Authorization": f"Bearer {center.token}"}
            )
            core_id = next(
                c["id"] for c in native.json()["calls"] if c["extras"].get("contact_center_call_id") == cc_id
            )
            path = f"/api/{VERSION}/calls_in_progress/current_calls.json"
            network = {"organization_type": "Network", "id": center.account_id}
            listed = calls_of(api.get(path, params=network))
            assert [(c["transaction_id"], c["call_status"]) for c in listed] == [(core_id, "bridged")]
            assert (listed[0]["calling_phone_number"], listed[0]["destination_phone_number"]) == (
                OUTBOUND_E164,
                END_USER_E164,
            )
            pair = {"calling_phone_number": OUTBOUND, "destination_phone_number": END_USER}
            assert [c["transaction_id"] for c in calls_of(api.get(path, params=network | pair))] == [core_id]
            by_id = calls_of(api.get(path, params=network | {"transaction_id": core_id}))
            assert [c["transaction_id"] for c in by_id] == [core_id]
            foreign = {"organization_type": "Network", "id": stranger.account_id, "oauth_token": stranger.token}
            assert calls_of(api.get(path, params=foreign | {"transaction_id": core_id})) == []
            center.wait_call(cc_id, lambda c: c["status"] in ("finished", "failed"))
            wait_until(lambda: calls_of(api.get(path, params=network)) == [], "the call leaves the list")
        for peer in (end_user, agent):
            code, output = peer.result()
            assert code == 0, output
    finally:
        agent.stop()
        end_user.stop()
        center.api.close()


def test_every_documented_and_parameter_error(voice_server: VoiceServer, tenant: Tenant) -> None:
    network_id = tenant.network_external_id
    path = f"/api/{VERSION}/calls_in_progress/current_calls.json"
    base = {"organization_type": "Network", "id": network_id}
    with voice_server.http() as anonymous:
        missing = anonymous.get(path, params=base)
        assert (missing.status_code, missing.json()) == (401, {"error": "NotAuthorized"})
        wrong = anonymous.get(path, params={**base, "oauth_token": "not-a-token"})
        assert (wrong.status_code, wrong.json()) == (401, {"error": "NotAuthorized"})
        # the token in the query, as a bare Authorization header, or as Bearer
        assert calls_of(anonymous.get(path, params={**base, "oauth_token": tenant.network.token})) == []
        bearer = anonymous.get(path, params=base, headers={"Authorization": f"Bearer {tenant.network.token}"})
        assert calls_of(bearer) == []
    assert calls_of(tenant.api.get(path.removesuffix(".json"), params=base)) == []
    # the account's own id also names the network; the advertiser's own id names the advertiser
    assert calls_of(tenant.api.get(path, params={**base, "id": tenant.network.account_id})) == []
    advertiser = {"organization_type": "Advertiser", "id": tenant.network.advertiser_id}
    assert calls_of(tenant.api.get(path, params=advertiser)) == []

    def error(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, response.json()["error"]

    assert error(tenant.api.get(path, params={**base, "id": "someone-else"})) == (401, "NotAuthorized")
    assert error(tenant.api.get(path, params={"organization_type": "Advertiser", "id": "nope"})) == (
        401,
        "NotAuthorized",
    )
    assert error(tenant.api.get(path, params={"id": network_id})) == (400, "InvalidParameters")
    assert error(tenant.api.get(path, params={**base, "organization_type": "Affiliate"})) == (400, "InvalidParameters")
    assert error(tenant.api.get(path, params={"organization_type": "Network"})) == (400, "InvalidParameters")
    one_number = tenant.api.get(path, params={**base, "calling_phone_number": "800-555-1234"})
    assert error(one_number) == (400, "InvalidParameters")
    assert "together" in one_number.json()["message"]
    other_number = tenant.api.get(path, params={**base, "destination_phone_number": "8005551234"})
    assert error(other_number) == (400, "InvalidParameters")
    bad_number = tenant.api.get(path, params={**base, "calling_phone_number": "12", "destination_phone_number": "34"})
    assert error(bad_number) == (400, "InvalidParameters")
    assert error(tenant.api.get("/api/2019-01-01/calls_in_progress/current_calls.json", params=base)) == (
        400,
        "InvalidApiVersion",
    )
    # the attribution form needs a transaction id
    attribution = f"/api/{VERSION}/calls_in_progress.json"
    assert error(tenant.api.get(attribution, params=base)) == (400, "InvalidParameters")
    assert calls_of(tenant.api.get(attribution, params={**base, "transaction_id": "ABCD1234-ABCD1234"})) == []
    # the update: 404 when no live call matches, 400 for what cannot be applied, 401 without a token
    body = {"call_in_progress": {"external_unique_id": "x-1"}}
    for method in ("PUT", "POST"):
        unknown = tenant.api.request(
            method, attribution, params={**base, "transaction_id": "ABCD1234-ABCD1234"}, json=body
        )
        assert (unknown.status_code, unknown.json()) == (404, {"error": "RecordNotFound"})
        by_external = tenant.api.request(
            method, attribution, params={**base, "external_unique_id": "nobody"}, json=body
        )
        assert (by_external.status_code, by_external.json()) == (404, {"error": "RecordNotFound"})
    assert error(tenant.api.put(attribution, params=base, json=body)) == (400, "InvalidParameters")
    with_id = {**base, "transaction_id": "ABCD1234-ABCD1234"}
    assert error(tenant.api.put(attribution, params=with_id, json={"call": {}})) == (400, "InvalidParameters")
    assert error(tenant.api.put(attribution, params=with_id, content=b"{not json")) == (400, "InvalidParameters")
    assert error(tenant.api.put(attribution, params=with_id, json={"call_in_progress": {}})) == (
        400,
        "InvalidParameters",
    )
    undefined = {"call_in_progress": {"custom_data": [{"name": "no_such_field", "value": "1"}]}}
    refused = tenant.api.put(attribution, params=with_id, json=undefined)
    assert error(refused) == (400, "InvalidParameters") and "no_such_field" in refused.json()["message"]
    with voice_server.http() as anonymous:
        assert error(anonymous.put(attribution, params=with_id, json=body)) == (401, "NotAuthorized")
        token_in_body = {**body, "oauth_token": tenant.network.token}
        assert anonymous.put(attribution, params=with_id, json=token_in_body).status_code == 404


def test_promo_numbers_and_custom_data_values_through_the_admin_api(voice_server: VoiceServer, tenant: Tenant) -> None:
    network = tenant.network
    client = voice_server.admin.client
    promos = f"/v1/admin/accounts/{network.account_id}/promo-numbers"
    dialled, e164 = _promo_number()
    created = client.post(
        promos, json={"campaign_id": network.campaign_id, "number": dialled, "destination": "sip:agent@127.0.0.1:5999"}
    )
    assert created.status_code == 201, created.text
    promo = created.json()
    assert (promo["number"], promo["destination_type"], promo["custom_data"]) == (e164, "SIP", {})
    again = client.post(
        promos, json={"campaign_id": network.campaign_id, "number": e164, "destination": "sip:agent@127.0.0.1:5999"}
    )
    assert again.status_code == 409
    # a phone destination needs a trunk of the account; a malformed destination or number is refused
    phone = client.post(
        promos, json={"campaign_id": network.campaign_id, "number": "sales-line", "destination": "800-555-0100"}
    )
    assert phone.status_code == 422 and "trunk_id" in phone.json()["detail"]
    bad = client.post(promos, json={"campaign_id": network.campaign_id, "number": "x y", "destination": "sip:a@b"})
    assert bad.status_code == 422
    bad_destination = client.post(
        promos, json={"campaign_id": network.campaign_id, "number": "sales-line", "destination": "sip:nohost"}
    )
    assert bad_destination.status_code == 422
    assert client.post(promos, json={"campaign_id": "nope", "number": "x", "destination": "sip:a@b"}).status_code == 404
    assert [p["id"] for p in client.get(promos).json()["promo_numbers"]] == [promo["id"]]
    values = f"/v1/admin/accounts/{network.account_id}/custom-data-values"
    set_values = client.put(
        values, json={"owner_type": "promo_number", "owner_id": promo["id"], "values": {"channel": "tv"}}
    )
    assert set_values.json()["values"] == {"channel": "tv"}
    assert client.get(f"{promos}/{promo['id']}").json()["custom_data"] == {"channel": "tv"}
    cleared = client.put(
        values, json={"owner_type": "promo_number", "owner_id": promo["id"], "values": {"channel": None}}
    )
    assert cleared.json()["values"] == {}
    undefined = client.put(values, json={"owner_type": "network", "values": {"undefined_field": "1"}})
    assert undefined.status_code == 422
    network_values = client.get(values, params={"owner_type": "network"}).json()["values"]
    assert network_values == {"account_type": "consumer", "channel": "network"}
    assert client.get(values, params={"owner_type": "campaign", "owner_id": "nope"}).status_code == 404
    assert client.delete(f"{promos}/{promo['id']}").status_code == 200
    assert client.get(f"{promos}/{promo['id']}").status_code == 404
