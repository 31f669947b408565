"""The client's public API against the real service (server, Redis, worker, PyAV): every
operation builder, source and priority makes a request the server accepts (and the cheap
ones a result), error details arrive parsed, and the sync facades drive the async clients.

tests/test_client.py covers the calls, retries, TLS and watch resumption; this file the
builders and the package's shape."""

from __future__ import annotations

import asyncio
import datetime
import inspect
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from PIL import Image
from sparc.video.v1 import export_pb2, export_service_pb2_grpc
from sparc.video.v1 import export_service_pb2 as esvc

from sparc_video import client as client_module
from sparc_video.client import (
    AsyncCameraClient,
    AsyncExportClient,
    Camera,
    CameraClient,
    ExportClient,
    InvalidArgumentError,
    NotFoundError,
    Priority,
    ServiceError,
    SyncClient,
    camera_range,
    clock,
    compress,
    convert,
    error_from_call,
    error_from_rpc,
    object_source,
    priority,
    recording_source,
    redact,
    region,
    sprite_sheet,
    thumbnail,
    transcode,
    trim,
    watermark,
)
from sparc_video.client.sync import blocking
from sparc_video.core.settings import Settings
from sparc_video.media.synth import make_sample_clip
from tests.fixtures.service import RunningService, start_service

Export = export_pb2.Export
T0 = datetime.datetime(2026, 11, 24, 8, 0, tzinfo=datetime.UTC)


async def put_clip(service: RunningService, tmp_path: Path, key: str, seconds: float) -> None:
    path = tmp_path / f"clip-{seconds}.mp4"
    await asyncio.to_thread(
        make_sample_clip, path, width=320, height=180, duration_s=seconds, fps=25, gop=25
    )
    await service.app.storage.upload_file(path, key, "video/mp4")


async def put_logo(service: RunningService, tmp_path: Path, key: str) -> None:
    path = tmp_path / "logo.png"
    Image.new("RGBA", (32, 16), (255, 0, 0, 128)).save(path)
    await service.app.storage.upload_file(path, key, "image/png")


# ---------------------------------------------------------------------------------------------
# Builders, offline


def test_builders_fill_the_messages_the_proto_defines() -> None:
    op = transcode(codec="h265", fps=29.97, hardware="auto", remove_audio=True)
    assert op.transcode.fps == "29.97" and op.transcode.remove_audio
    assert op.transcode.hardware == export_pb2.TranscodeOptions.HARDWARE_AUTO
    assert thumbnail().thumbnail.format == export_pb2.ThumbnailOptions.FORMAT_UNSPECIFIED
    sheet = sprite_sheet(frame_count=9, columns=3, format="png").thumbnail
    assert sheet.HasField("sprite_sheet") and sheet.sprite_sheet.columns == 3
    assert sheet.format == export_pb2.ThumbnailOptions.FORMAT_PNG
    assert convert("MKV").convert.container == export_pb2.ConvertOptions.CONTAINER_MKV
    assert convert("container_webm").convert.container == export_pb2.ConvertOptions.CONTAINER_WEBM
    squeezed = compress(quality=export_pb2.CompressOptions.QUALITY_HIGH, crf=0).compress
    assert squeezed.HasField("crf") and squeezed.crf == 0
    assert not compress().compress.HasField("crf")
    mark = watermark(text="Case 17", clock=clock(time_zone="Europe/Berlin"), position="top-left")
    assert mark.watermark.WhichOneof("content") == "text"
    assert mark.watermark.clock.time_zone == "Europe/Berlin"
    assert mark.watermark.position == export_pb2.WatermarkOptions.POSITION_TOP_LEFT
    assert not mark.watermark.HasField("opacity")
    assert watermark(image="logo.png").watermark.image_object_key == "logo.png"
    assert not watermark(clock=clock()).watermark.WhichOneof("content")
    cut = trim(start=1.5, duration=datetime.timedelta(seconds=2), mode="fast").trim
    assert (cut.start, cut.end, cut.duration) == ("1.5", "", "2")
    assert trim(start="00:00:01.5").trim.start == "00:00:01.5"
    hidden = redact(region(0, 0, 0.5, 0.5), (0.5, 0.5, 0.25, 0.25), mode="pixelate").redact
    assert [r.width for r in hidden.regions] == [0.5, 0.25]
    assert hidden.mode == export_pb2.RedactOptions.MODE_PIXELATE
    assert priority("batch") == Priority.PRIORITY_BATCH == priority(Priority.PRIORITY_BATCH)
    assert object_source("a.mp4").object_key == "a.mp4"
    assert recording_source("cameras/a/recordings/b").recording == "cameras/a/recordings/b"
    span = camera_range("gate", T0, T0 + datetime.timedelta(seconds=2), gap_mode="slate")
    assert span.camera_range.camera == "cameras/gate"
    assert span.camera_range.gap_mode == export_pb2.CameraTimeRange.GAP_MODE_SLATE


