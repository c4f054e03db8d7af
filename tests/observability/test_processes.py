"""Metrics when the API and the workers are separate processes (docs/decisions.md "Metrics: one scrape target per
process"): `callplane worker` serves its own series on CALLPLANE_METRICS_PORT, and `callplane serve --workers 2`
answers /metrics with both API processes' values added up, whichever process takes the scrape."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from callplane.settings import Settings
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from tests.live.support import eventually, serving
from tests.observability.conftest import METRICS_TOKEN, Scrape, parse, scrape
from tests.pipeline.conftest import invoca_call, wait_for_outcome

ADMIN = "processes-admin"
CALLPLANE = str(Path(sys.executable).with_name("callplane"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(data_dir: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    values = {
        "CALLPLANE_ENVIRONMENT": "test",
        "CALLPLANE_DATA_DIR": str(data_dir),
        "CALLPLANE_ADMIN_TOKEN": ADMIN,
        "CALLPLANE_METRICS_TOKEN": METRICS_TOKEN,
        "CALLPLANE_LOG_LEVEL": "WARNING",
        "CALLPLANE_TRANSCRIPTION_ENABLED": "false",
        "CALLPLANE_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "CALLPLANE_WORKER_POLL_SECONDS": "0.05",
        **extra,
    }
    if database_url:
        values["CALLPLANE_DATABASE_URL"] = database_url
    return {key: value for key, value in os.environ.items() if not key.startswith("CALLPLANE_")} | values


def _scrape_listener(port: int, token: str = METRICS_TOKEN) -> Scrape | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
    except httpx.TransportError:
        return None  # not listening yet
    return parse(response.text) if response.status_code == 200 else None


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    with scratch_postgres_database(os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)) as url:
        yield url


def test_a_separate_worker_process_exports_its_job_series_on_its_own_listener(
    tmp_path: Path, database_url: str | None
) -> None:
    settings = Settings(
        environment="test",
        data_dir=tmp_path,
        database_url=database_url,
        admin_token=ADMIN,
        metrics_token=METRICS_TOKEN,
        log_level="WARNING",
        workers_enabled=False,  # the API process only: jobs wait for the worker process
    )
    port = _free_port()
    with serving(settings, None) as base_url:
        from callplane.testing.factories import Admin

        admin = Admin(base_url, ADMIN)
        network = admin.network()
        admin.client.close()
        worker = subprocess.Popen(
            [CALLPLANE, "worker"],
            env=_environment(tmp_path, database_url, CALLPLANE_METRICS_PORT=str(port)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            before = eventually(lambda: _scrape_listener(port), "the worker's metrics listener", timeout_s=60)
            assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 401
            assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404
            api_before = scrape(base_url)
            with httpx.Client(base_url=base_url, timeout=30) as client:
                call = invoca_call(advertiser_campaign_id_from_network=network.campaign_external_id)
                created = client.post(
                    "/api/2022-03-01/calls.json", headers={"Authorization": network.token}, json={"call": call}
                )
                assert created.status_code == 201, created.text
                outcome = wait_for_outcome(client, network.token, created.json()["cuid"])
            assert outcome["status"] == "failed"  # no recording: the worker ran the job and gave up on it
            after = eventually(lambda: _scrape_listener(port), "the worker's metrics listener")

            def failed_job_shown() -> Scrape | None:  # the database's queue, read by the API when scraped
                shown = scrape(base_url)
                return shown if shown.value("callplane_jobs", kind="process_call", status="failed") == 1 else None

            api_after = eventually(failed_job_shown, "the failed job in callplane_jobs")
        finally:
            worker.terminate()
            _, errors = worker.communicate(timeout=30)
        assert worker.returncode == 0, errors.decode(errors="replace")[-2000:]

    def moved(first: Scrape, second: Scrape, name: str, **labels: str) -> float:
        return second.value(name, **labels) - first.value(name, **labels)

    # the API process accepted the call and queued its job (its registry is this test process's: other servers' work
    # may add); the worker process, with a registry of its own, claimed and ran exactly this job
    assert moved(api_before, api_after, "callplane_ingestion_accepted_total", outcome="created") == 1
    assert moved(api_before, api_after, "callplane_jobs_enqueued_total", kind="process_call") >= 1
    assert moved(before, after, "callplane_jobs_claimed_total", stage="recording") == 1
    assert moved(before, after, "callplane_job_failures_total", stage="recording", outcome="failed") == 1
    assert moved(before, after, "callplane_job_stage_duration_seconds_count", stage="recording", outcome="failed") == 1


def test_serve_with_two_api_processes_adds_their_series_up(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [CALLPLANE, "serve", "--port", str(port), "--workers", "2"],
        env=_environment(tmp_path, None, CALLPLANE_WORKERS_ENABLED="false"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:

        def health() -> bool:
            try:
                return httpx.get(f"{base_url}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        eventually(health, "the API", timeout_s=90)  # its one answered probe is counted too
        files = tmp_path / "metrics"
        eventually(lambda: len(list(files.glob("counter_*.db"))) == 2, "both API processes' files", timeout_s=90)
        with httpx.Client(base_url=base_url) as client:
            for _ in range(39):  # new connections, for either process to take
                assert client.get("/healthz", headers={"connection": "close"}).status_code == 200
        # The last request is counted just after its answer went out: wait for one scrape to see them all.
        eventually(lambda: scrape(base_url).value("callplane_http_requests_total", route="/healthz") == 40, "40")
        # Each scrape lands on either process; every one sees the sum of both.
        totals = {scrape(base_url).value("callplane_http_requests_total", route="/healthz") for _ in range(6)}
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert totals == {40.0}, errors.decode(errors="replace")[-2000:]
