"""Errors become statuses in one server interceptor, for unary and streaming RPCs alike.

A domain error answers its code with google.rpc details; anything unexpected answers INTERNAL
(never UNKNOWN) with an error id that the server logged beside the traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NoReturn

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.api.status import ERROR_DOMAIN, grpc_code
from sparc_video.core.errors import Code
from sparc_video.core.settings import Settings
from sparc_video.exports.service import WatchMessage
from sparc_video.observability.tracing import setup_tracing
from tests.fixtures.service import RunningService, start_service

MISSING = "exports/0123456789abcdef0123"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    assert setup_tracing("sparc-video-tests", env={}, exporters=[memory]) is not None
    return memory


def rpc_span(spans: InMemorySpanExporter, method: str) -> Any:
    (span,) = [s for s in spans.get_finished_spans() if s.name == f"sparc.video.v1.{method}"]
    assert span.kind == SpanKind.SERVER
    return span


def details(error: grpc.aio.AioRpcError) -> tuple[status_pb2.Status, dict[str, Any]]:
    """The google.rpc.Status of a failed call and its details by type name."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no grpc-status-details-bin"
    found: dict[str, Any] = {}
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.DESCRIPTOR.name] = message
    return status, found


def assert_internal_with_logged_id(
    error: grpc.aio.AioRpcError, caplog: pytest.LogCaptureFixture, secret: str
) -> None:
    assert error.code() == grpc.StatusCode.INTERNAL
    _, found = details(error)
    info = found["ErrorInfo"]
    assert (info.reason, info.domain) == ("INTERNAL", ERROR_DOMAIN)
    error_id = info.metadata["error_id"]
    assert len(error_id) == 16
    assert error_id in (error.details() or "")
    # The caller learns the id, never the exception's text; the log has both.
    assert secret not in (error.details() or "")
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged, "the error id is not in the server's log"
    assert logged[0].exc_info is not None and secret in str(logged[0].exc_info[1])


async def test_unexpected_error_in_a_unary_handler_is_internal_with_a_logged_id(
    service_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    async with start_service(service_settings(), worker=False) as service:

        async def broken(*args: Any, **kwargs: Any) -> NoReturn:
            raise RuntimeError("disk on fire 4711")

        monkeypatch.setattr(service.app.exports, "get", broken)
        with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as info:
            await service.exports.GetExport(export_service_pb2.GetExportRequest(name=MISSING))
    assert_internal_with_logged_id(info.value, caplog, "disk on fire 4711")
    # The RPC's span says so too, with the id an operator searches for.
    span = rpc_span(spans, "ExportService/GetExport")
    attributes = span.attributes or {}
    assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    assert attributes["rpc.service"] == "sparc.video.v1.ExportService"
    assert attributes["rpc.method"] == "GetExport"
    assert attributes["sparc.error_id"] in (info.value.details() or "")
    assert span.status.status_code == StatusCode.ERROR


async def test_unexpected_error_in_a_stream_before_and_while_streaming(
    service_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        created = await create_export(service, tmp_path)
        real_watch = service.app.exports.watch

        async def before(*args: Any, **kwargs: Any) -> AsyncIterator[WatchMessage]:
            raise RuntimeError("before the first message 1234")
            yield  # an async generator, as the real one

        async def during(*args: Any, **kwargs: Any) -> AsyncIterator[WatchMessage]:
            async for message in real_watch(*args, **kwargs):
                yield message
                raise RuntimeError("after the first message 5678")

        request = export_service_pb2.WatchExportRequest(name=created.name)
        monkeypatch.setattr(service.app.exports, "watch", before)
        with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as first:
            _ = [m async for m in service.exports.WatchExport(request)]
        assert_internal_with_logged_id(first.value, caplog, "before the first message 1234")

        monkeypatch.setattr(service.app.exports, "watch", during)
        received: list[export_service_pb2.WatchExportResponse] = []
        with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as second:
            async for message in service.exports.WatchExport(request):
                received.append(message)
        assert [m.export.name for m in received] == [created.name]
        assert_internal_with_logged_id(second.value, caplog, "after the first message 5678")


async def test_domain_errors_map_to_their_codes_with_details(
    service_settings: Callable[..., Settings],
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    async with start_service(service_settings(), worker=False) as service:
        # Unary, NOT_FOUND with its reason.
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await service.exports.GetExport(export_service_pb2.GetExportRequest(name=MISSING))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        _, found = details(missing.value)
        assert found["ErrorInfo"].reason == "EXPORT_NOT_FOUND"
        assert "error_id" not in found["ErrorInfo"].metadata

        # Unary, INVALID_ARGUMENT with every bad field.
        bad = export_service_pb2.CreateExportRequest(
            export=export_pb2.Export(
                source=export_pb2.ExportSource(object_key="../etc/passwd"),
                operations=[
                    export_pb2.Operation(transcode=export_pb2.TranscodeOptions(resolution="wide"))
                ],
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await service.exports.CreateExport(bad)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        _, found = details(invalid.value)
        assert found["ErrorInfo"].reason == "INVALID_ARGUMENT"
        fields = {v.field for v in found["BadRequest"].field_violations}
        assert {"export.source.object_key", "export.operations[0].transcode.resolution"} <= fields

        # Streaming: the error raised before the first message is the stream's status.
        with pytest.raises(grpc.aio.AioRpcError) as watch_missing:
            _ = [
                m
                async for m in service.exports.WatchExport(
                    export_service_pb2.WatchExportRequest(name=MISSING)
                )
            ]
        assert watch_missing.value.code() == grpc.StatusCode.NOT_FOUND
        _, found = details(watch_missing.value)
        assert found["ErrorInfo"].reason == "EXPORT_NOT_FOUND"
        span = rpc_span(spans, "ExportService/WatchExport")
        assert (span.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
        assert (span.attributes or {})["error.type"] == "NOT_FOUND"
        assert "sparc.error_id" not in (span.attributes or {})
        spans.clear()

        # A malformed name on a stream: INVALID_ARGUMENT with the field.
        with pytest.raises(grpc.aio.AioRpcError) as watch_bad:
            _ = [
                m
                async for m in service.exports.WatchExport(
                    export_service_pb2.WatchExportRequest(name="exports/nope")
                )
            ]
        assert watch_bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        _, found = details(watch_bad.value)
        assert [v.field for v in found["BadRequest"].field_violations] == ["name"]


def test_every_domain_code_has_the_grpc_code_of_its_name() -> None:
    for code in Code:
        assert grpc_code(code).name == code.name
        assert grpc_code(code).value[0] == code.value


async def create_export(service: RunningService, tmp_path: Path) -> export_pb2.Export:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"\x00" * 1024)
    await service.app.storage.upload_file(source, "in/clip.mp4", "video/mp4")
    return await service.exports.CreateExport(
        export_service_pb2.CreateExportRequest(
            export=export_pb2.Export(
                source=export_pb2.ExportSource(object_key="in/clip.mp4"),
                operations=[
                    export_pb2.Operation(thumbnail=export_pb2.ThumbnailOptions(timestamps=["0"]))
                ],
            )
        )
    )
