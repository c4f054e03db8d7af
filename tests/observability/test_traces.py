"""One trace from the API request through the job's stages to the webhook POST, on SQLite and PostgreSQL: the
caller's traceparent is continued by the request span, carried by the job row to the worker and by the delivery
row to the sender (spans kept in memory by the SDK's own in-memory exporter)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from callplane.observability.tracing import configure_tracing
from callplane.settings import Settings
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database
from tests.live.support import Receiver, eventually, receiving, serving
from tests.pipeline.conftest import invoca_call

TOKEN = "trace-admin"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    # Installed before any server: create_app then finds the SDK in place and keeps it (one provider per process).
    configure_tracing(Settings(trace_exporter="console"), exporter=exporter)
    yield exporter
    exporter.shutdown()  # later tests in this process keep the provider; nothing more is kept


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def traced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, spans: object) -> Iterator[str]:
    def settings_for(url: str | None) -> Settings:
        return Settings(
            environment="test",
            data_dir=tmp_path_factory.mktemp(f"traces-{request.param}"),
            database_url=url,
            admin_token=TOKEN,
            log_level="WARNING",
            fetch_allowed_networks=["127.0.0.1/32"],
            transcription_enabled=False,
            worker_poll_seconds=0.05,
            delivery_poll_seconds=0.05,
            trace_exporter="console",
        )

    if request.param == "sqlite":
        with serving(settings_for(None), None) as base_url:
            yield base_url
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url, serving(settings_for(url), None) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def receiver(traced: str) -> Iterator[Receiver]:
    with receiving() as sink:
        yield sink


def test_one_trace_runs_from_the_request_through_the_job_to_the_webhook(
    traced: str, spans: InMemorySpanExporter, receiver: Receiver
) -> None:
    from callplane.testing.factories import Admin

    admin = Admin(traced, TOKEN)
    network = admin.network()
    admin.client.close()
    trace_id = secrets.token_hex(16)
    with httpx.Client(base_url=traced, timeout=30) as client:
        hooked = client.post(
            "/v1/webhook-endpoints",
            headers={"Authorization": f"Bearer {network.token}"},
            json={"url": receiver.url, "event_types": ["call.processing_failed"]},
        )
        assert hooked.status_code == 201, hooked.text
        # No recording: the job runs its first stage, fails for good and announces it; a short whole trace.
        call = invoca_call(advertiser_campaign_id_from_network=network.campaign_external_id)
        created = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
            json={"call": call},
        )
        assert created.status_code == 201, created.text
    receiver.wait_for(lambda event: event.get("type") == "call.processing_failed")

    def in_trace() -> list[ReadableSpan] | None:
        finished = spans.get_finished_spans()
        found = [s for s in finished if s.context is not None and f"{s.context.trace_id:032x}" == trace_id]
        return found if any(s.name.startswith("deliver ") for s in found) else None

    names = [span.name for span in eventually(in_trace, "the delivery's span in the request's trace")]
    assert names.count("POST /api/{version}/calls.json") == 1, names  # one server span: ours, not FastAPI's too
    assert "job process_call" in names
    assert "stage recording" in names
    assert "deliver call.processing_failed" in names
