"""The post-call pipeline with CALLPLANE_STORAGE_BACKEND=s3: a call's normalized MP3 lands in the bucket (moto's
server on loopback) and is downloaded through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from callplane.testing.s3 import S3Server
from tests.pipeline.conftest import invoca_call, wait_for_outcome
from tests.storage.conftest import PREFIX, S3Pipeline

URL = "/api/2022-03-01/calls.json"


def _submit(client: httpx.Client, token: str, call: dict[str, Any]) -> str:
    response = client.post(URL, headers={"Authorization": token}, json={"call": call})
    assert response.status_code == 201, response.text
    return str(response.json()["cuid"])


def test_recording_is_stored_in_the_bucket_and_served_by_redirect(s3_pipeline: S3Pipeline, s3_server: S3Server) -> None:
    network = s3_pipeline.admin.network()
    headers = {"Authorization": f"Bearer {network.token}"}
    with httpx.Client(base_url=s3_pipeline.server.base_url, timeout=30) as client:
        call_id = _submit(client, network.token, invoca_call(f"{s3_pipeline.origin}/stereo.wav"))
        call = wait_for_outcome(client, network.token, call_id)
        assert call["status"] == "completed", call
        size = call["recording"]["size_bytes"]

        with contextlib.closing(s3_server.client()) as s3:
            keys = [item["Key"] for item in s3.list_objects_v2(Bucket=s3_pipeline.bucket)["Contents"]]
            key = next(k for k in keys if k.endswith(f"/{call_id}.mp3"))
            head = s3.head_object(Bucket=s3_pipeline.bucket, Key=key)
            stored = s3.get_object(Bucket=s3_pipeline.bucket, Key=key)["Body"].read()
        assert key.startswith(f"{PREFIX}/") and head["ContentLength"] == size
        assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "audio/mpeg"
        assert not (s3_pipeline.server.settings.data_dir / "recordings").exists()  # nothing on this node's disk

        redirect = client.get(f"/v1/calls/{call_id}/recording", headers=headers)
        assert redirect.status_code == 307
        location = redirect.headers["location"]
        assert location.startswith(f"{s3_server.endpoint_url}/{s3_pipeline.bucket}/{PREFIX}/")
        assert network.token not in location
        whole = client.get(f"/v1/calls/{call_id}/recording", headers=headers, follow_redirects=True)
        assert whole.status_code == 200 and whole.headers["content-type"] == "audio/mpeg"
        assert whole.content == stored and stored[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")
        part = client.get(
            f"/v1/calls/{call_id}/recording", headers=headers | {"Range": "bytes=10-109"}, follow_redirects=True
        )
        assert part.status_code == 206 and part.content == stored[10:110]

        other = s3_pipeline.admin.network()  # another tenant gets no URL to this call's recording
        denied = client.get(f"/v1/calls/{call_id}/recording", headers={"Authorization": f"Bearer {other.token}"})
        assert denied.status_code == 404


def test_without_presigning_the_api_streams_from_the_bucket(s3_pipeline: S3Pipeline) -> None:
    network = s3_pipeline.admin.network()
    headers = {"Authorization": f"Bearer {network.token}"}
    settings = s3_pipeline.server.settings
    with httpx.Client(base_url=s3_pipeline.server.base_url, timeout=30) as client:
        call_id = _submit(client, network.token, invoca_call(f"{s3_pipeline.origin}/stereo.wav"))
        size = wait_for_outcome(client, network.token, call_id)["recording"]["size_bytes"]
        presigned = client.get(f"/v1/calls/{call_id}/recording", headers=headers, follow_redirects=True).content
        settings.storage_presigned_download_seconds = 0
        try:
            whole = client.get(f"/v1/calls/{call_id}/recording", headers=headers)
            tail = client.get(f"/v1/calls/{call_id}/recording", headers=headers | {"Range": "bytes=-50"})
            bad = client.get(f"/v1/calls/{call_id}/recording", headers=headers | {"Range": "bytes=999999999-"})
        finally:
            settings.storage_presigned_download_seconds = 300
    assert whole.status_code == 200 and len(whole.content) == size and whole.content == presigned
    assert tail.status_code == 206 and tail.content == presigned[-50:]
    assert bad.status_code == 416
    assert whole.headers["content-type"] == "audio/mpeg"
