"""A multi-operation plan through the real service: gRPC CreateExport → Redis → arq worker →
storage (source + watermark image) → media child → outputs in storage, described in the record.
Plus the refusals CreateExport makes for contradictory plans and missing watermark images."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import av
import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.core.settings import Settings
from tests.fixtures.service import RunningService, start_service
from tests.media import make_clip, read_frame_index
from tests.test_export_e2e import create_request, fetch, watch_to_end

State = export_pb2.Export
Op = export_pb2.Operation


def _png_logo() -> bytes:
    pixels = np.zeros((40, 80, 4), dtype=np.uint8)
    pixels[:, :40] = (0, 0, 255, 255)  # left half opaque blue, right half transparent
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


async def test_multi_operation_plan_end_to_end(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    clip = await asyncio.to_thread(make_clip, tmp_path / "in.mp4", duration_s=3.0, gop=30)
    async with start_service(service_settings()) as service:
        await service.app.storage.upload_file(clip, "cams/lobby.mp4", "video/mp4")
        await service.app.storage.put_bytes("logos/acme.png", _png_logo(), "image/png")
        created = await service.exports.CreateExport(
            create_request(
                "cams/lobby.mp4",
                Op(trim=export_pb2.TrimOptions(start="00:00:01.000", end="2.5")),
                Op(
                    watermark=export_pb2.WatermarkOptions(
                        image_object_key="logos/acme.png",
                        position=export_pb2.WatermarkOptions.POSITION_BOTTOM_LEFT,
                        margin=0,
                    )
                ),
                Op(
                    transcode=export_pb2.TranscodeOptions(
                        resolution="160x0", preset="ultrafast", audio_codec="opus"
                    )
                ),
                Op(
                    compress=export_pb2.CompressOptions(
                        quality=export_pb2.CompressOptions.QUALITY_LOW
                    )
                ),
                Op(
                    thumbnail=export_pb2.ThumbnailOptions(
                        timestamps=["0%", "00:00:00.500"],
                        format=export_pb2.ThumbnailOptions.FORMAT_PNG,
                    )
                ),
                Op(
                    thumbnail=export_pb2.ThumbnailOptions(
                        size="80x0",
                        sprite_sheet=export_pb2.SpriteSheetOptions(frame_count=4, columns=2),
                    )
                ),
                Op(
                    convert=export_pb2.ConvertOptions(
                        container=export_pb2.ConvertOptions.CONTAINER_MKV
                    )
                ),
            )
        )
        assert created.state == State.STATE_QUEUED
        assert created.operations[2].transcode.audio_codec == "opus"

        messages = await watch_to_end(service, created.name)
        final = messages[-1].export
        assert final.state == State.STATE_SUCCEEDED, final.error
        running = [m.export.progress for m in messages if m.export.state == State.STATE_RUNNING]
        percents = [p.percent for p in running]
        assert percents == sorted(percents), percents
        labels = {p.current_operation for p in running}
        assert "trim+watermark+transcode+compress+convert" in labels
        # (Before the media child reports, the record names the first operation.)
        assert labels <= {"trim+watermark+transcode+compress+convert", "thumbnail", "trim"}

        video, first, second, sprite = final.outputs
        assert video.kind == export_pb2.Output.KIND_VIDEO
        assert video.storage_key.endswith("/video.mkv")
        assert video.content_type == "video/x-matroska"
        assert (video.video_codec, video.audio_codec, video.video_encoder) == (
            "h264",
            "opus",
            "libx264",
        )
        assert (video.width, video.height, video.operation_index) == (160, 120, 6)
        assert video.duration.ToMilliseconds() == pytest.approx(1500, abs=40)
        assert len(video.sha256) == 64 and video.size_bytes > 0
        assert not video.HasField("first_keyframe_time")
        assert [first.kind, second.kind] == [export_pb2.Output.KIND_THUMBNAIL] * 2
        assert first.content_type == "image/png" and first.storage_key.endswith(".png")
        assert [first.timestamp.ToMilliseconds(), second.timestamp.ToMilliseconds()] == [0, 500]
        assert sprite.kind == export_pb2.Output.KIND_SPRITE_SHEET
        assert sprite.storage_key.endswith("/sprite-5.jpg")
        sheet = sprite.sprite_sheet
        assert (sheet.columns, sheet.rows, sheet.tile_width, sheet.tile_height) == (2, 2, 80, 60)
        assert len(sheet.tile_times) == 4

        urls = await service.exports.GetExportDownloadUrl(
            export_service_pb2.GetExportDownloadUrlRequest(name=created.name)
        )
        assert [u.storage_key for u in urls.urls] == [o.storage_key for o in final.outputs]
        (tmp_path / "out.mkv").write_bytes(await fetch(urls.urls[0].url))
        with av.open(str(tmp_path / "out.mkv")) as result:
            pictures = [f.to_ndarray(format="rgb24") for f in result.decode(video=0)]
        assert [read_frame_index(p) for p in pictures] == list(range(30, 75))
        # The watermark (scaled with the picture to 40x20) sits in the bottom left corner.
        corner = pictures[0][104:116, 2:18].astype(float).mean(axis=(0, 1))
        assert corner[2] > 180 and corner[0] < 80, corner

        thumbs = [Image.open(io.BytesIO(await fetch(u.url))) for u in urls.urls[1:3]]
        assert [read_frame_index(np.asarray(t.convert("RGB"))) for t in thumbs] == [30, 45]


@pytest.fixture
async def api_only(service_settings: Callable[..., Settings]) -> AsyncIterator[RunningService]:
    async with start_service(service_settings(), worker=False) as service:
        await service.app.storage.put_bytes("in/x.mp4", b"not checked at create", "video/mp4")
        yield service


async def test_contradictory_plan_is_invalid_argument_naming_the_field(
    api_only: RunningService,
) -> None:
    request = create_request(
        "in/x.mp4",
        Op(transcode=export_pb2.TranscodeOptions(codec="h265")),
        Op(convert=export_pb2.ConvertOptions(container=export_pb2.ConvertOptions.CONTAINER_WEBM)),
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api_only.exports.CreateExport(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)
    assert status is not None
    violations = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [(v.field, v.description) for v in bad.field_violations]
    ((field, description),) = violations
    assert field == "export.operations[1].convert.container"
    assert "h265" in description and "vp9, av1" in description
    assert await api_only.app.queue.depth() == 0


async def test_missing_watermark_image_is_not_found(api_only: RunningService) -> None:
    request = create_request(
        "in/x.mp4", Op(watermark=export_pb2.WatermarkOptions(image_object_key="logos/none.png"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api_only.exports.CreateExport(request)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "logos/none.png" in (info.value.details() or "")
    assert await api_only.app.queue.depth() == 0
