"""OpenTelemetry traces across API request -> job -> webhook (docs/observability.md "Traces").

Off by default: without `configure_tracing` the API's no-op tracer is used and no span costs more than a call.
A trace crosses processes through the rows that carry the work: the job and the delivery keep the W3C
``traceparent`` of the span that wrote them (``trace_context`` columns, migration 0017), and the worker that runs
them continues that trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from callplane.settings import Settings

_PROPAGATOR = TraceContextTextMapPropagator()
tracer = trace.get_tracer("callplane")


def configure_tracing(settings: Settings, *, exporter: SpanExporter | None = None) -> bool:
    """Install the SDK with the exporter the settings name (or `exporter`); once per process (a process serving
    several apps keeps the first). False when off."""
    if exporter is None and settings.trace_exporter == "off":
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return True

    provider = TracerProvider(resource=Resource.create({"service.name": settings.trace_service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.trace_exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.trace_otlp_endpoint)))
    trace.set_tracer_provider(provider)  # the API keeps the first provider set and warns on a second
    return True


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, for a row that hands work to another process; None when none."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def continued(name: str, traceparent: str | None, *, kind: SpanKind = SpanKind.CONSUMER) -> Iterator[Span]:
    """A span continuing the trace a row was written in (a new trace when the row carries none)."""
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else otel_context.Context()
    with tracer.start_as_current_span(name, context=parent, kind=kind) as span:
        yield span


@contextmanager
def server_span(headers: Mapping[str, str]) -> Iterator[Span]:
    """An HTTP request's span, continuing a caller's traceparent header if it sent one."""
    with tracer.start_as_current_span("HTTP", context=_PROPAGATOR.extract(dict(headers)), kind=SpanKind.SERVER) as span:
        yield span
