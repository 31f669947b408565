"""Recordings over gRPC with a real server, Redis, local storage and moto's S3: registration
(the object is read: duration, codecs, size, SHA-256), listing by time range, deletion with the
object, and expiring upload URLs used with real HTTP PUTs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import aiohttp
import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from sparc.video.v1 import camera_pb2
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.errors import ObjectNotFound
from sparc_video.core.settings import Settings, reveal
from sparc_video.media.synth import make_sample_clip
from tests.camera_helpers import (
    CameraService,
    camera_service,
    expect_error,
    in_thread,
    reason_of,
    status_of,
    violations_of,
)
from tests.fixtures.s3 import s3_client

Camera = camera_pb2.Camera
Recording = camera_pb2.Recording
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def at(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round((T0 + seconds) * 1e9))
    return stamp


def clip(path: Path, seconds: float = 2.0) -> Path:
    return make_sample_clip(path, width=320, height=240, duration_s=seconds, fps=25, audio=True)


async def register(cams: CameraService, parent: str, key: str, start_s: float) -> Recording:
    return await cams.stub.CreateRecording(
        svc.CreateRecordingRequest(
            parent=parent, recording=Recording(object_key=key, start_time=at(start_s))
        )
    )


async def test_register_list_and_delete_recordings(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with camera_service(service_settings()) as cams:
        stub, storage = cams.stub, cams.service.app.storage
        camera = await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="gate", camera=Camera(stream_url="rtsp://gate/"))
        )
        other = await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="yard", camera=Camera(stream_url="rtsp://yard/"))
        )
        source = await in_thread(clip, tmp_path / "segment.mp4")
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        # Three 2 s segments: 0-2 s, 2-4 s, then a gap, 10-12 s; registered out of order.
        for index in range(3):
            await storage.upload_file(source, f"nvr/gate/{index}.mp4", "video/mp4")
        late = await register(cams, camera.name, "nvr/gate/2.mp4", 10)
        first = await register(cams, camera.name, "nvr/gate/0.mp4", 0)
        second = await register(cams, camera.name, "nvr/gate/1.mp4", 2)

        assert first.name.startswith("cameras/gate/recordings/")
        assert first.duration == duration_pb2.Duration(seconds=2)
        assert first.end_time == at(2) and first.start_time == at(0)
        assert (first.video_codec, first.audio_codec, first.width, first.height) == (
            "h264",
            "aac",
            320,
            240,
        )
        assert first.fps == 25 and first.frame_count == 50
        assert first.format.startswith("mov,mp4")
        assert first.size_bytes == source.stat().st_size and first.sha256 == digest
        assert await stub.GetRecording(svc.GetRecordingRequest(name=second.name)) == second

        async def names(page_size: int = 10, **window: float) -> list[list[str]]:
            bounds = {name: at(value) for name, value in window.items()}
            pages: list[list[str]] = []
            token = ""
            while True:
                response = await stub.ListRecordings(
                    svc.ListRecordingsRequest(
                        parent=camera.name, page_size=page_size, page_token=token, **bounds
                    )
                )
                pages.append([r.name for r in response.recordings])
                token = response.next_page_token
                if not token:
                    return pages

        assert await names() == [[first.name, second.name, late.name]]
        assert await names(page_size=2) == [[first.name, second.name], [late.name]]
        assert await names(start_time=1, end_time=3) == [[first.name, second.name]]
        # A recording ending exactly where the range starts does not overlap it.
        assert await names(start_time=2) == [[second.name, late.name]]
        assert await names(end_time=2) == [[first.name]]
        assert await names(start_time=4.5, end_time=9.5) == [[]]  # the gap
        assert await names(page_size=1, start_time=3, end_time=11) == [[second.name], [late.name]]
        assert await names(start_time=11.9) == [[late.name]]
        error = await expect_error(
            stub.ListRecordings(
                svc.ListRecordingsRequest(parent=camera.name, start_time=at(5), end_time=at(5))
            ),
            INVALID,
        )
        assert "must be after start_time" in violations_of(error)["end_time"]
        page = await stub.ListRecordings(svc.ListRecordingsRequest(parent=camera.name, page_size=1))
        error = await expect_error(
            stub.ListRecordings(
                svc.ListRecordingsRequest(
                    parent=camera.name, page_token=page.next_page_token, start_time=at(0)
                )
            ),
            INVALID,
        )
        assert "page_token" in violations_of(error)

        # One recording per object, whichever camera asks.
        error = await expect_error(
            register(cams, other.name, "nvr/gate/0.mp4", 100), grpc.StatusCode.ALREADY_EXISTS
        )
        assert first.name in error.details()
        # Objects in another camera's folder go with that camera; they cannot be lent out.
        await storage.upload_file(source, "cameras/gate/uploads/x.mp4", "video/mp4")
        error = await expect_error(
            register(cams, other.name, "cameras/gate/uploads/x.mp4", 100), INVALID
        )
        assert "folder of camera cameras/gate" in violations_of(error)["recording.object_key"]
        # A recording is found only under its own camera.
        await expect_error(
            stub.GetRecording(
                svc.GetRecordingRequest(name=first.name.replace("cameras/gate", "cameras/yard"))
            ),
            NOT_FOUND,
        )

        await stub.DeleteRecording(svc.DeleteRecordingRequest(name=second.name))
        with pytest.raises(ObjectNotFound):
            await storage.stat("nvr/gate/1.mp4")
        error = await expect_error(
            stub.GetRecording(svc.GetRecordingRequest(name=second.name)), NOT_FOUND
        )
        assert reason_of(status_of(error)) == "RECORDING_NOT_FOUND"
        assert await names(start_time=1, end_time=3) == [[first.name]]
        await storage.stat("nvr/gate/0.mp4")


async def test_recordings_refuse_what_is_not_a_usable_video(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with camera_service(service_settings(max_upload_size=200_000)) as cams:
        stub, storage = cams.stub, cams.service.app.storage
        camera = await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="gate", camera=Camera(stream_url="rtsp://gate/"))
        )
        await storage.put_bytes("nvr/notes.mp4", b"not a video, just text\n" * 50, "video/mp4")
        error = await expect_error(register(cams, camera.name, "nvr/notes.mp4", 0), INVALID)
        assert reason_of(status_of(error)) == "NOT_A_VIDEO"
        assert "'nvr/notes.mp4'" in error.details()

        await storage.put_bytes("nvr/big.mp4", b"\0" * 200_001, "video/mp4")
        error = await expect_error(register(cams, camera.name, "nvr/big.mp4", 0), INVALID)
        assert "above MAX_VIDEO_UPLOAD_SIZE" in violations_of(error)["recording.object_key"]

        error = await expect_error(register(cams, camera.name, "nvr/missing.mp4", 0), NOT_FOUND)
        assert reason_of(status_of(error)) == "OBJECT_NOT_FOUND"
        await expect_error(register(cams, "cameras/nobody", "nvr/notes.mp4", 0), NOT_FOUND)

        error = await expect_error(
            stub.CreateRecording(
                svc.CreateRecordingRequest(
                    parent=camera.name, recording=Recording(object_key="../etc/passwd")
                )
            ),
            INVALID,
        )
        assert set(violations_of(error)) == {"recording.object_key", "recording.start_time"}
        far_future = timestamp_pb2.Timestamp(seconds=4_000_000_000)
        error = await expect_error(
            stub.CreateRecording(
                svc.CreateRecordingRequest(
                    parent=camera.name,
                    recording=Recording(object_key="nvr/notes.mp4", start_time=far_future),
                )
            ),
            INVALID,
        )
        assert "a day ahead" in violations_of(error)["recording.start_time"]
        for name in ("cameras/gate/recordings/xyz", "cameras/gate/0123456789abcdef0123"):
            error = await expect_error(
                stub.GetRecording(svc.GetRecordingRequest(name=name)), INVALID
            )
            assert "not a recording name" in violations_of(error)["name"]


async def put(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.put(url, data=body, headers=headers) as r,
    ):
        return r.status, await r.text()


async def test_upload_url_to_local_storage(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with camera_service(service_settings(max_upload_size=1_000_000)) as cams:
        stub, storage = cams.stub, cams.service.app.storage
        camera = await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="gate", camera=Camera(stream_url="rtsp://gate/"))
        )
        body = (await in_thread(clip, tmp_path / "upload.mp4", 1.0)).read_bytes()
        link = await stub.CreateRecordingUploadUrl(
            svc.CreateRecordingUploadUrlRequest(
                parent=camera.name, size_bytes=len(body), ttl=duration_pb2.Duration(seconds=120)
            )
        )
        assert link.object_key.startswith("cameras/gate/uploads/")
        assert link.object_key.endswith(".mp4")
        assert link.upload_url.startswith(cams.service.http_url + "/uploads/")
        headers = dict(link.headers)
        assert headers == {"Content-Type": "video/mp4"}

        # Not the size the link was issued for: refused, nothing stored.
        assert (await put(link.upload_url, body + b"x", headers))[0] == 413
        assert (await put(link.upload_url, body[:-1], headers))[0] == 400
        forged = link.upload_url.replace(f"size={len(body)}", f"size={len(body) + 1}")
        assert (await put(forged, body + b"x", headers))[0] == 403
        with pytest.raises(ObjectNotFound):
            await storage.stat(link.object_key)

        assert await put(link.upload_url, body, headers) == (200, "")
        # The link cannot replace what was uploaded (and registered, hashed) with it.
        assert (await put(link.upload_url, body, headers))[0] == 412
        recording = await stub.CreateRecording(
            svc.CreateRecordingRequest(
                parent=camera.name,
                recording=Recording(object_key=link.object_key, start_time=at(0)),
            )
        )
        assert recording.sha256 == hashlib.sha256(body).hexdigest()

        error = await expect_error(
            stub.CreateRecordingUploadUrl(
                svc.CreateRecordingUploadUrlRequest(
                    parent=camera.name, size_bytes=1_000_001, content_type="image/png"
                )
            ),
            INVALID,
        )
        found = violations_of(error)
        assert "MAX_VIDEO_UPLOAD_SIZE (1000000 bytes)" in found["size_bytes"]
        assert "'image/png' is not one of" in found["content_type"]
        await expect_error(
            stub.CreateRecordingUploadUrl(
                svc.CreateRecordingUploadUrlRequest(parent="cameras/nobody", size_bytes=10)
            ),
            NOT_FOUND,
        )
        ts_link = await stub.CreateRecordingUploadUrl(
            svc.CreateRecordingUploadUrlRequest(
                parent=camera.name, size_bytes=10, content_type="video/MP2T"
            )
        )
        assert ts_link.object_key.endswith(".ts")


async def test_recordings_and_uploads_on_s3(
    service_settings: Callable[..., Settings],
    s3_settings: Settings,
    tmp_path: Path,
) -> None:
    settings = service_settings(
        s3_bucket=s3_settings.s3_bucket,
        s3_endpoint_url=s3_settings.s3_endpoint_url,
        aws_region=s3_settings.aws_region,
        aws_access_key_id=reveal(s3_settings.aws_access_key_id),
        aws_secret_access_key=reveal(s3_settings.aws_secret_access_key),
    )
    async with camera_service(settings) as cams:
        stub = cams.stub
        camera = await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="gate", camera=Camera(stream_url="rtsp://gate/"))
        )
        body = (await in_thread(clip, tmp_path / "upload.mp4", 1.0)).read_bytes()
        link = await stub.CreateRecordingUploadUrl(
            svc.CreateRecordingUploadUrlRequest(parent=camera.name, size_bytes=len(body))
        )
        assert "X-Amz-Signature=" in link.upload_url
        assert dict(link.headers) == {"Content-Type": "video/mp4", "If-None-Match": "*"}
        assert await put(link.upload_url, body, dict(link.headers)) == (200, "")
        assert (await put(link.upload_url, body, dict(link.headers)))[0] == 412

        recording = await stub.CreateRecording(
            svc.CreateRecordingRequest(
                parent=camera.name,
                recording=Recording(object_key=link.object_key, start_time=at(0)),
            )
        )
        assert recording.sha256 == hashlib.sha256(body).hexdigest()
        assert recording.duration == duration_pb2.Duration(seconds=1)
        # The copy read from S3 is gone from the temp dir.
        assert not any((settings.temp_dir / "recordings").iterdir())

        await stub.DeleteRecording(svc.DeleteRecordingRequest(name=recording.name))
        client = s3_client(str(settings.s3_endpoint_url))
        listing = client.list_objects_v2(Bucket=settings.s3_bucket)
        assert listing.get("KeyCount", 0) == 0
