"""End to end: gRPC CreateExport → Redis record + arq job → worker → PyAV → storage → download.

Real Redis, a real S3 HTTP endpoint (moto's server) or the local backend, real PyAV encodes of
clips generated here, outputs fetched over HTTP and decoded again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import av
import grpc
import pytest
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.core.settings import Settings
from sparc_video.exports.catalog import ExportFilter
from sparc_video.media.synth import make_sample_clip, read_frame_index
from tests.camera_helpers import violation_fields
from tests.fixtures.service import RunningService, start_service

State = export_pb2.Export


def create_request(
    source_key: str, *ops: export_pb2.Operation, request_id: str = ""
) -> export_service_pb2.CreateExportRequest:
    return export_service_pb2.CreateExportRequest(
        export=export_pb2.Export(
            source=export_pb2.ExportSource(object_key=source_key), operations=list(ops)
        ),
        request_id=request_id,
    )


def transcode(**options: str) -> export_pb2.Operation:
    return export_pb2.Operation(transcode=export_pb2.TranscodeOptions(**options))


def thumbnail(*timestamps: str, size: str = "") -> export_pb2.Operation:
    return export_pb2.Operation(
        thumbnail=export_pb2.ThumbnailOptions(timestamps=list(timestamps), size=size)
    )


async def put_clip(service: RunningService, tmp_path: Path, key: str, **clip: float | int) -> None:
    path = tmp_path / "clip-source.mp4"
    await asyncio.to_thread(make_sample_clip, path, **clip)  # type: ignore[arg-type]
    await service.app.storage.upload_file(path, key, "video/mp4")


async def watch_to_end(
    service: RunningService, name: str, after: str = ""
) -> list[export_service_pb2.WatchExportResponse]:
    request = export_service_pb2.WatchExportRequest(name=name, after_event_id=after)
    messages = []
    async with asyncio.timeout(120):
        async for message in service.exports.WatchExport(request):
            messages.append(message)
    return messages


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.read()


async def run_full_export(
    service: RunningService,
    tmp_path: Path,
    clip: dict[str, int | float],
    resolution: str,
    thumb_size: str,
) -> None:
    await put_clip(service, tmp_path, "incoming/clip.mp4", **clip)
    created = await service.exports.CreateExport(
        create_request(
            "incoming/clip.mp4",
            transcode(codec="h264", bitrate="1000k", resolution=resolution, preset="ultrafast"),
            thumbnail("50%", size=thumb_size),
        )
    )
    assert created.state == State.STATE_QUEUED
    assert created.name.startswith("exports/")

    messages = await watch_to_end(service, created.name)
    assert messages[0].kind == export_service_pb2.WatchExportResponse.EVENT_KIND_SNAPSHOT
    final = messages[-1].export
    assert final.state == State.STATE_SUCCEEDED, final.error
    progress = [m.export.progress for m in messages if m.export.state == State.STATE_RUNNING]
    percents = [p.percent for p in progress]
    assert percents == sorted(percents), percents
    assert {p.current_operation for p in progress} == {"transcode", "thumbnail"}
    assert any(0 < p < 100 for p in percents), percents
    event_ids = [m.event_id for m in messages[1:]]
    assert len(set(event_ids)) == len(event_ids)

    got = await service.exports.GetExport(export_service_pb2.GetExportRequest(name=created.name))
    assert got.state == State.STATE_SUCCEEDED and got.attempt == 1
    assert got.start_time.seconds and got.end_time.seconds
    video, thumb = got.outputs
    assert video.kind == export_pb2.Output.KIND_VIDEO and video.video_codec == "h264"
    assert thumb.kind == export_pb2.Output.KIND_THUMBNAIL

    urls = await service.exports.GetExportDownloadUrl(
        export_service_pb2.GetExportDownloadUrlRequest(name=created.name)
    )
    assert [u.storage_key for u in urls.urls] == [video.storage_key, thumb.storage_key]
    video_bytes = await fetch(urls.urls[0].url)
    thumb_bytes = await fetch(urls.urls[1].url)
    assert len(video_bytes) == video.size_bytes

    (tmp_path / "out.mp4").write_bytes(video_bytes)
    want_w, want_h = (int(v) for v in resolution.split("x"))
    with av.open(str(tmp_path / "out.mp4")) as result:
        stream = result.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (want_w, want_h)
        assert result.duration is not None
        assert abs(result.duration / av.time_base - float(clip["duration_s"])) <= 0.1
        assert len(result.streams.audio) == 1

    (tmp_path / "thumb.jpg").write_bytes(thumb_bytes)
    thumb_w, thumb_h = (int(v) for v in thumb_size.split("x"))
    with av.open(str(tmp_path / "thumb.jpg")) as image:
        frame = next(image.decode(video=0))
        assert (frame.width, frame.height) == (thumb_w, thumb_h)
        index = read_frame_index(frame.to_ndarray(format="rgb24"))
    middle = round(float(clip["duration_s"]) * 30 / 2)
    assert abs(index - middle) <= 1, (index, middle)


async def test_export_through_storage(backend_service_settings: Settings, tmp_path: Path) -> None:
    async with start_service(backend_service_settings) as service:
        await run_full_export(
            service,
            tmp_path,
            {"width": 640, "height": 360, "duration_s": 3.0},
            resolution="320x180",
            thumb_size="160x90",
        )


@pytest.mark.slow
async def test_1080p_export_through_s3(
    s3_service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The full-size case: 1080p 10 s with audio → h264 1280x720 + 320x240 thumbnail (slow: the
    same path at 640x360 runs by default in test_export_through_storage)."""
    async with start_service(s3_service_settings()) as service:
        await run_full_export(
            service,
            tmp_path,
            {"width": 1920, "height": 1080, "duration_s": 10.0},
            resolution="1280x720",
            thumb_size="320x240",
        )


