"""Calls that name a recording_filename are fetched over SFTP from a real OpenSSH server on loopback."""

from __future__ import annotations

import secrets
import shutil

import httpx

from tests.pipeline.conftest import FileServer, Pipeline, wait_for_outcome
from tests.recordings.recordings_support import Sshd, sshd

__all__ = ["sshd"]  # the session fixture: a real sshd with a pinned host key and an authorized user key


def test_recording_filename_over_sftp(pipeline: Pipeline, files: FileServer, sshd: Sshd) -> None:
    network = pipeline.admin.network()
    base_dir = sshd.root / f"calls-{secrets.token_hex(3)}"
    base_dir.mkdir()
    external_id = f"sftp-{secrets.token_hex(4)}"
    shutil.copy(files.root / "stereo.wav", base_dir / external_id)
    access = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "username": sshd.username,
        "known_host_key": sshd.host_public_key,
        "base_dir": str(base_dir),
        "private_key": sshd.user_private_key,
    }
    stored = pipeline.admin.client.put(f"/v1/admin/accounts/{network.account_id}/sftp-access", json=access)
    assert stored.status_code == 200 and stored.json()["private_key_set"] is True
    assert "private_key" not in stored.json() and sshd.user_private_key not in stored.text
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        base = {
            "start_time": 1460404800,
            "destination_phone_number": 9093900003,
            "calling_phone_number": 8779257384,
            "advertiser_campaign_id_from_network": 86,
            "call_direction": "inbound",
        }
        by_default_name = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token},
            json={"call": base | {"external_call_unique_id": external_id}},
        )
        missing = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token},
            json={"call": base | {"external_call_unique_id": secrets.token_hex(4), "recording_filename": "nope.wav"}},
        )
        done = wait_for_outcome(client, network.token, by_default_name.json()["cuid"])
        assert done["status"] == "completed" and done["recording"]["channels"] == 2
        failed = wait_for_outcome(client, network.token, missing.json()["cuid"])
        assert failed["status"] == "failed" and "nope.wav" in failed["status_reason"]


def test_wrong_host_key_is_refused(pipeline: Pipeline, files: FileServer, sshd: Sshd) -> None:
    import asyncssh

    network = pipeline.admin.network()
    impostor_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    pipeline.admin.client.put(
        f"/v1/admin/accounts/{network.account_id}/sftp-access",
        json={
            "host": "127.0.0.1",
            "port": sshd.port,
            "username": sshd.username,
            "known_host_key": impostor_key,
            "base_dir": str(sshd.root),
            "private_key": sshd.user_private_key,
        },
    ).raise_for_status()
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        response = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token},
            json={
                "call": {
                    "external_call_unique_id": secrets.token_hex(4),
                    "start_time": 1460404800,
                    "destination_phone_number": 9093900003,
                    "calling_phone_number": 8779257384,
                    "advertiser_campaign_id_from_network": 86,
                    "call_direction": "inbound",
                    "recording_filename": "x.wav",
                }
            },
        )
        failed = wait_for_outcome(client, network.token, response.json()["cuid"])
        assert failed["status"] == "failed" and "host key" in failed["status_reason"].lower()
