"""The continuous-recording API over gRPC with a real server: the policy set through
UpdateCamera and read back by GetCamera and ListCameras, its checks, the status beside it, the
timeline with the recorder's gap reasons, and who may call what."""

from __future__ import annotations

import asyncio
import datetime
import subprocess
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from sparc.video.v1 import camera_pb2, camera_service_pb2_grpc
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.api.cameras.mapping import GAP_REASONS
from sparc_video.client.cameras import AsyncCameraClient
from sparc_video.client.errors import NotFoundError
from sparc_video.core.settings import Settings
from sparc_video.recording.fencing import (
    PendingGap,
    register_refused,
    register_segment,
    take_over,
)
from sparc_video.recording.reasons import GapReason
from sparc_video.recording.status import RecordingState, RecordingStatus, StatusBoard
from tests.auth_helpers import as_static, auth_settings, service_with
from tests.camera_helpers import camera_service, expect_error, violations_of
from tests.test_cli import SPARC_VIDEO, client_env, sparc_video
from tests.test_recorder_catalog import T0, S, segment

Camera = camera_pb2.Camera
Policy = camera_pb2.RecordingPolicy
Gap = svc.TimelineGap


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def ts(ns: int) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(ns)
    return message


def test_every_gap_reason_has_its_own_proto_value() -> None:
    assert set(GAP_REASONS.to_proto) == set(GapReason)
    assert 0 not in GAP_REASONS.from_proto


async def test_update_camera_sets_the_policy_and_reads_return_it_with_the_status(
    service_settings: Callable[..., Settings],
) -> None:
    async with camera_service(service_settings()) as cams:
        stub = cams.stub
        created = await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="yard", camera=Camera(stream_url="rtsp://cam/x"))
        )
        assert created.recording_policy.mode == Policy.MODE_OFF
        assert created.recording_status.state == camera_pb2.RecordingStatus.STATE_OFF

        updated = await stub.UpdateCamera(
            svc.UpdateCameraRequest(
                camera=Camera(
                    name="cameras/yard",
                    display_name="ignored",
                    recording_policy=Policy(
                        mode=Policy.MODE_CONTINUOUS,
                        segment_duration=duration_pb2.Duration(seconds=30),
                        retention_days=7,
                    ),
                ),
                update_mask=mask("recording_policy"),
            )
        )
        assert updated.display_name == ""
        policy = updated.recording_policy
        assert (policy.mode, policy.segment_duration.seconds, policy.retention_days) == (
            Policy.MODE_CONTINUOUS,
            30,
            7,
        )
        # No recorder holds it yet.
        assert updated.recording_status.state == camera_pb2.RecordingStatus.STATE_CONNECTING
        got = await stub.GetCamera(svc.GetCameraRequest(name="cameras/yard"))
        assert got.recording_policy == policy

        # One subfield: the rest stays.
        changed = await stub.UpdateCamera(
            svc.UpdateCameraRequest(
                camera=Camera(name="cameras/yard", recording_policy=Policy(retention_days=0)),
                update_mask=mask("recording_policy.retention_days", "display_name"),
            )
        )
        assert changed.recording_policy.retention_days == 0
        assert changed.recording_policy.segment_duration.seconds == 30
        assert changed.recording_policy.mode == Policy.MODE_CONTINUOUS

        # The status a recorder writes comes back.
        board = StatusBoard(cams.service.app.redis, cams.service.app.store.keys, 60)
        await board.write(
            RecordingStatus(
                "yard",
                RecordingState.FAILING,
                recorder_id="rec-1",
                last_error="connection refused",
                last_packet_ns=T0,
                bitrate_bps=2e6,
                fps=25.0,
            )
        )
        listed = await stub.ListCameras(svc.ListCamerasRequest())
        status = listed.cameras[0].recording_status
        assert status.state == camera_pb2.RecordingStatus.STATE_FAILING
        assert (status.recorder, status.last_error, status.fps) == (
            "rec-1",
            "connection refused",
            25.0,
        )
        assert status.last_packet_time.ToNanoseconds() == T0
        assert listed.cameras[0].recording_policy.mode == Policy.MODE_CONTINUOUS


