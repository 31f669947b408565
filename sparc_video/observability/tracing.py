"""OpenTelemetry tracing: set-up from the standard OTEL_* variables and trace-context hand-over.

One trace per export: the CreateExport server span, the enqueue span beneath it, and the worker's
`run_export` span, which continues the enqueue span from the W3C `traceparent` stored on the
export record (the record, not arq's job, is what every attempt and every requeue reads).

By default the SDK records spans but exports nothing: trace ids still tie the server's and the
workers' log lines of one export together, for a few microseconds per span. An exporter is
added when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_TRACES_EXPORTER`) asks for one.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

TRACER_NAME = "sparc_video"
_PROPAGATOR = TraceContextTextMapPropagator()


# Made once: the SDK builds a new Tracer on every get_tracer() (about 30 us). Obtained before
# setup_tracing, this is the API's proxy, which switches to the SDK's tracer once it is set.
_TRACER = trace.get_tracer(TRACER_NAME)


def tracer() -> trace.Tracer:
    """The service's tracer; a no-op one until `setup_tracing` installs the SDK."""
    return _TRACER


def exporters_from_env(env: Mapping[str, str]) -> list[SpanExporter]:
    """The span exporters the OTEL_* variables ask for.

    `OTEL_TRACES_EXPORTER` (comma-separated: otlp, console, none) wins; without it, an
    `OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT` means otlp, and nothing means none
    (the SDK's own default is otlp, which would log connection errors on every machine without a
    collector). The OTLP exporter reads its endpoint, headers and protocol options itself.
    """
    names = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not names:
        wants_otlp = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        names = "otlp" if wants_otlp else "none"
    exporters: list[SpanExporter] = []
    for name in (n.strip() for n in names.split(",")):
        if name in ("", "none"):
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            otlp = _otlp_exporter(env)
            if otlp is not None:
                exporters.append(otlp)
        else:
            log.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored", name)
    return exporters


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter | None:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    package = "grpc" if protocol == "grpc" else "http"
    try:
        module = importlib.import_module(
            f"opentelemetry.exporter.otlp.proto.{package}.trace_exporter"
        )
    except ImportError:
        log.warning(
            "OTLP trace export requested but opentelemetry-exporter-otlp-proto-%s is not "
            "installed (pip install 'sparc-video[otlp]'); spans are not exported",
            package,
        )
        return None
    exporter: SpanExporter = module.OTLPSpanExporter()
    return exporter


def setup_tracing(
    service_name: str,
    *,
    env: Mapping[str, str] | None = None,
    exporters: Sequence[SpanExporter] = (),
) -> TracerProvider | None:
    """Install the SDK's TracerProvider for this process (once) and return it.

    A second call (the dev command runs the server and a worker in one process; tests start many)
    keeps the provider and only adds `exporters`, each behind a synchronous processor: that is
    how tests inject an in-memory exporter. Returns None when OTEL_SDK_DISABLED is true.
    """
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        # OTEL_SERVICE_NAME (and OTEL_RESOURCE_ATTRIBUTES) override our default name.
        attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
        provider = TracerProvider(resource=Resource.create(attributes))
        processors: list[SpanProcessor] = [
            BatchSpanProcessor(exporter) for exporter in exporters_from_env(env)
        ]
        for processor in processors:
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def current_traceparent() -> str:
    """The W3C traceparent of the current span ("" when there is none or tracing is off)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str) -> otel_context.Context | None:
    """The context a stored traceparent continues; None (a new trace) when it is empty."""
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def trace_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span in hex, or ("", "") outside any span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def record_error(span: Span, error: BaseException, *, reason: str = "") -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, reason or type(error).__name__))
    if reason:
        span.set_attribute("error.type", reason)


@contextmanager
def enqueue_span(export_id: str) -> Iterator[str]:
    """The span of storing and queueing an export; yields the traceparent its job continues."""
    with tracer().start_as_current_span(
        "enqueue run_export",
        kind=SpanKind.PRODUCER,
        attributes={"sparc.export_id": export_id, "messaging.system": "arq"},
    ):
        yield current_traceparent()
