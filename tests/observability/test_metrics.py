"""The named series move when calls are ingested, processed and placed, on SQLite and PostgreSQL; /metrics needs
the metrics (or admin) token."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import httpx

from callplane.testing.engine import FarEnd
from tests.live.support import ADMIN_TOKEN, Receiver, eventually
from tests.observability.conftest import METRICS_TOKEN, Observed, Scrape, scrape
from tests.pipeline.conftest import invoca_call, wait_for_outcome

INVOCA_ROUTE = "/api/{version}/calls.json"


def _moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def test_metrics_need_the_metrics_or_the_admin_token(observed: Observed) -> None:
    base = observed.live.base_url
    assert httpx.get(f"{base}/metrics").status_code == 401
    wrong = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    basic = httpx.get(f"{base}/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"})
    assert basic.status_code == 401
    for token in (METRICS_TOKEN, ADMIN_TOKEN):
        answered = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answered.status_code == 200
        assert answered.headers["content-type"].startswith("text/plain; version=")
        assert "# TYPE callplane_http_requests_total counter" in answered.text


def test_ingesting_and_processing_a_call_moves_ingestion_http_job_and_transcription_series(observed: Observed) -> None:
    admin = observed.live.admin
    network = admin.network()
    before = scrape(observed.live.base_url)
    with httpx.Client(base_url=observed.live.base_url, timeout=30) as client:
        headers = {"Authorization": network.token}
        call = invoca_call(
            f"{observed.recordings}/stereo.wav", advertiser_campaign_id_from_network=network.campaign_external_id
        )
        created = client.post("/api/2022-03-01/calls.json", headers=headers, json={"call": call})
        assert created.status_code == 201, created.text
        again = client.post("/api/2022-03-01/calls.json", headers=headers, json={"call": call})
        assert again.status_code == 202, again.text  # an identical resubmission
        elsewhere = invoca_call(advertiser_campaign_id_from_network="no-such-campaign")
        refused = client.post("/api/2022-03-01/calls.json", headers=headers, json={"call": elsewhere})
        assert refused.status_code == 403, refused.text
        outcome = wait_for_outcome(client, network.token, created.json()["cuid"])
        assert outcome["status"] == "completed", outcome
        client.get(f"/v1/calls/{secrets.token_hex(4)}/no-such-path")  # a path no route has
    after = scrape(observed.live.base_url)

    # HTTP: by route template (never the raw path) and status, with the latency histogram beside it
    assert _moved(before, after, "callplane_http_requests_total", route=INVOCA_ROUTE, status="201") == 1
    assert _moved(before, after, "callplane_http_requests_total", route=INVOCA_ROUTE, status="202") == 1
    assert _moved(before, after, "callplane_http_requests_total", route=INVOCA_ROUTE, status="403") == 1
    assert _moved(before, after, "callplane_http_requests_total", route="unmatched", status="404") == 1
    assert _moved(before, after, "callplane_http_request_duration_seconds_count", route=INVOCA_ROUTE) == 3
    assert not any("no-such-path" in dict(labels).get("route", "") for _, labels in after)
    # ingestion: accepted (created, duplicate) and rejected by reason
    assert _moved(before, after, "callplane_ingestion_accepted_total", origin="single", outcome="created") == 1
    assert _moved(before, after, "callplane_ingestion_accepted_total", origin="single", outcome="duplicate") == 1
    assert _moved(before, after, "callplane_ingestion_rejected_total", reason="campaign_not_accessible") == 1
    # jobs: queued, claimed, each stage's duration, the wait before the claim. At least: the registry is the
    # process's, and another test's server in this process may still be finishing a job of its own.
    assert _moved(before, after, "callplane_jobs_enqueued_total", kind="process_call") >= 1
    assert _moved(before, after, "callplane_jobs_claimed_total", stage="recording") >= 1
    for stage in ("recording", "transcribe", "finalize"):
        ran = _moved(before, after, "callplane_job_stage_duration_seconds_count", stage=stage, outcome="succeeded")
        assert ran >= 1
        assert ("callplane_jobs_running", frozenset({("stage", stage)})) in after
    assert _moved(before, after, "callplane_job_queue_delay_seconds_count", stage="recording") >= 1
    # transcription: the 3 s of audio transcribed, and its wall time per second of audio observed
    assert _moved(before, after, "callplane_transcription_audio_seconds_total") >= 2.9
    assert _moved(before, after, "callplane_transcription_realtime_factor_count") >= 1
    assert _moved(before, after, "callplane_transcription_wall_seconds_total") > 0


def test_a_placed_call_moves_live_calls_and_webhook_delivery_series(observed: Observed, receiver: Receiver) -> None:
    live = observed.live
    before = scrape(live.base_url)
    assert before.value("callplane_live_calls", node="observed-node") == 0
    account = live.admin.network()
    with httpx.Client(base_url=live.base_url, headers={"Authorization": f"App {account.token}"}, timeout=30) as api:
        configuration = api.post("/calls/1/configurations", json={"name": "observed"})
        assert configuration.status_code == 201, configuration.text
        configuration_id = configuration.json()["id"]
        subscribed = api.post(
            f"/v1/voice/configurations/{configuration_id}/subscriptions",
            json={"url": receiver.url},
            headers={"Authorization": f"Bearer {account.token}"},
        )
        assert subscribed.status_code == 201, subscribed.text
        callee = f"bob-{secrets.token_hex(3)}"
        live.fake.route(callee, FarEnd(ring_after_s=0.0, answer_after_s=0.05))
        endpoint = {"type": "SIP", "username": callee, "host": "127.0.0.1:5999"}
        created = api.post("/calls/1/calls", json={"endpoint": endpoint, "callsConfigurationId": configuration_id})
        assert created.status_code == 201, created.text
        call_id = created.json()["id"]
        receiver.wait_type(call_id, "CALL_ESTABLISHED")
        during = scrape(live.base_url)
        assert during.value("callplane_live_calls", node="observed-node") == 1
        assert api.post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
        receiver.wait_type(call_id, "CALL_FINISHED")

        def settled() -> Scrape | None:
            now = scrape(live.base_url)
            # delivered events are counted when their result is written, just after the receiver got them
            delivered = _moved(before, now, "callplane_webhook_deliveries_total", outcome="delivered")
            return now if delivered >= len(receiver.events(call_id)) else None

        after = eventually(settled, "every event delivered and counted")
    assert after.value("callplane_live_calls", node="observed-node") == 0
    assert _moved(before, after, "callplane_http_requests_total", route="/calls/1/calls", status="201") == 1
    events = len(receiver.events(call_id))
    assert events >= 3  # ringing, established, finished
    assert _moved(before, after, "callplane_webhook_delivery_lag_seconds_count") >= events


def test_every_series_the_grafana_dashboard_queries_is_exported(observed: Observed) -> None:
    dashboard = json.loads((Path(__file__).parents[2] / "deploy" / "grafana" / "callplane.json").read_text())
    queried = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bcallplane_[a-z_]+", target["expr"])
    }
    exposition = httpx.get(
        f"{observed.live.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    ).text
    exported = set(re.findall(r"^# TYPE (\S+) ", exposition, flags=re.MULTILINE))
    assert len(queried) >= 20 and queried <= exported, queried - exported


def test_a_batch_counts_created_and_duplicate_calls_and_its_field_errors(observed: Observed) -> None:
    partner = observed.live.admin.partner()

    def item(call_id: str) -> dict[str, object]:
        return {
            "call": {
                "id": call_id,
                "recording_url": f"{observed.recordings}/stereo.wav",
                "start_time": "2023-01-01T10:00:00Z",
                "end_time": "2023-01-01T10:00:03Z",
                "contact_number": "+1234567890",
            }
        }

    first, second = secrets.token_hex(5), secrets.token_hex(5)
    before = scrape(observed.live.base_url)
    with httpx.Client(base_url=observed.live.base_url, headers=partner.headers, timeout=30) as client:
        batch = {"data": [item(first), item(second)]}
        assert client.post("/partner/ingest/batch-call", json=batch).status_code == 200
        again = {"data": [item(first)]}  # seen in the earlier batch: skipped
        assert client.post("/partner/ingest/batch-call", json=again).status_code == 200
        broken = {"data": [{"call": {"id": secrets.token_hex(5)}}]}  # no recording, no times
        assert client.post("/partner/ingest/batch-call", json=broken).status_code == 422
    after = scrape(observed.live.base_url)
    assert _moved(before, after, "callplane_ingestion_accepted_total", origin="batch", outcome="created") == 2
    assert _moved(before, after, "callplane_ingestion_accepted_total", origin="batch", outcome="duplicate") == 1
    assert _moved(before, after, "callplane_ingestion_rejected_total", origin="batch", reason="invalid_input") == 1
    assert _moved(before, after, "callplane_jobs_enqueued_total", kind="process_call") >= 2
