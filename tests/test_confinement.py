"""Confinement and limits through the real service: which keys a request may name, where
outputs go, how long links live, and every configured limit with the message it gives."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
from google.protobuf import duration_pb2
from sparc.video.v1 import camera_pb2, camera_service_pb2_grpc, export_pb2, export_service_pb2
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.settings import Settings
from tests.camera_helpers import reason_of, status_of, violations_of
from tests.fixtures.service import RunningService, start_service
from tests.test_export_e2e import create_request, put_clip, thumbnail, transcode, watch_to_end

State = export_pb2.Export

HOSTILE_KEYS = [
    "../etc/passwd",
    "in/../../etc/passwd",
    "/etc/passwd",
    "file:///etc/passwd",
    "s3://other-bucket/clip.mp4",
    "in\\clip.mp4",
    "in/clip\x00.mp4",
    "in/clip\n.mp4",
]


def watermark(image_key: str) -> export_pb2.Operation:
    return export_pb2.Operation(watermark=export_pb2.WatermarkOptions(image_object_key=image_key))


async def refused(
    call: object, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    return info.value


async def gate_camera(
    service: RunningService,
) -> tuple[camera_service_pb2_grpc.CameraServiceStub, camera_pb2.Camera]:
    """The camera stub, and a camera `gate` (whose own folder is cameras/gate/)."""
    cameras = camera_service_pb2_grpc.CameraServiceStub(service.channel)
    camera = await cameras.CreateCamera(
        svc.CreateCameraRequest(
            camera_id="gate", camera=camera_pb2.Camera(stream_url="rtsp://gate.invalid/s")
        )
    )
    return cameras, camera


def recording_request(camera: camera_pb2.Camera, key: str) -> svc.CreateRecordingRequest:
    return svc.CreateRecordingRequest(
        parent=camera.name,
        recording=camera_pb2.Recording(object_key=key, start_time={"seconds": 1_700_000_000}),
    )


async def test_hostile_keys_are_invalid_argument_for_sources_watermarks_and_recordings(
    service_settings: Callable[..., Settings],
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        cameras, camera = await gate_camera(service)
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        for key in HOSTILE_KEYS:
            error = await refused(service.exports.CreateExport(create_request(key, thumbnail())))
            assert "export.source.object_key" in violations_of(error), key
            error = await refused(
                service.exports.CreateExport(create_request("in/a.mp4", watermark(key)))
            )
            assert "export.operations[0].watermark.image_object_key" in violations_of(error), key
            error = await refused(cameras.CreateRecording(recording_request(camera, key)))
            assert "recording.object_key" in violations_of(error), key
        assert await service.app.queue.depth() == 0


async def test_inputs_come_only_from_allowed_prefixes(
    service_settings: Callable[..., Settings],
) -> None:
    # Default: anything but the service's own outputs.
    async with start_service(service_settings(), worker=False) as service:
        for key in ("exports/0123456789abcdef0123/1/video.mp4", "cameras/gate/snapshots/a.jpg"):
            await service.app.storage.put_bytes(key, b"x", "video/mp4")
            error = await refused(service.exports.CreateExport(create_request(key, thumbnail())))
            assert "output of this service" in violations_of(error)["export.source.object_key"]
            await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
            error = await refused(
                service.exports.CreateExport(create_request("in/a.mp4", watermark(key)))
            )
            field = "export.operations[0].watermark.image_object_key"
            assert "output of this service" in violations_of(error)[field]

    settings = service_settings(source_key_prefixes=("in/", "logos/"))
    async with start_service(settings, worker=False) as service:
        for key in ("in/a.mp4", "other/a.mp4", "logos/l.png", "inbox/a.mp4"):
            await service.app.storage.put_bytes(key, b"x", "video/mp4")
        error = await refused(
            service.exports.CreateExport(create_request("other/a.mp4", thumbnail()))
        )
        assert "SOURCE_KEY_PREFIXES=in/,logos/" in violations_of(error)["export.source.object_key"]
        # A prefix is a prefix of the key, not of a folder name: "in/" does not allow "inbox/".
        await refused(service.exports.CreateExport(create_request("inbox/a.mp4", thumbnail())))
        error = await refused(
            service.exports.CreateExport(create_request("in/a.mp4", watermark("other/a.mp4")))
        )
        assert "SOURCE_KEY_PREFIXES" in error.details()
        created = await service.exports.CreateExport(
            create_request("in/a.mp4", watermark("logos/l.png"))
        )
        assert created.state == State.STATE_QUEUED

        # Recordings: the allowed prefixes, and the camera's own folder (its upload links).
        cameras, camera = await gate_camera(service)

        error = await refused(cameras.CreateRecording(recording_request(camera, "other/a.mp4")))
        assert "SOURCE_KEY_PREFIXES" in violations_of(error)["recording.object_key"]
        error = await refused(
            cameras.CreateRecording(recording_request(camera, "cameras/gate/snapshots/a.jpg"))
        )
        assert "recording.object_key" in violations_of(error)
        # Past confinement, these are only missing.
        for key in ("cameras/gate/uploads/x.mp4", "in/missing.mp4"):
            await refused(
                cameras.CreateRecording(recording_request(camera, key)), grpc.StatusCode.NOT_FOUND
            )


async def test_outputs_stay_under_the_exports_prefix_and_links_expire(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings(download_url_max_ttl_s=3600)
    async with start_service(settings) as service:
        await put_clip(service, tmp_path, "in/a.mp4", width=160, height=90, duration_s=1.0)
        created = await service.exports.CreateExport(
            create_request(
                "in/a.mp4", transcode(resolution="80x0", preset="ultrafast"), thumbnail("0", "50%")
            )
        )
        final = (await watch_to_end(service, created.name))[-1].export
        assert final.state == State.STATE_SUCCEEDED, final.error.message
        export_id = created.name.removeprefix("exports/")
        stored = {
            str(path.relative_to(settings.local_storage_dir))
            for path in settings.local_storage_dir.rglob("*")
            if path.is_file() and not any(p.startswith(".") for p in path.parts)
        }
        outputs = {output.storage_key for output in final.outputs}
        assert len(outputs) == 3
        assert all(key.startswith(f"exports/{export_id}/") for key in outputs), outputs
        manifest = {final.manifest.storage_key, final.manifest.signature_storage_key}
        assert all(key.startswith(f"exports/{export_id}/") for key in manifest), manifest
        # Nothing else was written anywhere in the bucket.
        assert stored == {"in/a.mp4"} | outputs | manifest

        # Download links: 15 minutes by default, up to the cap when asked, refused above it.
        before = time.time()
        links = await service.exports.GetExportDownloadUrl(
            export_service_pb2.GetExportDownloadUrlRequest(name=created.name)
        )
        for link in links.urls:
            assert before + 900 - 2 <= link.expire_time.seconds <= time.time() + 900 + 1
            expires = int(parse_qs(urlsplit(link.url).query)["expires"][0])
            assert abs(expires - link.expire_time.seconds) <= 1
        await service.exports.GetExportDownloadUrl(
            export_service_pb2.GetExportDownloadUrlRequest(
                name=created.name, ttl=duration_pb2.Duration(seconds=3600)
            )
        )
        error = await refused(
            service.exports.GetExportDownloadUrl(
                export_service_pb2.GetExportDownloadUrlRequest(
                    name=created.name, ttl=duration_pb2.Duration(seconds=3601)
                )
            )
        )
        assert "DOWNLOAD_URL_MAX_TTL (3600 s)" in violations_of(error)["ttl"]

        cameras = camera_service_pb2_grpc.CameraServiceStub(service.channel)
        camera = await cameras.CreateCamera(
            svc.CreateCameraRequest(camera=camera_pb2.Camera(stream_url="rtsp://gate.invalid/s"))
        )
        before = time.time()
        upload = await cameras.CreateRecordingUploadUrl(
            svc.CreateRecordingUploadUrlRequest(parent=camera.name, size_bytes=1000)
        )
        assert before + 898 <= upload.expire_time.seconds <= time.time() + 901
        error = await refused(
            cameras.CreateRecordingUploadUrl(
                svc.CreateRecordingUploadUrlRequest(
                    parent=camera.name, size_bytes=1000, ttl=duration_pb2.Duration(seconds=7200)
                )
            )
        )
        assert "DOWNLOAD_URL_MAX_TTL (3600 s)" in violations_of(error)["ttl"]
        error = await refused(
            cameras.CaptureSnapshot(
                svc.CaptureSnapshotRequest(
                    name=camera.name, url_ttl=duration_pb2.Duration(seconds=7200)
                )
            )
        )
        assert "DOWNLOAD_URL_MAX_TTL" in violations_of(error)["url_ttl"]


async def test_request_limits_name_the_setting(
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings(
        max_export_operations=2, max_export_thumbnails=3, grpc_max_message_bytes=64 * 1024
    )
    async with start_service(settings, worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        error = await refused(
            service.exports.CreateExport(
                create_request("in/a.mp4", transcode(preset="fast"), thumbnail(), thumbnail("1"))
            )
        )
        assert "MAX_EXPORT_OPERATIONS (2)" in violations_of(error)["export.operations"]
        for ops in ((thumbnail("1", "2", "3", "4"),), (thumbnail("1", "2"), thumbnail("3", "4"))):
            error = await refused(service.exports.CreateExport(create_request("in/a.mp4", *ops)))
            assert "MAX_EXPORT_THUMBNAILS (3)" in violations_of(error)["export.operations"]
        sprite = export_pb2.Operation(
            thumbnail=export_pb2.ThumbnailOptions(
                sprite_sheet=export_pb2.SpriteSheetOptions(frame_count=4)
            )
        )
        await refused(service.exports.CreateExport(create_request("in/a.mp4", sprite)))
        await service.exports.CreateExport(create_request("in/a.mp4", thumbnail("1", "2", "3")))
        # Past GRPC_MAX_MESSAGE_SIZE gRPC itself refuses the message, before any handler.
        huge = create_request("in/a.mp4", thumbnail())
        huge.export.operations[0].thumbnail.timestamps.extend(["1"] * 40_000)
        error = await refused(
            service.exports.CreateExport(huge), grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert str(64 * 1024) in (error.details() or "")


async def test_media_limits_fail_the_export_naming_the_limit(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings(max_frame_pixels=200 * 120, max_source_duration_s=1.5)
    async with start_service(settings) as service:
        clips = {"big": (320, 180, 1.0), "long": (160, 90, 2.5), "fine": (160, 90, 1.0)}
        names: dict[str, str] = {}
        for name, (width, height, seconds) in clips.items():
            folder = tmp_path / name
            folder.mkdir()
            await put_clip(
                service, folder, f"in/{name}.mp4", width=width, height=height, duration_s=seconds
            )
            created = await service.exports.CreateExport(
                create_request(f"in/{name}.mp4", thumbnail("0"))
            )
            names[name] = created.name
        finals = {
            name: (await watch_to_end(service, export))[-1].export for name, export in names.items()
        }
    assert finals["fine"].state == State.STATE_SUCCEEDED
    for name, reason, fragment in (
        (
            "big",
            "FRAME_TOO_LARGE",
            "320x180 (57,600 pixels per frame), above MAX_FRAME_PIXELS (24,000)",
        ),
        ("long", "SOURCE_TOO_LONG", "above MAX_SOURCE_DURATION (1.5 s)"),
    ):
        export = finals[name]
        assert export.state == State.STATE_FAILED, name
        assert export.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert reason_of(export.error) == reason
        assert fragment in export.error.message, export.error.message


async def test_recordings_past_the_media_limits_are_refused(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings(max_frame_pixels=200 * 120, max_source_duration_s=1.5)
    async with start_service(settings, worker=False) as service:
        cameras, camera = await gate_camera(service)
        clips = {
            "big": ((320, 180, 1.0), "FRAME_TOO_LARGE", "above MAX_FRAME_PIXELS (24,000)"),
            "long": ((160, 90, 2.5), "SOURCE_TOO_LONG", "above MAX_SOURCE_DURATION (1.5 s)"),
        }
        for name, ((width, height, seconds), reason, fragment) in clips.items():
            folder = tmp_path / name
            folder.mkdir()
            key = f"cameras/gate/uploads/{name}.mp4"
            await put_clip(service, folder, key, width=width, height=height, duration_s=seconds)
            error = await refused(
                cameras.CreateRecording(recording_request(camera, key)),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            assert reason_of(status_of(error)) == reason
            assert fragment in (error.details() or "")


async def test_upload_size_is_checked_again_before_the_worker_downloads(
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings(max_upload_size=100_000)
    async with start_service(settings, worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x" * 1000, "video/mp4")
        created = await service.exports.CreateExport(create_request("in/a.mp4", thumbnail()))
        # Replaced by a larger object while the export waits in the queue.
        await service.app.storage.put_bytes("in/a.mp4", b"x" * 200_000, "video/mp4")
    async with start_service(settings) as service:
        final = (await watch_to_end(service, created.name))[-1].export
    assert final.state == State.STATE_FAILED
    assert final.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert reason_of(final.error) == "SOURCE_TOO_LARGE"
    assert "above MAX_VIDEO_UPLOAD_SIZE (100000 bytes)" in final.error.message
    assert not any(settings.temp_dir.rglob("source*"))
