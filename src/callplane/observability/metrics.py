"""Every Prometheus series callplane exports, defined once; instrumented code imports the one it moves.

This module imports nothing of callplane's but tracing.py, so core, media, live and the surfaces may all import it (the
import-linter contracts in pyproject.toml hold). Labels are bounded: route templates never raw paths, stages, kinds,
reasons and status codes never call ids. docs/observability.md lists the series and what each one is for.

Multi-process: each process exports its own series and Prometheus scrapes every process (docs/decisions.md
"Metrics: one scrape target per process"); `serve --workers N` sets PROMETHEUS_MULTIPROC_DIR before the API
processes start, and prometheus-client then keeps the values in files the /metrics handler adds up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from callplane.observability.tracing import tracer

# Latency buckets: HTTP answers in milliseconds, job stages and webhook lag in seconds to hours.
_HTTP_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_WORK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0)

HTTP_REQUESTS = Counter(
    "callplane_http_requests", "HTTP requests answered, by route template and status", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "callplane_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template",
    ["method", "route"],
    buckets=_HTTP_BUCKETS,
)

INGESTED_CALLS = Counter(
    "callplane_ingestion_accepted",
    "Finished calls accepted: created, or an identical resubmission (duplicate)",
    ["origin", "outcome"],
)
INGESTION_REJECTED = Counter(
    "callplane_ingestion_rejected", "Call submissions refused, by reason", ["origin", "reason"]
)

JOBS_ENQUEUED = Counter("callplane_jobs_enqueued", "Jobs queued (in the transaction that asked for them)", ["kind"])
JOBS_CLAIMED = Counter("callplane_jobs_claimed", "Job runs started by a worker, by the stage they start at", ["stage"])
JOBS_RUNNING = Gauge("callplane_jobs_running", "Pipeline stages running now", ["stage"], multiprocess_mode="livesum")
JOB_STAGE_SECONDS = Histogram(
    "callplane_job_stage_duration_seconds",
    "How long one pipeline stage ran, by outcome",
    ["stage", "outcome"],
    buckets=_WORK_BUCKETS,
)
JOB_FAILURES = Counter(
    "callplane_job_failures", "Stage failures: retry (backing off) or failed (gave up)", ["stage", "outcome"]
)
JOB_QUEUE_DELAY = Histogram(
    "callplane_job_queue_delay_seconds",
    "How long a job waited past its due time before a worker claimed it",
    ["stage"],
    buckets=_LAG_BUCKETS,
)

JOBS_IN_DATABASE = Gauge(
    "callplane_jobs",
    "Queued, running and failed jobs in the database (every process's; read by the API at scrape time)",
    ["kind", "stage", "status"],
    multiprocess_mode="mostrecent",
)

TRANSCRIPTION_REALTIME = Histogram(
    "callplane_transcription_realtime_factor",
    "Transcription wall time per second of call audio (below 1: faster than real time)",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
)
TRANSCRIPTION_AUDIO_SECONDS = Counter("callplane_transcription_audio_seconds", "Call audio transcribed, in seconds")
TRANSCRIPTION_WALL_SECONDS = Counter("callplane_transcription_wall_seconds", "Wall time spent transcribing")

WEBHOOK_DELIVERIES = Counter(
    "callplane_webhook_deliveries",
    "Webhook and callback attempts written: delivered, retry (backing off) or failed (gave up)",
    ["kind", "outcome"],
)
WEBHOOK_LAG = Histogram(
    "callplane_webhook_delivery_lag_seconds",
    "From the event's outbox row to its delivery (includes retries)",
    ["kind"],
    buckets=_LAG_BUCKETS,
)

SIP_RESPONSES = Counter(
    "callplane_sip_responses", "SIP responses sent and received, by status code", ["direction", "code"]
)


class MediaTally:
    """Counts on the media hot path (every RTP packet, every 20 ms tick): plain integer adds on the event loop,
    no lock per packet as a prometheus-client Counter would take; exported as counters at scrape time."""

    __slots__ = (
        "jitter_dropped_samples",
        "jitter_late_packets",
        "jitter_overflows",
        "late_ticks",
        "rtp_malformed",
        "rtp_received",
        "rtp_sent",
        "skipped_ticks",
        "ticks",
    )

    def __init__(self) -> None:
        self.rtp_received = 0
        self.rtp_sent = 0
        self.rtp_malformed = 0
        self.ticks = 0
        self.late_ticks = 0
        self.skipped_ticks = 0
        self.jitter_late_packets = 0
        self.jitter_overflows = 0
        self.jitter_dropped_samples = 0


MEDIA = MediaTally()


class _MediaCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        rtp = CounterMetricFamily("callplane_rtp_packets", "RTP packets of calls, by direction", labels=["direction"])
        rtp.add_metric(["received"], MEDIA.rtp_received)
        rtp.add_metric(["sent"], MEDIA.rtp_sent)
        rtp.add_metric(["malformed"], MEDIA.rtp_malformed)
        yield rtp
        yield CounterMetricFamily("callplane_media_ticks", "20 ms media clock ticks run", value=MEDIA.ticks)
        yield CounterMetricFamily(
            "callplane_media_late_ticks", "Ticks that started a frame (20 ms) or more late", value=MEDIA.late_ticks
        )
        yield CounterMetricFamily(
            "callplane_media_skipped_ticks", "Ticks skipped to catch up after a stall", value=MEDIA.skipped_ticks
        )
        drops = CounterMetricFamily(
            "callplane_jitter_buffer_drops",
            "Jitter-buffer drops: late (a packet after its play-out time) or overflow (the far end ran ahead)",
            labels=["reason"],
        )
        drops.add_metric(["late"], MEDIA.jitter_late_packets)
        drops.add_metric(["overflow"], MEDIA.jitter_overflows)
        yield drops
        yield CounterMetricFamily(
            "callplane_jitter_buffer_dropped_samples",
            "8 kHz samples skipped by jitter-buffer overflows",
            value=MEDIA.jitter_dropped_samples,
        )


class MediaStreamTally:
    """Media streaming's counts (media/streaming.py), plain adds on the event loop like `MediaTally`."""

    __slots__ = ("dropped_backpressure", "dropped_not_connected", "frames_sent", "returned_overflow")

    def __init__(self) -> None:
        self.frames_sent = 0
        self.dropped_backpressure = 0
        self.dropped_not_connected = 0
        self.returned_overflow = 0