# --- requests that must be refused, with nothing enqueued ------------------------------------


async def expect_error(call: object, code: grpc.StatusCode, *fragments: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    details = info.value.details() or ""
    for fragment in fragments:
        assert fragment in details, details
    return details


@pytest.mark.parametrize(
    ("ops", "fragments"),
    [
        ((), ["export.operations", "at least one operation"]),
        ((transcode(resolution="12x"),), ["resolution", "'12x'"]),
        ((transcode(bitrate="fast"),), ["bitrate", "'fast'"]),
        ((thumbnail("150%"),), ["timestamps[0]", "between 0% and 100%"]),
        ((transcode(codec="vp7"),), ["codec", "available"]),
        ((transcode(preset="warp"),), ["preset"]),
    ],
)
async def test_bad_operations_are_invalid_argument(
    api_only: RunningService,
    tmp_path: Path,
    ops: tuple[export_pb2.Operation, ...],
    fragments: list[str],
) -> None:
    await api_only.app.storage.put_bytes("in/x.mp4", b"not checked at create", "video/mp4")
    await expect_error(
        api_only.exports.CreateExport(create_request("in/x.mp4", *ops)),
        grpc.StatusCode.INVALID_ARGUMENT,
        *fragments,
    )
    assert await api_only.app.queue.depth() == 0
    records, _ = await api_only.app.store.page(page_size=10, page_token="", keep=ExportFilter())
    assert records == []


async def test_error_details_carry_field_violations(api_only: RunningService) -> None:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api_only.exports.CreateExport(create_request("", transcode(bitrate="fast")))
    status = rpc_status.from_call(info.value)
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    assert fields == ["export.source.object_key", "export.operations[0].transcode.bitrate"]


async def test_missing_source_and_unknown_export_are_not_found(api_only: RunningService) -> None:
    await expect_error(
        api_only.exports.CreateExport(create_request("nope/missing.mp4", thumbnail("1"))),
        grpc.StatusCode.NOT_FOUND,
        "nope/missing.mp4",
    )
    assert await api_only.app.queue.depth() == 0
    name = "exports/0123456789abcdef0123"
    for call in (
        api_only.exports.GetExport(export_service_pb2.GetExportRequest(name=name)),
        api_only.exports.CancelExport(export_service_pb2.CancelExportRequest(name=name)),
        api_only.exports.GetExportDownloadUrl(
            export_service_pb2.GetExportDownloadUrlRequest(name=name)
        ),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND, "0123456789abcdef0123")
    await expect_error(
        api_only.exports.GetExport(export_service_pb2.GetExportRequest(name="exports/../x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "export name",
    )


async def test_request_id_is_idempotent(api_only: RunningService) -> None:
    await api_only.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
    request = create_request("in/a.mp4", thumbnail("1"), request_id="req-42")
    first, second = await asyncio.gather(
        api_only.exports.CreateExport(request), api_only.exports.CreateExport(request)
    )
    third = await api_only.exports.CreateExport(request)
    assert first.name == second.name == third.name
    assert third.request_id == "req-42"
    assert await api_only.app.queue.depth() == 1


async def test_retried_request_id_survives_a_deleted_input(api_only: RunningService) -> None:
    # The watermark image is looked up in storage on every call (no cache): once it is gone,
    # only the request id can make the retry succeed.
    storage = api_only.app.storage
    await storage.put_bytes("in/a.mp4", b"x", "video/mp4")
    await storage.put_bytes("logos/a.png", b"x", "image/png")
    watermark = export_pb2.Operation(
        watermark=export_pb2.WatermarkOptions(image_object_key="logos/a.png")
    )
    first = await api_only.exports.CreateExport(
        create_request("in/a.mp4", watermark, request_id="req-7")
    )
    await storage.delete("logos/a.png")
    retried = await api_only.exports.CreateExport(
        create_request("in/a.mp4", watermark, request_id="req-7")
    )
    assert retried.name == first.name
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api_only.exports.CreateExport(
            create_request("in/a.mp4", watermark, request_id="req-8")
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert await api_only.app.queue.depth() == 1


async def test_late_watcher_gets_snapshot_and_cancel_of_queued_export(
    api_only: RunningService,
) -> None:
    await api_only.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
    created = await api_only.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))
    stream = api_only.exports.WatchExport(export_service_pb2.WatchExportRequest(name=created.name))
    first = await stream.read()
    assert first.kind == export_service_pb2.WatchExportResponse.EVENT_KIND_SNAPSHOT
    assert first.export.state == State.STATE_QUEUED

    cancelled = await api_only.exports.CancelExport(
        export_service_pb2.CancelExportRequest(name=created.name)
    )
    assert cancelled.state == State.STATE_CANCELLED
    second = await stream.read()
    assert second.kind == export_service_pb2.WatchExportResponse.EVENT_KIND_STATE_CHANGED
    assert second.export.state == State.STATE_CANCELLED
    assert await stream.read() == grpc.aio.EOF
    assert await api_only.app.queue.depth() == 0

    # A watcher arriving after the end gets the final snapshot and the stream ends.
    late = await watch_to_end(api_only, created.name)
    assert [m.export.state for m in late] == [State.STATE_CANCELLED]
    # Resuming after the first event replays the cancellation.
    resumed = await watch_to_end(api_only, created.name, after=first.event_id)
    assert [m.export.state for m in resumed] == [State.STATE_CANCELLED]
    assert resumed[0].event_id == second.event_id

    await expect_error(
        api_only.exports.CancelExport(export_service_pb2.CancelExportRequest(name=created.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "already ended",
    )
    stats = await api_only.exports.GetQueueStats(export_service_pb2.GetQueueStatsRequest())
    assert (stats.queued, stats.cancelled) == (0, 1)


async def test_list_exports_pages_and_filters(api_only: RunningService) -> None:
    await api_only.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
    names = []
    for _ in range(5):
        created = await api_only.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))
        names.append(created.name)
    await api_only.exports.CancelExport(export_service_pb2.CancelExportRequest(name=names[1]))

    seen, token = [], ""
    while True:
        page = await api_only.exports.ListExports(
            export_service_pb2.ListExportsRequest(page_size=2, page_token=token)
        )
        seen += [e.name for e in page.exports]
        token = page.next_page_token
        if not token:
            break
    assert seen == names[::-1]

    cancelled = await api_only.exports.ListExports(
        export_service_pb2.ListExportsRequest(filter="state = CANCELLED")
    )
    assert [e.name for e in cancelled.exports] == [names[1]]
    await expect_error(
        api_only.exports.ListExports(export_service_pb2.ListExportsRequest(filter="color = red")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "state = NAME",
    )
    await expect_error(
        api_only.exports.ListExports(export_service_pb2.ListExportsRequest(page_token="garbage")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    )
    stats = await api_only.exports.GetQueueStats(export_service_pb2.GetQueueStatsRequest())
    assert (stats.queued, stats.cancelled) == (4, 1)
    assert stats.oldest_queued_age.ToNanoseconds() > 0


async def test_download_url_before_success_is_failed_precondition(
    api_only: RunningService,
) -> None:
    await api_only.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
    created = await api_only.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))
    await expect_error(
        api_only.exports.GetExportDownloadUrl(
            export_service_pb2.GetExportDownloadUrlRequest(name=created.name)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "QUEUED",
    )


async def test_undecodable_source_fails_with_reason(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with start_service(service_settings()) as service:
        await service.app.storage.put_bytes("in/bad.mp4", b"\x00garbage" * 1000, "video/mp4")
        created = await service.exports.CreateExport(create_request("in/bad.mp4", thumbnail("1")))
        messages = await watch_to_end(service, created.name)
        final = messages[-1].export
        assert final.state == State.STATE_FAILED
        assert final.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert final.error.message
        assert list(Path(service.settings.temp_dir).iterdir()) == []


async def test_an_odd_video_size_is_refused_rather_than_rounded(api_only: RunningService) -> None:
    """1281x721 would come out 1280x720 (video sizes are kept even for 4:2:0 chroma): the
    request is refused, saying so, whatever the pixel format."""
    await api_only.app.storage.put_bytes("in/clip.mp4", b"x", "video/mp4")
    for pixel_format in ("", "yuv444p"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api_only.exports.CreateExport(
                create_request(
                    "in/clip.mp4", transcode(resolution="1281x721", pixel_format=pixel_format)
                )
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violation_fields(refused.value) == ["export.operations[0].transcode.resolution"]
        assert "must be even" in (refused.value.details() or "")
        assert "1280x720" in (refused.value.details() or "")
    # 0 on one side keeps the aspect ratio; the planner picks an even size.
    kept = await api_only.exports.CreateExport(
        create_request("in/clip.mp4", transcode(resolution="640x0"))
    )
    assert kept.state == State.STATE_QUEUED
