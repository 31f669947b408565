"""CameraService over gRPC with a real server, Redis and local storage: camera CRUD, field
masks, listing, deletion with and without recordings, and credentials that never come back."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf import duration_pb2, field_mask_pb2, message, timestamp_pb2
from sparc.video.v1 import camera_pb2
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.errors import ObjectNotFound
from sparc_video.core.settings import Settings
from sparc_video.database.urls import asyncpg_dsn
from tests.camera_helpers import (
    LOOPBACK_CAMERAS,
    camera_service,
    closed_port,
    expect_error,
    in_thread,
    live_stream,
    make_ts_clip,
    reason_of,
    status_of,
    violations_of,
)
from tests.secret_checks import assert_in_none, logged_text, redis_contents
from tests.test_grpcurl import grpcurl

Camera = camera_pb2.Camera
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def test_camera_crud_with_field_masks(service_settings: Callable[..., Settings]) -> None:
    async with camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams:
        stub = cams.stub
        created = await stub.CreateCamera(
            svc.CreateCameraRequest(
                camera_id="dock-north",
                camera=Camera(
                    display_name="Loading dock north",
                    site="hq",
                    location="Building 2, door 4",
                    labels={"zone": "perimeter", "floor": "0"},
                    stream_url="rtsp://cam7.local:554/Streaming/101",
                ),
            )
        )
        assert created.name == "cameras/dock-north"
        assert created.enabled, "enabled defaults to true"
        assert created.status == Camera.STATUS_UNSPECIFIED and not created.has_credentials
        assert created.create_time.seconds and created.update_time == created.create_time
        got = await stub.GetCamera(svc.GetCameraRequest(name=created.name))
        assert got == created

        # Only the masked fields change, whatever else the message carries.
        updated = await stub.UpdateCamera(
            svc.UpdateCameraRequest(
                camera=Camera(
                    name=created.name, display_name="Dock N", site="elsewhere", labels={"a": "b"}
                ),
                update_mask=mask("display_name", "labels", "status", "create_time"),
            )
        )
        assert (updated.display_name, updated.site) == ("Dock N", "hq")
        assert dict(updated.labels) == {"a": "b"}
        assert updated.update_time.ToNanoseconds() > created.update_time.ToNanoseconds()
        # A masked field left unset is cleared (AIP-134); enabled goes false that way.
        cleared = await stub.UpdateCamera(
            svc.UpdateCameraRequest(
                camera=Camera(name=created.name), update_mask=mask("location", "enabled")
            )
        )
        assert cleared.location == "" and not cleared.enabled
        # No mask: the fields the message sets.
        implicit = await stub.UpdateCamera(
            svc.UpdateCameraRequest(camera=Camera(name=created.name, site="annex", enabled=True))
        )
        assert (implicit.site, implicit.enabled, implicit.display_name) == ("annex", True, "Dock N")
        # "*": every updatable field, so a full replacement.
        replaced = await stub.UpdateCamera(
            svc.UpdateCameraRequest(
                camera=Camera(name=created.name, stream_url="http://cam7.local/live.ts"),
                update_mask=mask("*"),
            )
        )
        assert replaced.stream_url == "http://cam7.local/live.ts"
        assert (replaced.display_name, replaced.site, dict(replaced.labels)) == ("", "", {})

        error = await expect_error(
            stub.UpdateCamera(
                svc.UpdateCameraRequest(
                    camera=Camera(name=created.name), update_mask=mask("display_name", "sight")
                )
            ),
            INVALID,
        )
        assert "update_mask.paths[1]" in violations_of(error)
        error = await expect_error(
            stub.UpdateCamera(
                svc.UpdateCameraRequest(camera=Camera(name=created.name), update_mask=mask("*"))
            ),
            INVALID,
        )
        assert "required" in violations_of(error)["camera.stream_url"]
        await expect_error(
            stub.UpdateCamera(
                svc.UpdateCameraRequest(
                    camera=Camera(name="cameras/nope", site="x"), update_mask=mask("site")
                )
            ),
            NOT_FOUND,
        )
        error = await expect_error(
            stub.CreateCamera(
                svc.CreateCameraRequest(
                    camera_id="dock-north", camera=Camera(stream_url="rtsp://other/")
                )
            ),
            grpc.StatusCode.ALREADY_EXISTS,
        )
        assert "cameras/dock-north exists already" in error.details()

        await stub.DeleteCamera(svc.DeleteCameraRequest(name=created.name))
        error = await expect_error(
            stub.GetCamera(svc.GetCameraRequest(name=created.name)), NOT_FOUND
        )
        assert reason_of(status_of(error)) == "CAMERA_NOT_FOUND"
        await expect_error(stub.DeleteCamera(svc.DeleteCameraRequest(name=created.name)), NOT_FOUND)


async def test_list_cameras_pages_and_filters(service_settings: Callable[..., Settings]) -> None:
    async with camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams:
        stub = cams.stub
        specs = [
            ("a1", "hq", True, {"zone": "perimeter"}),
            ("a2", "hq", False, {"zone": "lobby"}),
            ("a3", "annex", True, {"zone": "perimeter", "floor": "2"}),
            ("a4", "hq", True, {}),
            ("a5", "annex", False, {"zone": "perimeter"}),
            ("a6", "hq", True, {"zone": "perimeter"}),
            ("a7", "site with spaces", True, {}),
        ]
        for camera_id, site, enabled, labels in specs:
            await stub.CreateCamera(
                svc.CreateCameraRequest(
                    camera_id=camera_id,
                    camera=Camera(
                        site=site,
                        enabled=enabled,
                        labels=labels,
                        stream_url=f"rtsp://{camera_id}.local/",
                    ),
                )
            )
        # A generated id: hex, so it sorts before the letters.
        generated = await stub.CreateCamera(
            svc.CreateCameraRequest(camera=Camera(stream_url="rtsp://gen.local/"))
        )
        assert generated.name.startswith("cameras/0")

        async def ids(filter_text: str, page_size: int) -> list[list[str]]:
            pages: list[list[str]] = []
            token = ""
            while True:
                response = await stub.ListCameras(
                    svc.ListCamerasRequest(
                        filter=filter_text, page_size=page_size, page_token=token
                    )
                )
                pages.append([c.name.removeprefix("cameras/") for c in response.cameras])
                token = response.next_page_token
                if not token:
                    return pages

        everything = await ids("", 3)
        assert [len(p) for p in everything] == [3, 3, 2]
        listed = [camera_id for page in everything for camera_id in page]
        assert listed == [generated.name.removeprefix("cameras/")] + [s[0] for s in specs]
        assert await ids('site = "hq"', 2) == [["a1", "a2"], ["a4", "a6"]]
        assert await ids("enabled = false", 10) == [["a2", "a5"]]
        assert await ids("labels.zone = perimeter AND enabled = true", 2) == [["a1", "a3"], ["a6"]]
        assert await ids('site="annex" AND labels.floor="2"', 10) == [["a3"]]
        assert await ids('site = "site with spaces"', 10) == [["a7"]]
        assert await ids('site = "nowhere"', 10) == [[]]

        for bad in (
            "state = RUNNING",
            "site ~ hq",
            'site = "hq" OR enabled = true',
            "site = hq AND",
        ):
            error = await expect_error(
                stub.ListCameras(svc.ListCamerasRequest(filter=bad)), INVALID
            )
            assert "filter" in violations_of(error)
        first = await stub.ListCameras(svc.ListCamerasRequest(filter='site = "hq"', page_size=1))
        error = await expect_error(
            stub.ListCameras(svc.ListCamerasRequest(page_token=first.next_page_token, page_size=1)),
            INVALID,
        )
        assert "page_token" in violations_of(error)
        await expect_error(stub.ListCameras(svc.ListCamerasRequest(page_size=-1)), INVALID)


async def test_bad_camera_requests_name_the_fields(
    service_settings: Callable[..., Settings],
) -> None:
    async with camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams:
        stub = cams.stub
        error = await expect_error(
            stub.CreateCamera(
                svc.CreateCameraRequest(
                    camera_id="Bad_Id",
                    camera=Camera(
                        stream_url="ftp://admin:hunter2@cam.local/",
                        labels={"Zone": "x"},
                        display_name="x" * 201,
                    ),
                )
            ),
            INVALID,
        )
        found = violations_of(error)
        assert set(found) == {
            "camera_id",
            "camera.stream_url",
            "camera.labels['Zone']",
            "camera.display_name",
        }
        assert "ftp://***@cam.local/" in found["camera.stream_url"]
        assert "hunter2" not in error.details() and "admin" not in error.details()
        error = await expect_error(stub.CreateCamera(svc.CreateCameraRequest()), INVALID)
        assert "required" in violations_of(error)["camera.stream_url"]
        for name in ("cameras/", "cameras/UPPER", "exports/0123456789abcdef0123", "cameras/a/b"):
            error = await expect_error(stub.GetCamera(svc.GetCameraRequest(name=name)), INVALID)
            assert "not a camera name" in violations_of(error)["name"]
        await expect_error(stub.GetCamera(svc.GetCameraRequest(name="cameras/missing")), NOT_FOUND)
        await expect_error(
            stub.ProbeCamera(svc.ProbeCameraRequest(name="cameras/missing")), NOT_FOUND
        )
        await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="c", camera=Camera(stream_url="rtsp://c/"))
        )
        error = await expect_error(
            stub.ProbeCamera(
                svc.ProbeCameraRequest(name="cameras/c", timeout=duration_pb2.Duration(seconds=61))
            ),
            INVALID,
        )
        assert "between 1 and 60 seconds" in violations_of(error)["timeout"]


async def test_credentials_are_never_returned_nor_logged(
    service_settings: Callable[..., Settings],
    redis_url: str,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    username, password, token = "operator-7", "hunter2-Secret!", "tok-98765"
    secrets = [username, password, token]
    clip = await in_thread(make_ts_clip, tmp_path / "live.ts")
    settings = service_settings(**LOOPBACK_CAMERAS)
    seen: list[bytes] = []

    async def call(rpc: Any, request: message.Message) -> Any:
        try:
            response = await rpc(request)
        except grpc.aio.AioRpcError as exc:
            seen.append(exc.details().encode())
            seen.append(status_of(exc).SerializeToString())
            return exc
        seen.append(response.SerializeToString())
        return response

    async with camera_service(settings) as cams, live_stream(clip, username, password) as live:
        stub = cams.stub
        private = live.url("/private.ts").replace("http://", f"http://{username}:{password}@")
        created = await call(
            stub.CreateCamera,
            svc.CreateCameraRequest(camera=Camera(stream_url=f"{private}?token={token}&q=1")),
        )
        assert created.has_credentials
        assert created.stream_url == f"http://***@127.0.0.1:{live.port}/private.ts?token=***&q=1"
        name = created.name
        # The stored secrets work: the probe logged in with them.
        probed = await call(stub.ProbeCamera, svc.ProbeCameraRequest(name=name))
        assert probed.reachable, probed.error
        assert live.authorizations[-1].startswith("Basic ")
        await call(stub.GetCamera, svc.GetCameraRequest(name=name))
        await call(stub.ListCameras, svc.ListCamerasRequest())
        # The URL sent back as read keeps the secrets.
        kept = await call(
            stub.UpdateCamera,
            svc.UpdateCameraRequest(
                camera=Camera(name=name, stream_url=created.stream_url, display_name="kept"),
                update_mask=mask("stream_url", "display_name"),
            ),
        )
        assert kept.has_credentials
        assert (await call(stub.ProbeCamera, svc.ProbeCameraRequest(name=name))).reachable
        # Credentials given apart from the URL replace the log-in; wrong ones are refused.
        await call(
            stub.UpdateCamera,
            svc.UpdateCameraRequest(
                camera=Camera(
                    name=name,
                    credentials=camera_pb2.CameraCredentials(username=username, password="nope"),
                ),
                update_mask=mask("credentials"),
            ),
        )
        refused = await call(stub.ProbeCamera, svc.ProbeCameraRequest(name=name))
        assert not refused.reachable and reason_of(refused.error) == "UNAUTHORIZED"
        assert f"cameras/{name.split('/')[1]} (http://***@127.0.0.1" in refused.error.message
        snapshot_error = await call(stub.CaptureSnapshot, svc.CaptureSnapshotRequest(name=name))
        assert snapshot_error.code() == grpc.StatusCode.UNAVAILABLE
        await call(
            stub.UpdateCamera,
            svc.UpdateCameraRequest(
                camera=Camera(
                    name=name,
                    credentials=camera_pb2.CameraCredentials(username=username, password=password),
                ),
                update_mask=mask("credentials"),
            ),
        )
        # Errors about the URL show it redacted.
        invalid = await call(
            stub.UpdateCamera,
            svc.UpdateCameraRequest(
                camera=Camera(name=name, stream_url=f"gopher://{username}:{password}@x/"),
                update_mask=mask("stream_url"),
            ),
        )
        assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Moved to another host, the camera loses its secrets instead of sending them there.
        port = closed_port()
        moved = await call(
            stub.UpdateCamera,
            svc.UpdateCameraRequest(
                camera=Camera(name=name, stream_url=f"http://***@127.0.0.1:{port}/x.ts"),
                update_mask=mask("stream_url"),
            ),
        )
        assert moved.code() == grpc.StatusCode.INVALID_ARGUMENT
        moved = await call(
            stub.UpdateCamera,
            svc.UpdateCameraRequest(
                camera=Camera(name=name, stream_url=f"http://127.0.0.1:{port}/x.ts"),
                update_mask=mask("stream_url"),
            ),
        )
        assert not moved.has_credentials and moved.status == Camera.STATUS_UNSPECIFIED
        unreachable = await call(stub.ProbeCamera, svc.ProbeCameraRequest(name=name))
        assert reason_of(unreachable.error) == "CONNECTION_REFUSED"
        # Back to the stream with its log-in, then a look at what PostgreSQL holds at rest
        # (only the encrypted token; audit entries name what changed, never a value) and at
        # everything in Redis.
        await call(
            stub.UpdateCamera,
            svc.UpdateCameraRequest(
                camera=Camera(name=name, stream_url=f"{private}?token={token}"),
                update_mask=mask("stream_url"),
            ),
        )
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            record = await connection.fetchval(
                "SELECT record FROM cameras WHERE id = $1", name.split("/")[1]
            )
            assert json.loads(record)["secrets"].startswith("gAAAA")
            seen.append(record.encode())
            entries = await connection.fetch(
                "SELECT action, details::text AS details FROM audit_log WHERE resource = $1", name
            )
            seen += [row["details"].encode() for row in entries]
            changes = [
                json.loads(row["details"])["fields"]
                for row in entries
                if row["action"] == "camera.credentials.change"
            ]
            assert ["password"] in changes and ["username", "password", "query.token"] in changes
        finally:
            await connection.close()
        client = aioredis.Redis.from_url(redis_url)
        try:
            seen += await redis_contents(client, settings.redis_prefix)
        finally:
            await client.aclose()
        await call(stub.DeleteCamera, svc.DeleteCameraRequest(name=name))

    assert len(seen) > 20
    assert_in_none(secrets, seen)
    logged = logged_text(caplog)
    for secret in secrets:
        assert secret not in logged


async def test_delete_camera_refuses_while_recordings_exist_unless_forced(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with (
        camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams,
        live_stream(await in_thread(make_ts_clip, tmp_path / "clip.ts"), "u", "p") as live,
    ):
        stub, storage = cams.stub, cams.service.app.storage

        async def gate_with_a_recording() -> tuple[Camera, camera_pb2.Recording]:
            camera = await stub.CreateCamera(
                svc.CreateCameraRequest(camera_id="gate", camera=Camera(stream_url=live.url()))
            )
            await storage.upload_file(tmp_path / "clip.ts", "nvr/gate/0001.ts", "video/mp2t")
            recording = await stub.CreateRecording(
                svc.CreateRecordingRequest(
                    parent=camera.name,
                    recording=camera_pb2.Recording(
                        object_key="nvr/gate/0001.ts",
                        start_time=timestamp_pb2.Timestamp(seconds=1_700_000_000),
                    ),
                )
            )
            return camera, recording

        camera, recording = await gate_with_a_recording()
        snapshot = await stub.CaptureSnapshot(svc.CaptureSnapshotRequest(name=camera.name))
        assert snapshot.storage_key.startswith("cameras/gate/snapshots/")

        error = await expect_error(
            stub.DeleteCamera(svc.DeleteCameraRequest(name=camera.name)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert reason_of(status_of(error)) == "CAMERA_HAS_RECORDINGS"
        assert "has 1 recording(s)" in error.details() and "force" in error.details()
        assert (await stub.GetCamera(svc.GetCameraRequest(name=camera.name))).name == camera.name

        await stub.DeleteCamera(svc.DeleteCameraRequest(name=camera.name, force=True))
        await expect_error(stub.GetCamera(svc.GetCameraRequest(name=camera.name)), NOT_FOUND)
        await expect_error(
            stub.GetRecording(svc.GetRecordingRequest(name=recording.name)), NOT_FOUND
        )
        for key in ("nvr/gate/0001.ts", snapshot.storage_key):
            with pytest.raises(ObjectNotFound):
                await storage.stat(key)
        # The object is free to be registered again, for a new camera of the same id.
        _, again = await gate_with_a_recording()
        assert again.name != recording.name


async def test_grpcurl_sees_camera_service_through_reflection_and_health(
    service_settings: Callable[..., Settings],
) -> None:
    async with camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams:
        target = cams.service.target
        code, out = await grpcurl(target, "list")
        assert code == 0 and "sparc.video.v1.CameraService" in out.split(), out
        code, out = await grpcurl(target, "describe", "sparc.video.v1.CameraService")
        assert code == 0, out
        assert "rpc ProbeCamera ( .sparc.video.v1.ProbeCameraRequest )" in out
        health = json.dumps({"service": "sparc.video.v1.CameraService"})
        code, out = await grpcurl("-d", health, target, "grpc.health.v1.Health/Check")
        assert code == 0 and json.loads(out) == {"status": "SERVING"}, out
        body = {
            "cameraId": "dock-1",
            "camera": {
                "displayName": "Dock 1",
                "streamUrl": "rtsp://admin:hunter2@10.0.0.7:554/Streaming/101",
                "labels": {"zone": "perimeter"},
            },
        }
        code, out = await grpcurl(
            "-d", json.dumps(body), target, "sparc.video.v1.CameraService/CreateCamera"
        )
        assert code == 0, out
        created = json.loads(out)  # grpcurl prints the proto field names
        assert created["stream_url"] == "rtsp://***@10.0.0.7:554/Streaming/101"
        assert created["has_credentials"] and created["enabled"] and "hunter2" not in out
