"""`callplane demo-setup` prints a voice section whose key works as `Authorization: App <key>` on /calls/1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from callplane.settings import Settings
from callplane.testing.server import running_server


def test_demo_setup_voice_section_opens_the_calls_api(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CALLPLANE_")}
    env |= {"CALLPLANE_DATA_DIR": str(tmp_path), "CALLPLANE_LOG_LEVEL": "WARNING", "CALLPLANE_SIP_PORT": "5099"}
    printed = subprocess.run(
        [sys.executable, "-m", "callplane", "demo-setup", "--base-url", "http://127.0.0.1:9000/"],
        env=env,
        check=True,
        capture_output=True,
    ).stdout
    voice = json.loads(printed)["voice"]
    assert voice["base_url"] == "http://127.0.0.1:9000" and voice["sip_address"] == "sip:127.0.0.1:5099"
    assert voice["headers"] == {"Authorization": f"App {voice['api_key']}"}
    settings = Settings(data_dir=tmp_path, log_level="WARNING", workers_enabled=False)  # type: ignore[call-arg]
    with running_server(settings) as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
        listed = http.get("/calls/1/sip-trunks", headers=voice["headers"])
        assert listed.status_code == 200 and listed.json()["paging"]["totalResults"] == 0
        assert http.get("/calls/1/files", headers={"Authorization": "App not-the-key"}).status_code == 401
