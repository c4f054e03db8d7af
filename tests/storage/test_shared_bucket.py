"""Nodes share nothing but PostgreSQL and the bucket: an API process and a `callplane worker` process with data
directories of their own; the worker stores the recording in the bucket and the API serves it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from callplane.testing.factories import Admin
from callplane.testing.s3 import S3Server
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, running_server, scratch_postgres_database
from tests.conftest import ADMIN_TOKEN, _settings
from tests.pipeline.conftest import invoca_call, wait_for_outcome

CALLPLANE = str(Path(sys.executable).with_name("callplane"))


def test_a_worker_on_another_data_dir_stores_what_the_api_serves(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, origin: str
) -> None:
    bucket = s3_server.new_bucket()
    storage = s3_server.settings(bucket, "shared")
    api_dir, worker_dir = tmp_path / "api-node", tmp_path / "worker-node"
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url, running_server(_settings(api_dir, url, **storage)) as api:
        admin = Admin(api.base_url, ADMIN_TOKEN)
        network = admin.network()
        admin.client.close()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLPLANE_")} | {
            "CALLPLANE_ENVIRONMENT": "test",
            "CALLPLANE_DATA_DIR": str(worker_dir),
            "CALLPLANE_DATABASE_URL": url,
            "CALLPLANE_LOG_LEVEL": "WARNING",
            "CALLPLANE_TRANSCRIPTION_ENABLED": "false",
            "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
            "CALLPLANE_WORKER_POLL_SECONDS": "0.05",
        }
        environment |= {f"CALLPLANE_{name.upper()}": value for name, value in storage.items()}
        worker = subprocess.Popen(
            [CALLPLANE, "worker"], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            headers = {"Authorization": f"Bearer {network.token}"}
            with httpx.Client(base_url=api.base_url, timeout=30) as client:
                created = client.post(
                    "/api/2022-03-01/calls.json",
                    headers={"Authorization": network.token},
                    json={"call": invoca_call(f"{origin}/stereo.wav")},
                )
                assert created.status_code == 201, created.text
                call_id = created.json()["cuid"]
                done = wait_for_outcome(client, network.token, call_id)
                assert done["status"] == "completed", done
                served = client.get(f"/v1/calls/{call_id}/recording", headers=headers, follow_redirects=True)
        finally:
            worker.terminate()
            _, errors = worker.communicate(timeout=30)
        assert worker.returncode == 0, errors.decode(errors="replace")[-2000:]
    with contextlib.closing(s3_server.client()) as s3:
        key = f"shared/{network.account_id}/{call_id}.mp3"
        stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert served.status_code == 200 and served.content == stored and len(stored) == done["recording"]["size_bytes"]
    assert not (api_dir / "recordings").exists() and not (worker_dir / "recordings").exists()
