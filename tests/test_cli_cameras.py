"""`sparc-video camera|recording ...` run as real processes against a real server (no worker)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from pathlib import Path

import pytest

from sparc_video.client.cameras import AsyncCameraClient, Camera
from sparc_video.core.errors import ObjectNotFound
from sparc_video.core.settings import Settings
from tests.camera_helpers import LOOPBACK_CAMERAS, camera_service
from tests.test_cli import Result, client_env, sparc_video
from tests.test_recordings import clip

PASSWORD = "hunter2-Secret-9f3a"
URL_SECRET = "Url-Secret-77c1"


def assert_no_secret(*results: Result) -> None:
    for result in results:
        assert PASSWORD not in result.stdout + result.stderr
        assert URL_SECRET not in result.stdout + result.stderr


async def test_camera_crud_through_the_cli(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams:
        target = ["--target", cams.service.target]
        password_file = tmp_path / "password"
        password_file.write_text(PASSWORD + "\n")

        created = await sparc_video(
            "camera", "create", "gate-7", "--display-name", "Gate 7", "--site", "hq",
            "--label", "zone=north", "--label", "floor=0",
            "--stream-url", "rtsp://gate7.local:554/stream",
            "--username", "viewer", "--password-file", str(password_file), *target,
        )  # fmt: skip
        assert created.rc == 0, created.stderr
        assert created.stdout.strip() == "cameras/gate-7"

        got = await sparc_video("camera", "get", "gate-7", "--format", "json", *target)
        assert got.rc == 0, got.stderr
        assert got.json["name"] == "cameras/gate-7"
        assert got.json["displayName"] == "Gate 7" and got.json["site"] == "hq"
        assert got.json["labels"] == {"zone": "north", "floor": "0"}
        assert got.json["hasCredentials"] is True and got.json["enabled"] is True
        text = await sparc_video("camera", "get", "cameras/gate-7", *target)
        assert "Gate 7" in text.stdout and "stored (write-only)" in text.stdout

        # A log-in inside the URL; the password variable is ignored without --username.
        env = client_env(SPARC_VIDEO_CAMERA_PASSWORD=PASSWORD)
        other = await sparc_video(
            "camera", "create", "yard", "--site", "depot",
            "--stream-url", f"rtsp://admin:{URL_SECRET}@yard.local/live", "--format", "json",
            *target, env=env,
        )  # fmt: skip
        assert other.rc == 0, other.stderr
        assert other.json["name"] == "cameras/yard"
        assert other.json["streamUrl"] == "rtsp://***@yard.local/live"

        listed = await sparc_video("camera", "list", "--format", "json", *target)
        assert listed.rc == 0, listed.stderr
        assert sorted(c["name"] for c in listed.json["cameras"]) == [
            "cameras/gate-7",
            "cameras/yard",
        ]
        filtered = await sparc_video("camera", "list", "--filter", 'site = "hq"', *target)
        assert filtered.rc == 0, filtered.stderr
        assert filtered.stdout.splitlines()[0].split()[:2] == ["NAME", "DISPLAY"]
        assert [line.split()[0] for line in filtered.stdout.splitlines()[1:]] == ["cameras/gate-7"]

        # The password from the environment, the other way to pass one.
        relogin = await sparc_video(
            "camera", "update", "yard", "--stream-url", "rtsp://yard.local/live",
            "--username", "viewer2", "--format", "json", *target, env=env,
        )  # fmt: skip
        assert relogin.rc == 0, relogin.stderr
        assert relogin.json["hasCredentials"] is True

        updated = await sparc_video(
            "camera", "update", "gate-7", "--display-name", "Gate 7 (north)", "--disable",
            "--clear-credentials", "--format", "json", *target,
        )  # fmt: skip
        assert updated.rc == 0, updated.stderr
        assert updated.json["displayName"] == "Gate 7 (north)"
        assert updated.json["enabled"] is False and updated.json["hasCredentials"] is False
        assert updated.json["site"] == "hq", "fields not given stay"

        nothing = await sparc_video("camera", "update", "gate-7", *target)
        assert nothing.rc == 2 and "at least one field" in nothing.stderr

        deleted = await sparc_video("camera", "delete", "yard", "--format", "json", *target)
        assert deleted.rc == 0 and deleted.json == {"name": "cameras/yard", "deleted": True}
        gone = await sparc_video("camera", "get", "yard", *target)
        assert gone.rc == 5 and "NOT_FOUND" in gone.stderr

        assert_no_secret(
            created, got, text, other, relogin, listed, filtered, updated, deleted, gone
        )


async def test_refused_requests_exit_5_with_the_servers_message(
    service_settings: Callable[..., Settings],
) -> None:
    async with camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams:
        target = ["--target", cams.service.target]
        bad = await sparc_video(
            "camera", "create", "bad", "--stream-url", "ftp://nope/", "--format", "json", *target
        )  # fmt: skip
        assert bad.rc == 5
        error = bad.json["error"]
        assert error["code"] == "INVALID_ARGUMENT"
        assert any(v["field"] == "camera.stream_url" for v in error["fieldViolations"])
        assert "INVALID_ARGUMENT" in bad.stderr and "stream_url" in bad.stderr

        missing = await sparc_video("recording", "list", "nobody", *target)
        assert missing.rc == 5 and "NOT_FOUND" in missing.stderr

        no_password = await sparc_video(
            "camera", "create", "x", "--stream-url", "rtsp://x/",
            "--password-file", "/nonexistent/password", *target,
        )  # fmt: skip
        assert no_password.rc == 2 and "--password-file" in no_password.stderr

        naive = await sparc_video(
            "recording", "create", "x", "k.mp4", "--start-time", "2026-01-01T00:00:00", *target
        )
        assert naive.rc == 2 and "timezone" in naive.stderr

    # The server has stopped; nothing listens there: unreachable, not refused.
    unreachable = await sparc_video("camera", "list", "--timeout", "1", *target)
    assert unreachable.rc == 4, unreachable.stderr


async def test_register_list_and_delete_a_recording_through_the_cli(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams:
        target = ["--target", cams.service.target]
        async with AsyncCameraClient(cams.service.target) as client:
            await client.create_camera(Camera(stream_url="rtsp://gate/"), camera_id="gate")
        source = await asyncio.to_thread(clip, tmp_path / "segment.mp4")
        await cams.service.app.storage.upload_file(source, "nvr/gate/0.mp4", "video/mp4")

        start = "2026-11-24T08:00:00Z"
        created = await sparc_video(
            "recording", "create", "gate", "nvr/gate/0.mp4", "--start-time", start, *target
        )
        assert created.rc == 0, created.stderr
        name = created.stdout.strip()
        assert name.startswith("cameras/gate/recordings/")

        got = await sparc_video("recording", "get", name, "--format", "json", *target)
        assert got.rc == 0, got.stderr
        assert got.json["objectKey"] == "nvr/gate/0.mp4"
        assert got.json["startTime"] == start and got.json["duration"] == "2s"
        assert got.json["videoCodec"] == "h264"

        listed = await sparc_video(
            "recording", "list", "gate", "--start-time", "2026-11-24T07:00:00Z", "--format", "json",
            *target,
        )  # fmt: skip
        assert [r["name"] for r in listed.json["recordings"]] == [name]
        later = await sparc_video(
            "recording", "list", "cameras/gate", "--start-time", "2026-11-24T09:00:00Z", *target
        )
        assert later.rc == 0 and later.stdout.splitlines()[1:] == []
        table = await sparc_video("recording", "list", "gate", *target)
        assert table.stdout.splitlines()[0].split() == [
            "NAME", "START", "DURATION", "VIDEO", "SIZE", "OBJECT",
        ]  # fmt: skip
        assert name in table.stdout and "2.00 s" in table.stdout

        link = await sparc_video(
            "recording", "upload-url", "gate", "--size-bytes", "1000", "--format", "json", *target
        )
        assert link.rc == 0, link.stderr
        assert link.json["uploadUrl"] and link.json["objectKey"]

        # A camera with recordings is only deleted with --force.
        refused = await sparc_video("camera", "delete", "gate", *target)
        assert refused.rc == 5 and "FAILED_PRECONDITION" in refused.stderr

        deleted = await sparc_video("recording", "delete", name, *target)
        assert deleted.rc == 0 and deleted.stdout.strip() == f"{name}: deleted"
        empty = await sparc_video("recording", "list", "gate", "--format", "json", *target)
        assert empty.json["recordings"] == []
        with pytest.raises(ObjectNotFound):
            await cams.service.app.storage.stat("nvr/gate/0.mp4")


def test_datetime_flag_needs_a_timezone() -> None:
    from sparc_video.cli.operations import timestamp

    assert timestamp("2026-11-24T08:00:00Z") == datetime.datetime(
        2026, 11, 24, 8, tzinfo=datetime.UTC
    )