STREAMS = MediaStreamTally()


class _MediaStreamCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "callplane_media_stream_frames_sent", "20 ms frames sent to media-stream servers", value=STREAMS.frames_sent
        )
        drops = CounterMetricFamily(
            "callplane_media_stream_dropped_frames",
            "Media-stream frames dropped: backpressure (the server reads too slowly: the bounded queue was full), "
            "not_connected (before the handshake or after the connection went), returned_overflow (replaceMedia "
            "audio the server sent ahead of the call)",
            labels=["reason"],
        )
        drops.add_metric(["backpressure"], STREAMS.dropped_backpressure)
        drops.add_metric(["not_connected"], STREAMS.dropped_not_connected)
        drops.add_metric(["returned_overflow"], STREAMS.returned_overflow)
        yield drops


class _LiveCallsCollector(Collector):
    """Live calls per media node, read from the node's own registry at scrape time (never drifts)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Callable[[], int]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("callplane_live_calls", "Calls this media node carries now", labels=["node"])
        for node, count in list(self.nodes.items()):
            family.add_metric([node], count())
        yield family


_LIVE_CALLS = _LiveCallsCollector()
REGISTRY.register(_MediaCollector())
REGISTRY.register(_MediaStreamCollector())
REGISTRY.register(_LIVE_CALLS)


def watch_live_calls(node_id: str, count: Callable[[], int]) -> Callable[[], None]:
    """Export `count()` as this node's live calls; returns what stops it (the engine stopped)."""
    _LIVE_CALLS.nodes[node_id] = count

    def unwatch() -> None:
        if _LIVE_CALLS.nodes.get(node_id) is count:
            del _LIVE_CALLS.nodes[node_id]

    return unwatch


@contextmanager
def timed_stage(stage: str) -> Iterator[None]:
    """Around one pipeline stage: running while inside, its duration by how it ended."""
    running = JOBS_RUNNING.labels(stage)
    running.inc()
    started = time.perf_counter()
    outcome = "failed"
    try:
        with tracer.start_as_current_span(f"stage {stage}"):  # what the stage writes (events) is in its trace
            yield
        outcome = "succeeded"
    finally:
        running.dec()
        JOB_STAGE_SECONDS.labels(stage, outcome).observe(time.perf_counter() - started)


def observe_transcription(audio_seconds: float, wall_seconds: float) -> None:
    TRANSCRIPTION_AUDIO_SECONDS.inc(audio_seconds)
    TRANSCRIPTION_WALL_SECONDS.inc(wall_seconds)
    if audio_seconds > 0:
        TRANSCRIPTION_REALTIME.observe(wall_seconds / audio_seconds)
