"""The live calls page: a real sipp caller rings the built-in SIP engine, appears on the page without a reload
(server-sent events), is answered and hung up through the Calls API, and disappears; on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from callplane.settings import Settings
from callplane.testing.factories import Admin, Network
from callplane.testing.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    RunningServer,
    running_server,
    scratch_postgres_database,
)
from callplane.testing.sipp import free_even_port_pair, free_udp_port, render_scenario
from tests.console.conftest import SCREENSHOTS

ADMIN_TOKEN = "console-live-admin"


@dataclass
class VoiceConsole:
    database: str
    server: RunningServer
    sip_port: int
    network: Network


def _settings(data_dir: Path, database_url: str | None, sip_port: int) -> Settings:
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
        voice_enabled=True,
        sip_port=sip_port,
        rtp_port_min=low,
        rtp_port_max=low + 1000,
        voice_node_id="console-live",
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def voice_console(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoiceConsole]:
    data_dir = tmp_path_factory.mktemp(f"console-live-{request.param}")
    sip_port = free_udp_port()
    if request.param == "sqlite":
        with running_server(_settings(data_dir, None, sip_port)) as running:
            yield from _serving(request.param, running, sip_port)
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url, running_server(_settings(data_dir, url, sip_port)) as running:
        yield from _serving(request.param, running, sip_port)


def _serving(database: str, running: RunningServer, sip_port: int) -> Iterator[VoiceConsole]:
    admin = Admin(running.base_url, ADMIN_TOKEN)
    try:
        yield VoiceConsole(database, running, sip_port, admin.network())
    finally:
        admin.client.close()


def test_a_live_sipp_call_appears_and_disappears(voice_console: VoiceConsole, page: Page, tmp_path: Path) -> None:
    base = voice_console.server.base_url
    token = voice_console.network.token
    called = f"console-{secrets.token_hex(3)}"
    with (
        httpx.Client(base_url=base, headers={"Authorization": f"App {token}"}, timeout=30) as calls_api,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as native,
    ):
        configuration = calls_api.post("/calls/1/configurations", json={"name": "console"})
        assert configuration.status_code == 201, configuration.text
        routed = native.post(
            f"/v1/voice/configurations/{configuration.json()['id']}/routes", json={"called_user": called}
        )
        assert routed.status_code == 201, routed.text

        page.goto(f"{base}/console/login")
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name="Live").click()
        rows = page.locator("#live-calls tr[data-call-id]")
        expect(page.locator("#live-calls")).to_contain_text("No calls in progress.")
        expect(page.locator("body")).to_have_attribute("data-live-updates", re.compile(r"[1-9]"))

        # A caller that waits for our BYE (normal clearing, Q.850 cause 16) after its call is answered.
        scenario = render_scenario("uac_wait_bye.xml", tmp_path, CAUSE="16")
        sipp = ["sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port())]
        sipp += ["-mp", str(free_even_port_pair()), "-nostdin", "-m", "1", "-timeout", "60s", "-timeout_error"]
        sipp += ["-s", called, f"127.0.0.1:{voice_console.sip_port}"]
        caller = subprocess.Popen(
            sipp, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"}
        )
        try:
            expect(rows).to_have_count(1, timeout=20_000)  # appears without a reload
            call_id = rows.first.get_attribute("data-call-id")
            assert call_id
            answered = calls_api.post(f"/calls/1/calls/{call_id}/answer", json={})
            assert answered.status_code == 200, answered.text
            expect(rows.first.locator("td").first).to_have_text("ESTABLISHED", timeout=20_000)
            expect(rows.first.locator(".duration")).to_have_text(re.compile(r"^0:0\d$"))
            folder = SCREENSHOTS / voice_console.database
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / "live-call.png"), full_page=True)

            hung_up = calls_api.post(f"/calls/1/calls/{call_id}/hangup", json={})
            assert hung_up.status_code == 200, hung_up.text
            expect(rows).to_have_count(0, timeout=20_000)  # and leaves without a reload
            expect(page.locator("#live-calls")).to_contain_text("No calls in progress.")
            output, _ = caller.communicate(timeout=60)
            assert caller.returncode == 0, output.decode(errors="replace")[-2000:]
            page.goto(f"{base}/console/calls/{call_id}")  # the finished call's timeline
            timeline = page.locator("#timeline")
            expect(timeline).to_contain_text("inbound call started (sipp)")
            expect(timeline).to_contain_text("answered")
            expect(timeline).to_contain_text(re.compile(r"ended finished \(hung up by (api|platform)"))
        finally:
            if caller.poll() is None:
                caller.kill()
                caller.communicate()
