"""Property-based: arbitrary requests to every RPC get a deliberate status, never UNKNOWN/INTERNAL.

The server runs on its own event loop in a background thread; hypothesis drives it through the
synchronous gRPC client, so every example is a real call over a real channel.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sparc.video.v1 import export_pb2, export_service_pb2, export_service_pb2_grpc

from tests.fixtures.background import background_service

ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
}

text = st.text(max_size=40) | st.sampled_from(
    [
        "",
        "50%",
        "150%",
        "-1",
        "1e309",
        "nan",
        "00:00:01.5",
        "1280x720",
        "0x0",
        "12x",
        "1000k",
        "exports/",
        "exports/0123456789abcdef0123",
        "../etc/passwd",
        "a\x00b",
        "h264",
        "fast",
        "state = FAILED",
        "state=BOGUS",
        "\u202e",
    ]
)
operations = st.lists(
    st.one_of(
        st.builds(
            lambda c, b, r, p: export_pb2.Operation(
                transcode=export_pb2.TranscodeOptions(codec=c, bitrate=b, resolution=r, preset=p)
            ),
            text,
            text,
            text,
            text,
        ),
        st.builds(
            lambda ts, size: export_pb2.Operation(
                thumbnail=export_pb2.ThumbnailOptions(timestamps=ts, size=size)
            ),
            st.lists(text, max_size=5),
            text,
        ),
        st.just(export_pb2.Operation()),
    ),
    max_size=4,
)


@pytest.fixture(scope="module")
def stub(
    redis_url: str, shared_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[export_service_pb2_grpc.ExportServiceStub]:
    with background_service(
        redis_url, shared_database_url, tmp_path_factory.mktemp("props")
    ) as service:
        ch = service.channel
        yield export_service_pb2_grpc.ExportServiceStub(ch)
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def expect_deliberate(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        assert exc.code() in ALLOWED, (exc.code(), exc.details())
        assert exc.details()


COMMON = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@COMMON
@given(key=text | st.just("in/present.mp4"), ops=operations, request_id=text)
def test_create_export(
    stub: export_service_pb2_grpc.ExportServiceStub,
    key: str,
    ops: list[export_pb2.Operation],
    request_id: str,
) -> None:
    request = export_service_pb2.CreateExportRequest(
        export=export_pb2.Export(source=export_pb2.ExportSource(object_key=key), operations=ops),
        request_id=request_id,
    )
    expect_deliberate(lambda: stub.CreateExport(request, timeout=10))


@COMMON
@given(name=text, after=text, ttl=st.integers(min_value=-(10**9), max_value=10**9))
def test_calls_by_name(
    stub: export_service_pb2_grpc.ExportServiceStub, name: str, after: str, ttl: int
) -> None:
    expect_deliberate(
        lambda: stub.GetExport(export_service_pb2.GetExportRequest(name=name), timeout=10)
    )
    expect_deliberate(
        lambda: stub.CancelExport(export_service_pb2.CancelExportRequest(name=name), timeout=10)
    )
    request = export_service_pb2.GetExportDownloadUrlRequest(name=name)
    request.ttl.seconds = ttl
    expect_deliberate(lambda: stub.GetExportDownloadUrl(request, timeout=10))

    def watch() -> None:
        stream = stub.WatchExport(
            export_service_pb2.WatchExportRequest(name=name, after_event_id=after), timeout=2
        )
        try:
            next(stream)
        finally:
            stream.cancel()

    try:
        watch()
    except grpc.RpcError as exc:
        assert exc.code() in ALLOWED | {grpc.StatusCode.CANCELLED}, (exc.code(), exc.details())


@COMMON
@given(size=st.integers(min_value=-(2**31), max_value=2**31 - 1), token=text, filt=text)
def test_list_exports(
    stub: export_service_pb2_grpc.ExportServiceStub, size: int, token: str, filt: str
) -> None:
    request = export_service_pb2.ListExportsRequest(page_size=size, page_token=token, filter=filt)
    expect_deliberate(lambda: stub.ListExports(request, timeout=10))
