"""Invoca's direct recording access to a customer's Azure Blob container, against Azurite on loopback: account
key and SAS token, the default file name (the external id), and the URL fetch's refusals."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from tests.pipeline.conftest import make_tone, wait_for_outcome
from tests.storage.conftest import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, S3Pipeline

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
    path = tmp_path_factory.mktemp("invoca-azure") / "stereo.wav"
    make_tone(path, left_hz=440, right_hz=1000)
    return path.read_bytes()


def _container(azurite: Azurite, blobs: dict[str, bytes]) -> str:
    name = f"rec-{secrets.token_hex(5)}"
    key = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
    service = BlobServiceClient(azurite.blob_endpoint, credential=key)
    with service:
        container = service.create_container(name)
        for blob, data in blobs.items():
            container.upload_blob(blob, data)
    return name


def _submit(client: httpx.Client, token: str, **fields: Any) -> str:
    call = BASE_CALL | {"external_call_unique_id": secrets.token_hex(5)} | fields
    response = client.post(URL, headers={"Authorization": token}, json={"call": call})
    assert response.status_code == 201, response.text
    return str(response.json()["cuid"])


def _access(azurite: Azurite, container: str, **overrides: Any) -> dict[str, Any]:
    values = {
        "storage_account": AZURITE_ACCOUNT,
        "container": container,
        "prefix": "calls",
        "endpoint_url": azurite.blob_endpoint,
        "credential_kind": "key",
        "credential": AZURITE_KEY,
    }
    return values | overrides


def test_calls_are_fetched_from_the_customers_container(
    s3_pipeline: S3Pipeline, azurite: Azurite, stereo_wav: bytes
) -> None:
    network = s3_pipeline.admin.network()
    external_id = f"az-{secrets.token_hex(4)}"
    container = _container(azurite, {"calls/2024/b.wav": stereo_wav, f"calls/{external_id}": stereo_wav})
    admin = s3_pipeline.admin.client
    path = f"/v1/admin/accounts/{network.account_id}/azure-blob-access"
    assert admin.get(path).status_code == 404
    stored = admin.put(path, json=_access(azurite, container))
    assert stored.status_code == 200, stored.text
    assert stored.json()["credential_set"] is True and AZURITE_KEY not in stored.text
    with httpx.Client(base_url=s3_pipeline.server.base_url, timeout=30) as client:
        named = _submit(client, network.token, recording_filename="2024/b.wav")
        by_external_id = _submit(client, network.token, external_call_unique_id=external_id)
        missing = _submit(client, network.token, recording_filename="2024/nope.wav")
        escaping = _submit(client, network.token, recording_filename="../x.wav")
        for call_id in (named, by_external_id):
            done = wait_for_outcome(client, network.token, call_id)
            assert done["status"] == "completed", done
            assert done["recording"]["channels"] == 2
        failed = wait_for_outcome(client, network.token, missing)
        assert failed["status"] == "failed" and "nope.wav" in failed["status_reason"]
        assert failed["jobs"][0]["attempts"] == 1
        refused = wait_for_outcome(client, network.token, escaping)
        assert refused["status"] == "failed" and "leaves the base folder" in refused["status_reason"]
    assert admin.delete(path).status_code == 204 and admin.get(path).status_code == 404


def test_a_sas_token_reads_and_a_wrong_key_is_refused(
    s3_pipeline: S3Pipeline, azurite: Azurite, stereo_wav: bytes
) -> None:
    container = _container(azurite, {"calls/c.wav": stereo_wav})
    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        container,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    with_sas, with_wrong_key = s3_pipeline.admin.network(), s3_pipeline.admin.network()
    admin = s3_pipeline.admin.client
    admin.put(
        f"/v1/admin/accounts/{with_sas.account_id}/azure-blob-access",
        json=_access(azurite, container, credential_kind="sas", credential=f"?{sas}"),
    ).raise_for_status()
    wrong_key = "A" * 86 + "=="
    admin.put(
        f"/v1/admin/accounts/{with_wrong_key.account_id}/azure-blob-access",
        json=_access(azurite, container, credential=wrong_key),
    ).raise_for_status()
    with httpx.Client(base_url=s3_pipeline.server.base_url, timeout=30) as client:
        done = wait_for_outcome(client, with_sas.token, _submit(client, with_sas.token, recording_filename="c.wav"))
        denied = wait_for_outcome(
            client, with_wrong_key.token, _submit(client, with_wrong_key.token, recording_filename="c.wav")
        )
    assert done["status"] == "completed", done
    assert denied["status"] == "failed" and "refused the configured key" in denied["status_reason"]
    assert denied["jobs"][0]["attempts"] == 1


def test_a_private_endpoint_is_refused(s3_pipeline: S3Pipeline, azurite: Azurite) -> None:
    network = s3_pipeline.admin.network()
    s3_pipeline.admin.client.put(
        f"/v1/admin/accounts/{network.account_id}/azure-blob-access",
        json=_access(azurite, "any", endpoint_url="http://192.168.255.254:10000/devstoreaccount1"),
    ).raise_for_status()
    with httpx.Client(base_url=s3_pipeline.server.base_url, timeout=30) as client:
        failed = wait_for_outcome(client, network.token, _submit(client, network.token, recording_filename="a.wav"))
    assert failed["status"] == "failed" and "192.168.255.254" in failed["status_reason"]
