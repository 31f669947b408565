"""Metrics, traces and logs of real exports: Prometheus scrapes, one trace across processes,
structured logs without secrets.

The server and (most) workers run in this process, as in the other end-to-end tests; the trace
test runs the worker as an OS process that exports its spans over OTLP to a receiver here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import re
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from arq.constants import in_progress_key_prefix
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.core.settings import Settings, StaticToken
from sparc_video.exports.models import ExportRecord
from sparc_video.media.synth import make_sample_clip
from sparc_video.observability import logs as logging_setup
from sparc_video.observability.metrics import WORKER_REGISTRY
from sparc_video.observability.tracing import exporters_from_env, setup_tracing
from sparc_video.security.roles import Role
from tests.fixtures.prometheus import PrometheusTools
from tests.fixtures.redis import free_port
from tests.fixtures.service import RunningService, WorkerProcess, start_service
from tests.test_export_e2e import create_request, thumbnail, transcode, watch_to_end
from tests.web_server import serving_app

State = export_pb2.Export
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

SERVER_METRICS = [
    "grpc_server_handled_total",
    "grpc_server_handling_seconds",
    "grpc_server_streams_active",
    "video_processing_queue_size",
    "video_processing_oldest_queued_age_seconds",
    "video_workers_live",
    "video_workers_nvenc",
    "video_storage_used_bytes",
    "video_health_check_ok",
    "video_health_check_latency_seconds",
    "video_service_redis_scrape_ok",
]
WORKER_METRICS = [
    "video_processing_jobs_total",
    "video_processing_job_duration_seconds",
    "video_processing_errors_total",
    "video_processing_retries_total",
    "video_processing_speed_ratio",
    "video_processing_media_seconds_total",
    "video_export_size_bytes",
    "video_worker_busy_slots",
    "video_worker_slots",
    "video_storage_transfer_bytes_total",
    "video_storage_transfer_errors_total",
    "video_storage_transfer_seconds",
    "process_resident_memory_bytes",
]
# Moto accepts any credentials: distinctive ones can be searched for in the logs.
ACCESS_KEY = "AKIASPARCVIDEOTEST42"
SECRET_KEY = "sparc/Secret+Key-0123456789abcdefghijklmnop"


@dataclasses.dataclass
class Scrape:
    names: set[str]
    samples: Samples

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def matching(self, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
        want = set(labels.items())
        return {
            key_labels: value
            for (sample, key_labels), value in self.samples.items()
            if sample == name and want <= key_labels
        }


def parse(text: str) -> Scrape:
    names: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        for sample in family.samples:
            names.add(sample.name)
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(names, samples)


async def scrape(url: str) -> Scrape:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(await response.text())


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """This process's spans: the SDK's in-memory exporter, added to the process's provider."""
    memory = InMemorySpanExporter()
    assert setup_tracing("sparc-video-tests", env={}, exporters=[memory]) is not None
    return memory