def test_builders_refuse_what_cannot_be_a_message() -> None:
    with pytest.raises(ValueError, match=r"one of \['mp4', 'mov', 'avi', 'mkv', 'webm'\]"):
        convert("flv")
    with pytest.raises(ValueError, match="unknown priority"):
        priority("unspecified")
    with pytest.raises(ValueError, match="text or an image"):
        watermark(text="a", image="b.png")
    with pytest.raises(ValueError, match="timezone"):
        camera_range("gate", T0.replace(tzinfo=None), T0)


def test_every_operation_of_the_proto_has_a_builder() -> None:
    builders = {
        "transcode": transcode(),
        "thumbnail": thumbnail(),
        "convert": convert("mp4"),
        "compress": compress(),
        "watermark": watermark(text="x"),
        "trim": trim(),
        "redact": redact(region(0, 0, 1, 1)),
    }
    kinds = {f.name for f in export_pb2.Operation.DESCRIPTOR.oneofs_by_name["operation"].fields}
    assert set(builders) == kinds
    assert all(op.WhichOneof("operation") == kind for kind, op in builders.items())
    sources = export_pb2.ExportSource.DESCRIPTOR.oneofs_by_name["source"].fields
    assert {f.name for f in sources} == {"object_key", "recording", "camera_range"}


def test_the_package_keeps_its_modules_small_and_its_names() -> None:
    package = Path(client_module.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in package.glob("*.py")}
    assert max(sizes.values()) < 400, sizes
    assert all(hasattr(client_module, name) for name in client_module.__all__)


def test_a_sync_facade_cannot_miss_a_method() -> None:
    with pytest.raises(TypeError, match="get_export"):

        class Partial(SyncClient[AsyncExportClient]):
            async_class = AsyncExportClient
            create_export = blocking(AsyncExportClient.create_export)

    for facade in (ExportClient, CameraClient):
        for name, method in inspect.getmembers(facade.async_class, inspect.iscoroutinefunction):
            if not name.startswith("_") and name != "close":
                assert getattr(facade, name).__doc__ == method.__doc__


# ---------------------------------------------------------------------------------------------
# Builders against the server