async def test_a_bad_policy_is_refused_naming_its_fields(
    service_settings: Callable[..., Settings],
) -> None:
    async with camera_service(service_settings()) as cams:
        stub = cams.stub
        await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="yard", camera=Camera(stream_url="rtsp://cam/x"))
        )
        error = await expect_error(
            stub.UpdateCamera(
                svc.UpdateCameraRequest(
                    camera=Camera(
                        name="cameras/yard",
                        recording_policy=Policy(
                            mode=Policy.MODE_CONTINUOUS,
                            segment_duration=duration_pb2.Duration(seconds=7200),
                            retention_days=-1,
                        ),
                    ),
                    update_mask=mask("recording_policy"),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert set(violations_of(error)) == {
            "recording_policy.segment_duration",
            "recording_policy.retention_days",
        }
        error = await expect_error(
            stub.UpdateCamera(
                svc.UpdateCameraRequest(
                    camera=Camera(name="cameras/yard", recording_policy=Policy(mode=9)),
                    update_mask=mask("recording_policy.mode"),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert set(violations_of(error)) == {"camera.recording_policy.mode"}
        got = await stub.GetCamera(svc.GetCameraRequest(name="cameras/yard"))
        assert got.recording_policy.mode == Policy.MODE_OFF


async def test_the_timeline_returns_spans_and_gaps_with_their_reasons(
    service_settings: Callable[..., Settings],
) -> None:
    async with camera_service(service_settings()) as cams:
        stub = cams.stub
        await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="cam", camera=Camera(stream_url="rtsp://cam/x"))
        )
        database = cams.service.app.database
        held = await take_over(database, "cam", "r1")
        await register_segment(database, segment("cam", 0, 2), held.token, None, "system:r")
        await register_segment(database, segment("cam", 2, 4), held.token, None, "system:r")
        gap = PendingGap(GapReason.CAMERA_UNREACHABLE, "connection refused")
        await register_segment(database, segment("cam", 6, 8), held.token, gap, "system:r")
        kept = PendingGap(GapReason.SEGMENT_CHANGED, "kept as .changed/x.mp4")
        await register_refused(
            database, "cam", T0 + 10 * S, T0 + 12 * S, held.token, None, kept, "r1"
        )

        found = await stub.GetCameraTimeline(
            svc.GetCameraTimelineRequest(
                name="cameras/cam", start_time=ts(T0), end_time=ts(T0 + 12 * S)
            )
        )
        spans = [
            (s.start_time.ToNanoseconds(), s.end_time.ToNanoseconds(), s.segment_count)
            for s in found.spans
        ]
        assert spans == [(T0, T0 + 4 * S, 2), (T0 + 6 * S, T0 + 8 * S, 1)]
        gaps = [
            (g.start_time.ToNanoseconds(), g.end_time.ToNanoseconds(), g.reason, g.detail)
            for g in found.gaps
        ]
        assert gaps == [
            (T0 + 4 * S, T0 + 6 * S, Gap.REASON_CAMERA_UNREACHABLE, "connection refused"),
            (T0 + 8 * S, T0 + 10 * S, Gap.REASON_UNSPECIFIED, ""),
            (T0 + 10 * S, T0 + 12 * S, Gap.REASON_SEGMENT_CHANGED, kept.detail),
        ]
        assert found.gaps[0].recorder == "r1"

        for request, field in (
            (svc.GetCameraTimelineRequest(name="cameras/cam", end_time=ts(T0)), "start_time"),
            (
                svc.GetCameraTimelineRequest(
                    name="cameras/cam", start_time=ts(T0), end_time=ts(T0)
                ),
                "end_time",
            ),
            (
                svc.GetCameraTimelineRequest(
                    name="cameras/cam", start_time=ts(T0), end_time=ts(T0 + 40 * 86400 * S)
                ),
                "end_time",
            ),
        ):
            error = await expect_error(
                stub.GetCameraTimeline(request), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert field in violations_of(error)
        await expect_error(
            stub.GetCameraTimeline(
                svc.GetCameraTimelineRequest(
                    name="cameras/nope", start_time=ts(T0), end_time=ts(T0 + S)
                )
            ),
            grpc.StatusCode.NOT_FOUND,
        )


@pytest.mark.parametrize(("principal", "may_update"), [("viewer-1", False), ("op-a", True)])
async def test_viewers_read_the_timeline_and_operators_set_policies(
    service_settings: Callable[..., Settings], principal: str, may_update: bool
) -> None:
    async with service_with(auth_settings(service_settings)) as service:
        stub = camera_service_pb2_grpc.CameraServiceStub(service.channel)
        admin = as_static("admin-1")
        await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="cam", camera=Camera(stream_url="rtsp://cam/x")),
            metadata=admin,
        )
        metadata = as_static(principal)
        found = await stub.GetCameraTimeline(
            svc.GetCameraTimelineRequest(
                name="cameras/cam", start_time=ts(T0), end_time=ts(T0 + S)
            ),
            metadata=metadata,
        )
        assert len(found.gaps) == 1
        update = stub.UpdateCamera(
            svc.UpdateCameraRequest(
                camera=Camera(
                    name="cameras/cam", recording_policy=Policy(mode=Policy.MODE_CONTINUOUS)
                ),
                update_mask=mask("recording_policy.mode"),
            ),
            metadata=metadata,
        )
        if may_update:
            assert (await update).recording_policy.mode == Policy.MODE_CONTINUOUS
        else:
            await expect_error(update, grpc.StatusCode.PERMISSION_DENIED)


async def test_record_status_and_timeline_through_the_cli(
    service_settings: Callable[..., Settings],
) -> None:
    async with camera_service(service_settings()) as cams:
        target = ["--target", cams.service.target]
        created = await sparc_video(
            "camera", "create", "gate-7", "--stream-url", "rtsp://gate7.local/stream", *target
        )
        assert created.rc == 0, created.stderr

        on = await sparc_video(
            "camera", "record", "gate-7", "--on", "--segment", "30s", "--retention-days", "9",
            "--format", "json", *target,
        )  # fmt: skip
        assert on.rc == 0, on.stderr
        assert on.json["recordingPolicy"] == {
            "mode": "MODE_CONTINUOUS",
            "segmentDuration": "30s",
            "retentionDays": 9,
        }
        shorter = await sparc_video("camera", "record", "gate-7", "--segment", "1.5m", *target)
        assert shorter.rc == 0, shorter.stderr
        status = await sparc_video("camera", "status", "gate-7", *target)
        assert status.rc == 0, status.stderr
        assert "recording CONTINUOUS" in status.stdout
        assert "90s" in status.stdout and "9 days" in status.stdout
        assert "CONNECTING" in status.stdout

        bad = await sparc_video("camera", "record", "gate-7", "--segment", "2h", *target)
        assert bad.rc == 5, bad.stderr
        assert "recording_policy.segment_duration" in bad.stderr
        unparsable = await sparc_video("camera", "record", "gate-7", "--segment", "soon", *target)
        assert unparsable.rc == 2 and "60s" in unparsable.stderr
        nothing = await sparc_video("camera", "record", "gate-7", *target)
        assert nothing.rc == 2, nothing.stderr

        database = cams.service.app.database
        held = await take_over(database, "gate-7", "r1")
        await register_segment(database, segment("gate-7", 0, 2), held.token, None, "system:r")
        gap = PendingGap(GapReason.STREAM_STALLED, "no packet for 10 s")
        await register_segment(database, segment("gate-7", 5, 7), held.token, gap, "system:r")
        start = datetime.datetime.fromtimestamp(T0 / S, datetime.UTC)
        end = start + datetime.timedelta(seconds=7)
        found = await sparc_video(
            "camera", "timeline", "gate-7", "--from", start.isoformat(), "--to",
            end.isoformat(), *target,
        )  # fmt: skip
        assert found.rc == 0, found.stderr
        lines = found.stdout.splitlines()
        assert lines[0].split() == ["KIND", "START", "END", "LENGTH", "REASON"]
        assert [line.split()[0] for line in lines[1:]] == ["RECORDED", "GAP", "RECORDED"]
        assert "STREAM_STALLED: no packet for 10 s" in lines[2] and "3s" in lines[2]
        as_json = await sparc_video(
            "camera", "timeline", "gate-7", "--from", start.isoformat(), "--to",
            end.isoformat(), "--format", "json", *target,
        )  # fmt: skip
        assert as_json.json["gaps"][0]["reason"] == "REASON_STREAM_STALLED"
        naive = await sparc_video(
            "camera", "timeline", "gate-7", "--from", "2026-01-01T00:00:00", "--to",
            end.isoformat(), *target,
        )  # fmt: skip
        assert naive.rc == 2, naive.stderr

        off = await sparc_video("camera", "record", "gate-7", "--off", *target)
        assert off.rc == 0 and "recording OFF" in off.stdout


async def test_watch_camera_streams_the_status_then_its_changes(
    service_settings: Callable[..., Settings],
) -> None:
    async with camera_service(service_settings()) as cams:
        stub = cams.stub
        await stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="cam", camera=Camera(stream_url="rtsp://cam/x"))
        )
        board = StatusBoard(cams.service.app.redis, cams.service.app.store.keys, 60)
        call = stub.WatchCamera(svc.WatchCameraRequest(name="cameras/cam"))
        stream = call.__aiter__()
        first = await asyncio.wait_for(stream.__anext__(), 10)
        assert first.event_id == ""
        assert first.recording_status.state == camera_pb2.RecordingStatus.STATE_OFF
        await board.write(RecordingStatus("cam", RecordingState.CONNECTING, recorder_id="r1"))
        await board.write(
            RecordingStatus("cam", RecordingState.RECORDING, recorder_id="r1", fps=25.0)
        )
        second = await asyncio.wait_for(stream.__anext__(), 10)
        third = await asyncio.wait_for(stream.__anext__(), 10)
        call.cancel()
        assert second.event_id and second.recording_status.recorder == "r1"
        assert second.recording_status.state == camera_pb2.RecordingStatus.STATE_CONNECTING
        assert third.recording_status.state == camera_pb2.RecordingStatus.STATE_RECORDING
        assert third.recording_status.fps == 25.0

        # Resuming replays what came after the event given, without a fresh status first.
        resumed = stub.WatchCamera(
            svc.WatchCameraRequest(name="cameras/cam", after_event_id=second.event_id)
        )
        replayed = await asyncio.wait_for(resumed.__aiter__().__anext__(), 10)
        resumed.cancel()
        assert replayed.event_id == third.event_id

        async def first_message(request: svc.WatchCameraRequest) -> None:
            async for _ in stub.WatchCamera(request):
                return

        await expect_error(
            first_message(svc.WatchCameraRequest(name="cameras/nope")), grpc.StatusCode.NOT_FOUND
        )
        await expect_error(
            first_message(svc.WatchCameraRequest(name="cameras/nope", after_event_id="1-0")),
            grpc.StatusCode.NOT_FOUND,
        )
        error = await expect_error(
            first_message(svc.WatchCameraRequest(name="cameras/cam", after_event_id="soon")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "after_event_id" in violations_of(error)


async def test_the_client_watches_a_camera(service_settings: Callable[..., Settings]) -> None:
    async with camera_service(service_settings()) as cams:
        await cams.stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="cam", camera=Camera(stream_url="rtsp://cam/x"))
        )
        board = StatusBoard(cams.service.app.redis, cams.service.app.store.keys, 60)
        async with AsyncCameraClient(cams.service.target) as client:
            seen: list[int] = []
            async for change in client.watch_camera("cam"):
                seen.append(change.recording_status.state)
                if len(seen) == 1:
                    await board.write(RecordingStatus("cam", RecordingState.FAILING))
                else:
                    break
            assert seen == [
                camera_pb2.RecordingStatus.STATE_OFF,
                camera_pb2.RecordingStatus.STATE_FAILING,
            ]
            with pytest.raises(NotFoundError):
                async for _ in client.watch_camera("nope"):
                    pass


async def test_camera_status_watch_prints_each_change(
    service_settings: Callable[..., Settings],
) -> None:
    async with camera_service(service_settings()) as cams:
        await cams.stub.CreateCamera(
            svc.CreateCameraRequest(camera_id="cam", camera=Camera(stream_url="rtsp://cam/x"))
        )
        board = StatusBoard(cams.service.app.redis, cams.service.app.store.keys, 60)
        proc = await asyncio.create_subprocess_exec(
            str(SPARC_VIDEO), "camera", "status", "cam", "--watch",
            "--target", cams.service.target,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(),
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(60):
                first = await proc.stdout.readline()
                assert b"cameras/cam  recording OFF" in first
                lines = [first]
                while b"state:" not in lines[-1]:
                    lines.append(await proc.stdout.readline())
                # The watch opens after the status is shown: a change before it is not
                # printed, so changes are made until one is.
                change = b""
                for attempt in range(30):
                    await board.write(
                        RecordingStatus(
                            "cam",
                            RecordingState.FAILING,
                            recorder_id="r9",
                            last_error=f"refused {attempt}",
                        )
                    )
                    try:
                        change = await asyncio.wait_for(proc.stdout.readline(), 1)
                        break
                    except TimeoutError:
                        continue
        finally:
            proc.terminate()
            await proc.wait()
        assert b"FAILING  recorder r9  error: refused" in change