def observed_settings(s3_service_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    """S3 settings whose credentials a log check can recognise, retrying and checking health
    quickly."""
    return s3_service_settings(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        retry_initial_delay_s=0.1,
        health_check_interval_s=0.2,
        **overrides,
    )


async def wait_for_state(
    service: RunningService, name: str, state: int, timeout_s: float = 30
) -> export_pb2.Export:
    deadline = time.monotonic() + timeout_s
    while True:
        export = await service.exports.GetExport(export_service_pb2.GetExportRequest(name=name))
        if export.state == state:
            return export
        assert time.monotonic() < deadline, export
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def denying_s3() -> AsyncIterator[str]:
    """An S3 endpoint that answers every request 403 AccessDenied."""

    async def deny(_: web.Request) -> web.Response:
        body = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        return web.Response(status=403, text=body, content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", deny)
    async with serving_app(app) as url:
        yield url


async def arq_finished(service: RunningService, *names: str) -> None:
    """Wait until arq has filed the jobs' ends: our record says SUCCEEDED or RETRYING a moment
    before, and stopping a worker in between cancels arq's own bookkeeping."""
    for name in names:
        key = in_progress_key_prefix + name.removeprefix("exports/")
        async with asyncio.timeout(10):
            while await service.app.redis.exists(key):
                await asyncio.sleep(0.02)


async def error_reason(service: RunningService, name: str) -> str:
    record = await service.app.store.get(name.removeprefix("exports/"))
    assert record.error is not None
    return record.error.reason


async def wait_for_worker_count(
    before: Scrape, name: str, increase: float, timeout_s: float = 10, **labels: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        now = parse(generate_latest(WORKER_REGISTRY).decode())
        if now.get(name, **labels) - before.get(name, **labels) >= increase:
            return
        assert time.monotonic() < deadline, (name, labels, now.matching(name))
        await asyncio.sleep(0.02)


async def test_metrics_of_real_exports_on_server_and_worker(
    s3_service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    worker_port = free_port()
    good = observed_settings(s3_service_settings, worker_metrics_port=worker_port)
    # A worker whose S3 endpoint denies access (as S3 does to revoked credentials): its
    # download fails, transiently. The retry delay should outlast that worker's stop, so the
    # next attempt runs on the good worker; on a slow machine it may fail once more first, so
    # the counts below follow the record's failed_attempts.
    misconfigured = good.replace(
        http_port=free_port(), worker_metrics_port=0, retry_initial_delay_s=1.0
    )
    clip = tmp_path / "clip.mp4"
    make_sample_clip(clip, width=320, height=180, duration_s=1.0)
    junk = b"\x00not a video" * 500
    worker_before = parse(generate_latest(WORKER_REGISTRY).decode())

    async with start_service(good, worker=False) as service:
        metrics_url = f"{service.http_url}/metrics"
        server_before = await scrape(metrics_url)
        await service.app.storage.upload_file(clip, "in/clip.mp4", "video/mp4")
        await service.app.storage.put_bytes("in/junk.mp4", junk, "video/mp4")
        good_export = await service.exports.CreateExport(
            create_request(
                "in/clip.mp4",
                transcode(codec="h264", resolution="320x180", preset="ultrafast"),
                thumbnail("50%"),
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await service.exports.CreateExport(create_request("in/clip.mp4"))
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # Open streams are counted while open: an export watch (async generator handler) and
        # a health watch (coroutine handler writing to its context).
        watch = service.exports.WatchExport(
            export_service_pb2.WatchExportRequest(name=good_export.name)
        )
        assert (await watch.read()).export.state == State.STATE_QUEUED
        health_watch = health_pb2_grpc.HealthStub(service.channel).Watch(
            health_pb2.HealthCheckRequest()
        )
        await health_watch.read()
        during = await scrape(metrics_url)
        assert during.get("video_processing_queue_size", state="queued") == 1
        for service_name, method in (
            ("sparc.video.v1.ExportService", "WatchExport"),
            ("grpc.health.v1.Health", "Watch"),
        ):
            labels = {"grpc_service": service_name, "grpc_method": method}
            assert during.get("grpc_server_streams_active", **labels) == 1 + server_before.get(
                "grpc_server_streams_active", **labels
            )
        watch.cancel()
        health_watch.cancel()

        async with (
            denying_s3() as endpoint,
            start_service(misconfigured.replace(s3_endpoint_url=endpoint)),
        ):
            await wait_for_state(service, good_export.name, State.STATE_RETRYING)
            transient = await error_reason(service, good_export.name)
            # RETRYING is written before the attempt returns: let it finish before the worker
            # stops (which would count it as interrupted).
            await wait_for_worker_count(
                worker_before, "video_processing_jobs_total", 1, status="retrying"
            )
            await arq_finished(service, good_export.name)
        async with start_service(good.replace(http_port=free_port())):
            bad_export = await service.exports.CreateExport(
                create_request("in/junk.mp4", thumbnail("1"))
            )
            done = await wait_for_state(service, good_export.name, State.STATE_SUCCEEDED)
            await wait_for_state(service, bad_export.name, State.STATE_FAILED)
            permanent = await error_reason(service, bad_export.name)
            await arq_finished(service, good_export.name, bad_export.name)
            retried = (
                await service.app.store.get(good_export.name.removeprefix("exports/"))
            ).failed_attempts
            # The signed manifest and its signature are stored with the outputs.
            manifest_bytes = 0
            for key in (done.manifest.storage_key, done.manifest.signature_storage_key):
                manifest_bytes += (await service.app.storage.stat(key)).size_bytes
            worker = await scrape(f"http://127.0.0.1:{worker_port}/metrics")
        server = await scrape(metrics_url)

    assert [n for n in SERVER_METRICS if n not in server.names] == [], server.names
    assert [n for n in WORKER_METRICS if n not in worker.names] == [], worker.names
    # The seed's queue gauge sits on the server only: a sum over workers cannot double it.
    assert "video_processing_queue_size" not in worker.names

    def delta(name: str, **labels: str) -> float:
        return worker.get(name, **labels) - worker_before.get(name, **labels)

    def server_delta(name: str, **labels: str) -> float:
        return server.get(name, **labels) - server_before.get(name, **labels)

    export_service = {"grpc_service": "sparc.video.v1.ExportService", "grpc_type": "unary"}
    create = {**export_service, "grpc_method": "CreateExport"}
    assert server_delta("grpc_server_handled_total", **create, grpc_code="OK") == 2
    assert server_delta("grpc_server_handled_total", **create, grpc_code="INVALID_ARGUMENT") == 1
    assert server_delta("grpc_server_handling_seconds_count", **create) == 3
    assert server_delta("grpc_server_handling_seconds_sum", **create) > 0
    watch_labels = {
        "grpc_service": "sparc.video.v1.ExportService",
        "grpc_method": "WatchExport",
        "grpc_type": "server_stream",
    }
    assert server_delta("grpc_server_handled_total", **watch_labels, grpc_code="CANCELLED") == 1
    assert server.get(
        "grpc_server_streams_active",
        grpc_service=watch_labels["grpc_service"],
        grpc_method="WatchExport",
    ) == server_before.get(
        "grpc_server_streams_active",
        grpc_service=watch_labels["grpc_service"],
        grpc_method="WatchExport",
    )
    queue = {
        state: server.get("video_processing_queue_size", state=state)
        for state in ("queued", "running", "retrying", "succeeded", "failed", "cancelled")
    }
    assert queue == {
        "queued": 0,
        "running": 0,
        "retrying": 0,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
    }
    output_bytes = sum(o.size_bytes for o in done.outputs)
    assert output_bytes > 0 and manifest_bytes > 0
    stored_bytes = output_bytes + manifest_bytes
    assert server.get("video_storage_used_bytes", backend="s3") == stored_bytes
    assert server.get("video_workers_live") >= 1
    assert server.get("video_service_redis_scrape_ok") == 1
    assert server.get("video_health_check_ok", check="redis", critical="true") == 1
    assert server.get("video_health_check_ok", check="storage", critical="true") == 1

    # Worker: attempts by outcome, durations per operation, errors by reason and phase.
    assert retried >= 1
    assert delta("video_processing_jobs_total", status="retrying") == retried
    assert delta("video_processing_jobs_total", status="succeeded") == 1
    assert delta("video_processing_jobs_total", status="failed") == 1
    for operation in ("export", "transcode", "thumbnail"):
        assert (
            delta(
                "video_processing_job_duration_seconds_count",
                operation=operation,
                status="succeeded",
            )
            == 1
        ), operation
    assert (
        delta("video_processing_job_duration_seconds_count", operation="export", status="retrying")
        == retried
    )
    assert (
        delta("video_processing_job_duration_seconds_count", operation="export", status="failed")
        == 1
    )
    assert delta("video_processing_errors_total", reason=transient, operation="download") == retried
    assert delta("video_processing_retries_total", reason=transient) == retried
    assert delta("video_processing_errors_total", reason=permanent, operation="process") == 1
    assert delta("video_processing_speed_ratio_count", operation="transcode") == 1
    assert delta("video_processing_speed_ratio_sum", operation="transcode") > 0
    assert delta("video_processing_media_seconds_total", operation="transcode") == pytest.approx(
        1.0, abs=0.1
    )
    assert delta("video_export_size_bytes_count") == 1
    assert delta("video_export_size_bytes_sum") == stored_bytes
    assert worker.get("video_worker_busy_slots") == 0
    assert worker.get("video_worker_slots") >= good.worker_concurrency
    s3 = {"backend": "s3"}
    assert delta("video_storage_transfer_bytes_total", **s3, direction="download") == (
        clip.stat().st_size + len(junk)
    )
    assert delta("video_storage_transfer_bytes_total", **s3, direction="upload") == stored_bytes
    assert delta("video_storage_transfer_seconds_count", **s3, direction="upload") == (
        len(done.outputs) + 2
    )
    assert delta("video_storage_transfer_errors_total", **s3, direction="download") == retried


async def test_storage_used_bytes_follows_overwrites_and_deletes(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from sparc_video.observability.metrics import StorageUsage
    from workers.telemetry.worker import InstrumentedStorage

    async with start_service(service_settings(), worker=False) as service:
        usage = StorageUsage(service.app.redis, service.app.store.keys)
        storage = InstrumentedStorage(service.app.storage, usage)
        await storage.put_bytes("exports/a/1/video.mp4", b"x" * 1000, "video/mp4")
        await storage.put_bytes("exports/a/1/thumb.jpg", b"x" * 10, "image/jpeg")
        await storage.put_bytes("exports/ab/1/video.mp4", b"x" * 7, "video/mp4")
        assert await usage.total() == 1017
        await storage.put_bytes("exports/a/1/video.mp4", b"x" * 400, "video/mp4")  # overwrite
        assert await usage.total() == 417
        # "exports/a/" must not take "exports/ab/" with it.
        assert await storage.delete_prefix("exports/a/") == 2
        assert await usage.total() == 7
        metrics = await scrape(f"{service.http_url}/metrics")
        assert metrics.get("video_storage_used_bytes", backend="local") == 7


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[str, list[Any]]]:
    """An OTLP/HTTP trace endpoint: what a collector would receive from the worker process."""
    received: list[Any] = []

    async def traces(request: web.Request) -> web.Response:
        body = trace_service_pb2.ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in body.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                received.extend((resource, span) for span in scope_spans.spans)
        return web.Response(
            body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.add_routes([web.post("/v1/traces", traces)])
    async with serving_app(app) as url:
        yield url, received


def _span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


async def test_one_trace_from_create_export_through_a_worker_process(
    service_settings: Callable[..., Settings],
    spans: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    settings = service_settings()
    async with (
        otlp_receiver() as (endpoint, received),
        start_service(settings, worker=False) as service,
    ):
        clip = tmp_path / "clip.mp4"
        make_sample_clip(clip, width=320, height=180, duration_s=1.0)
        await service.app.storage.upload_file(clip, "in/clip.mp4", "video/mp4")
        created = await service.exports.CreateExport(
            create_request(
                "in/clip.mp4",
                transcode(codec="h264", resolution="320x180", preset="ultrafast"),
                thumbnail("25%", "75%"),
            )
        )
        export_id = created.name.removeprefix("exports/")
        record = await service.app.store.get(export_id)

        worker = WorkerProcess(
            settings,
            tmp_path / "worker.log",
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "50",
                "OTEL_SERVICE_NAME": "sparc-video-worker-under-test",
            },
        )
        worker.start()
        try:
            final = (await watch_to_end(service, created.name))[-1].export
            assert final.state == State.STATE_SUCCEEDED, final.error
            deadline = time.monotonic() + 15
            while not any(s.name == "run_export" for _, s in received):
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the batch holding the last upload spans
        finally:
            worker.stop()

    finished = {_span_id(s): s for s in spans.get_finished_spans()}
    (enqueue,) = [
        s
        for s in finished.values()
        if s.name == "enqueue run_export"
        and (s.attributes or {}).get("sparc.export_id") == export_id
    ]
    assert enqueue.kind == SpanKind.PRODUCER and enqueue.parent is not None
    rpc = finished[f"{enqueue.parent.span_id:016x}"]
    assert rpc.name == "sparc.video.v1.ExportService/CreateExport"
    assert rpc.kind == SpanKind.SERVER and rpc.parent is None
    assert rpc.context is not None
    trace_id = f"{rpc.context.trace_id:032x}"
    assert record.trace_context.startswith(f"00-{trace_id}-{_span_id(enqueue)}-")

    worker_spans = {
        span.span_id.hex(): span for resource, span in received if span.trace_id.hex() == trace_id
    }
    resources = {r["service.name"] for r, s in received if s.trace_id.hex() == trace_id}
    assert resources == {"sparc-video-worker-under-test"}
    by_name: dict[str, list[Any]] = {}
    for span in worker_spans.values():
        by_name.setdefault(span.name, []).append(span)
    (job,) = by_name["run_export"]
    assert job.parent_span_id.hex() == _span_id(enqueue)
    assert job.kind == 5  # SPAN_KIND_CONSUMER in the OTLP enum
    job_attributes = {a.key: a.value for a in job.attributes}
    assert job_attributes["sparc.export_id"].string_value == export_id
    assert job_attributes["sparc.attempt"].int_value == 1
    assert job_attributes["sparc.job.status"].string_value == "succeeded"

    def children(parent: Any, name: str) -> list[Any]:
        return [s for s in by_name.get(name, []) if s.parent_span_id == parent.span_id]

    (download,) = children(job, "download")
    (process,) = children(job, "process")
    (encode,) = children(process, "transcode")
    (thumbs,) = children(process, "thumbnail")

    def attribute(span: Any, key: str) -> Any:
        return next(a.value for a in span.attributes if a.key == key)

    # The outputs, then the signed manifest and its signature.
    uploads = children(job, "upload")
    manifest_keys = [final.manifest.storage_key, final.manifest.signature_storage_key]
    assert len(uploads) == len(final.outputs) + 2 and len(final.outputs) == 3
    assert sorted(attribute(u, "storage.key").string_value for u in uploads) == sorted(
        [o.storage_key for o in final.outputs] + manifest_keys
    )
    uploaded = sorted(
        attribute(u, "storage.bytes").int_value
        for u in uploads
        if attribute(u, "storage.key").string_value not in manifest_keys
    )
    assert uploaded == sorted(o.size_bytes for o in final.outputs)
    # Phases in order: download, then the operations inside process, then the uploads.
    assert download.end_time_unix_nano <= process.start_time_unix_nano
    assert process.start_time_unix_nano <= encode.start_time_unix_nano
    assert encode.end_time_unix_nano <= thumbs.start_time_unix_nano <= process.end_time_unix_nano
    assert all(process.end_time_unix_nano <= u.start_time_unix_nano for u in uploads)
    encode_attributes = {a.key: a.value for a in encode.attributes}
    assert encode_attributes["sparc.media_seconds"].double_value == pytest.approx(1.0, abs=0.1)
    assert encode_attributes["sparc.speed"].double_value > 0


async def test_server_spans_continue_the_callers_trace_on_unary_and_stream_calls(
    service_settings: Callable[..., Settings], spans: InMemorySpanExporter
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    metadata = (("traceparent", f"00-{trace_id}-{parent_id}-01"),)
    spans.clear()
    async with start_service(service_settings(), worker=False) as service:
        await service.exports.GetQueueStats(
            export_service_pb2.GetQueueStatsRequest(), metadata=metadata
        )
        with pytest.raises(grpc.aio.AioRpcError):
            request = export_service_pb2.WatchExportRequest(name="exports/0123456789abcdef0123")
            _ = [m async for m in service.exports.WatchExport(request, metadata=metadata)]
    wanted = {f"sparc.video.v1.ExportService/{m}" for m in ("GetQueueStats", "WatchExport")}
    # A stream's server span ends when its handler does, which may be after the client saw the
    # status: wait for it rather than read the exporter once.
    deadline = time.monotonic() + 30
    while True:
        by_name = {s.name: s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER}
        if wanted <= set(by_name):
            break
        assert time.monotonic() < deadline, sorted(by_name)
        await asyncio.sleep(0.05)
    for method in ("GetQueueStats", "WatchExport"):
        span = by_name[f"sparc.video.v1.ExportService/{method}"]
        assert span.parent is not None and span.parent.is_remote
        assert span.context is not None
        assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (
            trace_id,
            parent_id,
        )
        assert (span.attributes or {})["rpc.method"] == method


def test_tracing_configuration_follows_the_standard_variables(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    assert exporters_from_env({}) == []
    assert exporters_from_env({"OTEL_TRACES_EXPORTER": "none"}) == []
    (otlp,) = exporters_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert isinstance(otlp, OTLPSpanExporter)
    kinds = [type(e) for e in exporters_from_env({"OTEL_TRACES_EXPORTER": "console,otlp"})]
    assert kinds == [ConsoleSpanExporter, OTLPSpanExporter]
    with caplog.at_level(logging.WARNING):
        assert exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin-v9"}) == []
    assert "zipkin-v9" in caplog.text
    assert setup_tracing("x", env={"OTEL_SDK_DISABLED": "true"}) is None


def test_records_written_before_tracing_still_load() -> None:
    record = ExportRecord(id="0193c8d1a2b4c5d6e7f8", source_key="in/a.mp4", operations=[])
    data = record.to_json_dict()
    del data["trace_context"]
    assert ExportRecord.from_json_dict(data).trace_context == ""


@contextlib.contextmanager
def captured_logs(settings: Settings, level: str = "DEBUG") -> Iterator[io.StringIO]:
    root = logging.getLogger()
    old_level = root.level
    stream = io.StringIO()
    handler = logging_setup.configure_logging(settings, level, stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name in logging_setup._CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)


async def test_json_logs_carry_export_job_attempt_and_trace_and_no_secrets(
    s3_service_settings: Callable[..., Settings],
    spans: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    settings = observed_settings(s3_service_settings, log_format="json")
    with captured_logs(settings) as stream:
        async with start_service(settings) as service:
            clip = tmp_path / "clip.mp4"
            make_sample_clip(clip, width=160, height=90, duration_s=0.5)
            await service.app.storage.upload_file(clip, "in/clip.mp4", "video/mp4")
            created = await service.exports.CreateExport(
                create_request("in/clip.mp4", thumbnail("50%"))
            )
            final = (await watch_to_end(service, created.name))[-1].export
            assert final.state == State.STATE_SUCCEEDED
            await arq_finished(service, created.name)
            urls = await service.exports.GetExportDownloadUrl(
                export_service_pb2.GetExportDownloadUrlRequest(name=created.name)
            )
            url = urls.urls[0].url
            signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", url)
            assert signature is not None
            # What a careless log line would leak; the formatter must not let it out.
            logging.getLogger("sparc_video.test").warning(
                "download at %s with %s:%s", url, ACCESS_KEY, SECRET_KEY
            )
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines, "nothing logged"
    export_id = created.name.removeprefix("exports/")
    started = next(line for line in lines if "attempt 1 started" in line["message"])
    assert started["export_id"] == export_id
    assert started["job_id"] == export_id
    assert started["attempt"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", started["trace_id"])
    record = await_record_trace(text, export_id)
    assert record == started["trace_id"]
    leak = next(line for line in lines if line["logger"] == "sparc_video.test")
    assert "X-Amz-Signature=REDACTED" in leak["message"]
    for secret in (signature.group(1), SECRET_KEY, ACCESS_KEY):
        assert secret not in text
    assert not any(line["logger"].startswith("botocore") for line in lines)


def await_record_trace(text: str, export_id: str) -> str:
    """The trace id the worker's lines of this export carry (all of them the same)."""
    ids = {
        line.get("trace_id")
        for line in map(json.loads, text.splitlines())
        if line.get("export_id") == export_id and line["logger"].startswith("workers")
    }
    assert len(ids) == 1, ids
    (trace_id,) = ids
    assert isinstance(trace_id, str)
    return trace_id


def test_text_logs_redact_signed_links_and_url_passwords() -> None:
    static_token = "static-service-token-0123456789"
    jwt_secret = "jwt-hs256-secret-" + "s" * 32
    settings = Settings(
        local_signing_key="local-signing-key-123456",
        auth_static_tokens=(StaticToken("ci", Role.OPERATOR, static_token),),
        auth_jwt_secret=jwt_secret,
    )
    with captured_logs(settings, "INFO") as stream, logging_setup.bind(export_id="abc", attempt=2):
        logging.getLogger("sparc_video.test").info(
            "link http://h/files/x.mp4?expires=1&sig=deadbeef redis://:hunter22@redis:6379/0 "
            f"key local-signing-key-123456 token {static_token} secret {jwt_secret} "
            "authorization: Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"
        )
    line = stream.getvalue()
    assert "deadbeef" not in line and "hunter22" not in line and "local-signing-key" not in line
    assert static_token not in line and jwt_secret not in line and "eyJzdWIiOi" not in line
    assert "sig=REDACTED" in line and "redis://:REDACTED@redis" in line
    assert "Bearer REDACTED" in line
    assert line.rstrip().endswith("[export_id=abc attempt=2]")


async def test_a_real_prometheus_scrapes_server_and_worker(
    service_settings: Callable[..., Settings], tmp_path: Path, prometheus_tools: PrometheusTools
) -> None:
    binary = prometheus_tools.prometheus
    worker_port = free_port()
    settings = service_settings(worker_metrics_port=worker_port)
    async with start_service(settings) as service:
        server_target = service.http_url.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: sparc-video\n    static_configs: [{{targets: ['{server_target}']}}]\n"
            "  - job_name: sparc-video-worker\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{worker_port}']}}]\n"
        )
        web_port = free_port()
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{web_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "prometheus.log").open("wb"),
        )
        try:
            query = f"http://127.0.0.1:{web_port}/api/v1/query"
            wanted = {
                'video_processing_queue_size{job="sparc-video",state="queued"}': 0.0,
                'video_worker_slots{job="sparc-video-worker"}': float(settings.worker_concurrency),
                'up{job="sparc-video"}': 1.0,
                'up{job="sparc-video-worker"}': 1.0,
            }
            found: dict[str, float] = {}
            deadline = time.monotonic() + 20
            async with aiohttp.ClientSession() as session:
                while found != wanted:
                    assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
                    assert time.monotonic() < deadline, (
                        found,
                        (tmp_path / "prometheus.log").read_text()[-2000:],
                    )
                    await asyncio.sleep(0.25)
                    for expression in wanted:
                        with contextlib.suppress(aiohttp.ClientError):
                            async with session.get(query, params={"query": expression}) as reply:
                                result = (await reply.json())["data"]["result"]
                            if result:
                                found[expression] = float(result[0]["value"][1])
        finally:
            process.terminate()
            process.wait(10)