async def test_every_builder_makes_an_export_the_server_runs(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with (
        start_service(service_settings()) as service,
        AsyncExportClient(service.target, timeout=30) as client,
    ):
        await put_clip(service, tmp_path, "in/clip.mp4", 2.0)
        await put_logo(service, tmp_path, "in/logo.png")
        cheap = {
            "transcode": [
                transcode(
                    codec="h264",
                    resolution="160x90",
                    preset="ultrafast",
                    fps=15,
                    pixel_format="yuv420p",
                    audio_codec="opus",
                    audio_bitrate="64k",
                    hardware="none",
                )
            ],
            "thumbnail": [thumbnail("50%", "0.2", size="80x0", format="png")],
            "sprite_sheet": [sprite_sheet(frame_count=4, columns=2, size="40x0", format="webp")],
            "convert": [convert("mkv")],
            "compress": [compress(quality="low", crf=40, max_bitrate="300k", buffer_size="600k")],
            "watermark_text": [
                watermark(text="Case 17", position="top-left", margin=4, opacity=0.5),
                transcode(preset="ultrafast"),
            ],
            "watermark_image": [watermark(image="in/logo.png", scale=0.2, position="center")],
            "watermark_clock": [
                watermark(clock=clock("%H:%M:%S.%L", base_time=T0, time_zone="Europe/Berlin"))
            ],
            "trim": [trim(start=0.5, duration=1, mode="fast")],
            "redact": [
                redact(region(0.1, 0.1, 0.3, 0.3), mode="pixelate", strength=0.5, end=1),
                transcode(preset="ultrafast"),
            ],
            "chain": [
                trim(start="0.2", end="1.8"),
                redact((0.5, 0.5, 0.2, 0.2)),
                watermark(text="x", text_color="#ff0000"),
                transcode(resolution="160x0", preset="ultrafast"),
                thumbnail(size="80x0"),
            ],
        }
        created = {
            kind: await client.create_export(
                object_source("in/clip.mp4"), ops, priority="batch", case_id=kind
            )
            for kind, ops in cheap.items()
        }
        assert {e.priority for e in created.values()} == {Export.PRIORITY_BATCH}
        finals = await asyncio.gather(*(client.wait_export(e.name) for e in created.values()))
        for kind, final in zip(created, finals, strict=True):
            assert final.state == Export.STATE_SUCCEEDED, (kind, final.error)
            assert final.outputs, kind
        by_kind = dict(zip(created, finals, strict=True))
        assert by_kind["transcode"].outputs[0].audio_codec == "opus"
        assert by_kind["convert"].outputs[0].content_type == "video/x-matroska"
        assert by_kind["sprite_sheet"].outputs[0].kind == export_pb2.Output.KIND_SPRITE_SHEET
        assert by_kind["trim"].outputs[0].HasField("first_keyframe_time")
        interactive = await client.create_export("in/clip.mp4", [thumbnail()])
        assert interactive.priority == Export.PRIORITY_INTERACTIVE


async def test_recording_and_camera_range_sources(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with (
        start_service(service_settings()) as service,
        AsyncExportClient(service.target, timeout=30) as exports,
        AsyncCameraClient(service.target) as cameras,
    ):
        camera = await cameras.create_camera(
            Camera(display_name="Gate", stream_url="rtsp://gate/"), camera_id="gate"
        )
        recordings = []
        for index, start in enumerate((0, 3)):
            key = f"nvr/gate/{index}.mp4"
            await put_clip(service, tmp_path, key, 2.0)
            recordings.append(
                await cameras.create_recording(
                    camera.name, key, T0 + datetime.timedelta(seconds=start)
                )
            )
        whole = await exports.create_export(
            recording_source(recordings[0].name), [thumbnail(size="80x0")]
        )
        joined = await exports.create_export(
            camera_range(
                "gate",
                T0,
                T0 + datetime.timedelta(seconds=5),
                gap_mode="slate",
                wall_clock_subtitles=True,
            ),
            [watermark(clock=clock()), transcode(resolution="160x0", preset="ultrafast")],
        )
        assert joined.source.camera_range.camera == camera.name
        finals = await asyncio.gather(
            exports.wait_export(whole.name), exports.wait_export(joined.name)
        )
    assert [f.state for f in finals] == [Export.STATE_SUCCEEDED] * 2, [f.error for f in finals]
    coverage = finals[1].coverage
    assert [s.recording for s in coverage.spans] == [r.name for r in recordings]
    assert len(coverage.gaps) == 1


# ---------------------------------------------------------------------------------------------
# Errors


async def test_invalid_requests_raise_with_parsed_field_violations(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with (
        start_service(service_settings(), worker=False) as service,
        AsyncExportClient(service.target) as client,
    ):
        await put_clip(service, tmp_path, "in/clip.mp4", 1.0)
        with pytest.raises(InvalidArgumentError) as bad:
            await client.create_export(
                "in/clip.mp4",
                [
                    trim(start="soon"),
                    redact(region(0.9, 0.9, 0.5, 0.5)),
                    compress(crf=99),
                ],
            )
        fields = {v.field for v in bad.value.field_violations}
        assert {
            "export.operations[0].trim.start",
            "export.operations[2].compress.crf",
        } <= fields, fields
        assert any(f.startswith("export.operations[1].redact") for f in fields), fields
        assert bad.value.domain and bad.value.reason
        assert all(v.description for v in bad.value.field_violations)
        # A clock needs a capture time, which a stored object has not.
        with pytest.raises(InvalidArgumentError, match="clock"):
            await client.create_export("in/clip.mp4", [watermark(clock=clock())])

        # A stream's error is parsed the same way (through the call), and so is a raw stub's
        # AioRpcError (through the exception).
        with pytest.raises(NotFoundError) as missing:
            await anext(client.watch_export("exports/0123456789abcdef0123"))
        assert missing.value.reason == "EXPORT_NOT_FOUND"
        stub = export_service_pb2_grpc.ExportServiceStub(service.channel)
        call = stub.CreateExport(
            esvc.CreateExportRequest(export=Export(operations=[transcode(codec="nope")]))
        )
        with pytest.raises(grpc.aio.AioRpcError) as raw:
            await call
        from_exception, from_call = error_from_rpc(raw.value), await error_from_call(call)
        assert isinstance(from_exception, InvalidArgumentError)
        assert from_exception.field_violations == from_call.field_violations
        assert "export.operations[0].transcode.codec" in {
            v.field for v in from_call.field_violations
        }


# ---------------------------------------------------------------------------------------------
# Sync facades


async def test_sync_facades_drive_exports_and_cameras(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with start_service(service_settings()) as service:
        await put_clip(service, tmp_path, "in/clip.mp4", 1.0)

        def use_sync_clients() -> Export:
            with CameraClient(service.target) as cameras:
                camera = cameras.create_camera(Camera(stream_url="rtsp://yard/"), camera_id="yard")
                assert cameras.get_camera("yard").name == camera.name
                assert [c.name for c in cameras.iter_cameras()] == [camera.name]
            with ExportClient(service.target, timeout=20) as client:
                created = client.create_export(
                    "in/clip.mp4", [trim(duration=0.5), thumbnail(size="80x0")], priority="batch"
                )
                final = client.wait_export(created.name)
                files = client.download_outputs(created.name, tmp_path / "out")
                assert all(f.path.is_file() for f in files)
                with pytest.raises(InvalidArgumentError) as bad:
                    client.create_export("in/clip.mp4", [convert("mp4", video_codec="nope")])
                assert bad.value.field_violations
                with pytest.raises(ServiceError):
                    client.get_export("exports/0123456789abcdef0123")
                return final

        final = await asyncio.to_thread(use_sync_clients)
    assert final.state == Export.STATE_SUCCEEDED and final.priority == Export.PRIORITY_BATCH
