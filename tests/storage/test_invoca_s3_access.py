"""Invoca's direct recording access to a customer's own S3 bucket (moto's server on loopback): configured per
account in the admin API, used for calls with a recording_filename or none (the external id is the file name),
with the refusals and retries of recording URLs."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from callplane.testing.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from tests.pipeline.conftest import make_tone, wait_for_outcome
from tests.storage.conftest import S3Pipeline

URL = "/api/2022-03-01/calls.json"
BASE_CALL = {
    "start_time": 1460404800,
    "destination_phone_number": 9093900003,
    "calling_phone_number": 8779257384,
    "advertiser_campaign_id_from_network": 86,
    "call_direction": "inbound",
}


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("invoca-s3") / "stereo.wav"
    make_tone(path, left_hz=440, right_hz=1000)
    return path.read_bytes()


def _access(s3_server: S3Server, bucket: str, **overrides: Any) -> dict[str, Any]:
    values = {
        "bucket": bucket,
        "region": REGION,
        "prefix": "/invoca/recordings/",
        "endpoint_url": s3_server.endpoint_url,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
    }
    return values | overrides


def _submit(client: httpx.Client, token: str, **fields: Any) -> str:
    call = BASE_CALL | {"external_call_unique_id": secrets.token_hex(5)} | fields
    response = client.post(URL, headers={"Authorization": token}, json={"call": call})
    assert response.status_code == 201, response.text
    return str(response.json()["cuid"])


def test_calls_are_fetched_from_the_customers_bucket(
    s3_pipeline: S3Pipeline, s3_server: S3Server, stereo_wav: bytes
) -> None:
    network = s3_pipeline.admin.network()
    bucket = s3_server.new_bucket()
    external_id = f"inv-{secrets.token_hex(4)}"
    with contextlib.closing(s3_server.client()) as s3:
        s3.put_object(Bucket=bucket, Key="invoca/recordings/2024/06/a.wav", Body=stereo_wav)
        s3.put_object(Bucket=bucket, Key=f"invoca/recordings/{external_id}", Body=stereo_wav)
    admin = s3_pipeline.admin.client
    path = f"/v1/admin/accounts/{network.account_id}/s3-access"
    assert admin.get(path).status_code == 404
    stored = admin.put(path, json=_access(s3_server, bucket))
    assert stored.status_code == 200, stored.text
    assert stored.json()["prefix"] == "invoca/recordings" and stored.json()["secret_access_key_set"] is True
    assert SECRET_KEY not in stored.text and SECRET_KEY not in admin.get(path).text
    assert httpx.get(f"{s3_pipeline.server.base_url}{path}").status_code == 401  # admin only

    with httpx.Client(base_url=s3_pipeline.server.base_url, timeout=30) as client:
        named = _submit(client, network.token, recording_filename="2024/06/a.wav")
        by_external_id = _submit(client, network.token, external_call_unique_id=external_id)
        missing = _submit(client, network.token, recording_filename="2024/06/nope.wav")
        escaping = _submit(client, network.token, recording_filename="../../other-tenant/a.wav")
        for call_id in (named, by_external_id):
            done = wait_for_outcome(client, network.token, call_id)
            assert done["status"] == "completed", done
            assert done["recording"]["channels"] == 2 and done["recording"]["original"]["format"] == "wav"
        failed = wait_for_outcome(client, network.token, missing)
        assert failed["status"] == "failed" and "nope.wav" in failed["status_reason"]
        assert failed["jobs"][0]["attempts"] == 1  # a missing object is not retried, as a 404 URL is not
        refused = wait_for_outcome(client, network.token, escaping)
        assert refused["status"] == "failed" and "leaves the base folder" in refused["status_reason"]

    assert admin.delete(path).status_code == 204
    assert admin.get(path).status_code == 404


def test_a_private_endpoint_is_refused_like_a_private_url(s3_pipeline: S3Pipeline, s3_server: S3Server) -> None:
    network = s3_pipeline.admin.network()
    access = _access(s3_server, "any-bucket", endpoint_url="http://10.255.255.1:9000")
    s3_pipeline.admin.client.put(f"/v1/admin/accounts/{network.account_id}/s3-access", json=access).raise_for_status()
    with httpx.Client(base_url=s3_pipeline.server.base_url, timeout=30) as client:
        failed = wait_for_outcome(client, network.token, _submit(client, network.token, recording_filename="a.wav"))
    assert failed["status"] == "failed" and "10.255.255.1" in failed["status_reason"]
    assert failed["jobs"][0]["attempts"] == 1


def test_an_unreachable_endpoint_is_retried_then_fails(s3_pipeline: S3Pipeline, s3_server: S3Server) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    network = s3_pipeline.admin.network()
    access = _access(s3_server, "any-bucket", endpoint_url=f"http://127.0.0.1:{closed}")
    s3_pipeline.admin.client.put(f"/v1/admin/accounts/{network.account_id}/s3-access", json=access).raise_for_status()
    with httpx.Client(base_url=s3_pipeline.server.base_url, timeout=30) as client:
        failed = wait_for_outcome(client, network.token, _submit(client, network.token, recording_filename="a.wav"))
    job = failed["jobs"][0]
    assert failed["status"] == "failed" and "connection" in failed["status_reason"].lower()
    assert job["attempts"] == job["max_attempts"] > 1  # transient: retried with backoff like a URL fetch


def test_admin_input_is_checked(s3_pipeline: S3Pipeline, s3_server: S3Server) -> None:
    network = s3_pipeline.admin.network()
    path = f"/v1/admin/accounts/{network.account_id}/s3-access"
    bad_endpoint = s3_pipeline.admin.client.put(path, json=_access(s3_server, "b", endpoint_url="ftp://x"))
    assert bad_endpoint.status_code == 422 and "endpoint" in bad_endpoint.text
    no_account = s3_pipeline.admin.client.put("/v1/admin/accounts/nope/s3-access", json=_access(s3_server, "b"))
    assert no_account.status_code == 404


def test_the_cli_sets_the_same_configuration(s3_pipeline: S3Pipeline, s3_server: S3Server) -> None:
    network = s3_pipeline.admin.network()
    settings = s3_pipeline.server.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")}
    env |= {"CALLPLANE_DATA_DIR": str(settings.data_dir), "CALLPLANE_ENVIRONMENT": "test"}
    if settings.database_url:
        env["CALLPLANE_DATABASE_URL"] = settings.database_url
    command = [
        str(Path(sys.executable).with_name("callplane")),
        "admin",
        "set-s3-access",
        f"--account-id={network.account_id}",
        "--bucket=cli-bucket",
        f"--access-key-id={ACCESS_KEY}",
        f"--secret-access-key={SECRET_KEY}",
        "--prefix=calls",
        f"--endpoint-url={s3_server.endpoint_url}",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert SECRET_KEY not in done.stdout
    shown = s3_pipeline.admin.client.get(f"/v1/admin/accounts/{network.account_id}/s3-access").json()
    assert shown["bucket"] == "cli-bucket" and shown["prefix"] == "calls" and shown["secret_access_key_set"] is True
