"""Gaps with the reason they have while a camera is down and after it is back: a camera that
stops accepting the recorder's log-in (tried again with a capped backoff, recorded again once
UpdateCamera gives it the new password) and a camera that sends no keyframe; meanwhile GetCamera
says FAILING with the last error and the timeline shows the gap still open, up to now."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from google.protobuf import field_mask_pb2, timestamp_pb2
from sparc.video.v1 import camera_pb2
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings
from sparc_video.database.pool import Database
from sparc_video.recording import supervisor
from sparc_video.recording.control import RecordingControl
from sparc_video.recording.policy import RecordingMode, RecordingPolicy, set_policy
from sparc_video.recording.reasons import GapReason
from sparc_video.recording.status import RecordingState
from sparc_video.recording.timeline import timeline
from sparc_video.simulator import Auth, TestCamera
from sparc_video.storage import LocalStorage
from tests.camera_helpers import camera_service
from tests.recorder_helpers import FAST, add_recorded_camera, running_recorder, wait_for

Gap = svc.TimelineGap
Status = camera_pb2.RecordingStatus
# Short enough to see the backoff reach its cap in seconds.
FIRST_S, CAP_S = 0.25, 1.0


def ts(ns: int) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(ns)
    return message


def retry_delays(caplog: pytest.LogCaptureFixture, camera_id: str, failure: str) -> list[float]:
    """The backoff the supervisor announced after each failure whose message has `failure`."""
    pattern = re.compile(rf"camera {camera_id}: .*{re.escape(failure)}.*; again in ([\d.]+) s")
    return [float(m[1]) for r in caplog.records if (m := pattern.match(r.getMessage()))]


async def all_uploaded(settings: Settings, camera_id: str) -> bool:
    """Nothing of the camera's waits in the recorder's buffer: its timeline is final so far."""
    return not list((settings.recorder_buffer_dir / camera_id).glob("*.mp4"))


@pytest.mark.timeout(180)
async def test_a_refused_log_in_is_an_authentication_gap_until_update_camera_fixes_it(
    service_settings: Callable[..., Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "RECONNECT_FIRST_S", FIRST_S)
    monkeypatch.setattr(supervisor, "RECONNECT_CAP_S", CAP_S)
    caplog.set_level(logging.INFO, logger=supervisor.__name__)
    settings = service_settings(**FAST, recorder_buffer_dir=tmp_path / "buffer")
    with TestCamera(size=(160, 96), fps=10, auth=Auth("viewer", "s3cret")) as camera:
        async with camera_service(settings) as cams:
            stub, database = cams.stub, cams.service.app.database
            storage = cams.service.app.storage
            assert isinstance(storage, LocalStorage)
            await stub.CreateCamera(
                svc.CreateCameraRequest(
                    camera_id="gate",
                    camera=camera_pb2.Camera(
                        stream_url=camera.url,
                        credentials=camera_pb2.CameraCredentials(
                            username="viewer", password="s3cret"
                        ),
                    ),
                )
            )
            policy = RecordingPolicy(RecordingMode.CONTINUOUS, segment_s=1.0)
            await set_policy(database, "gate", policy, "alice")
            async with running_recorder(settings, database, storage, "rec-a"):

                async def segments() -> int:
                    rows = await database.fetch("SELECT 1 FROM recordings WHERE camera_id = 'gate'")
                    return len(rows)

                async def at_least(n: int) -> bool:
                    return await segments() >= n

                await wait_for(lambda: at_least(2), 40, "two segments")
                # The camera's password changes: every log-in is refused from now on.
                camera.set_auth(Auth("viewer", "n3w"))
                camera.drop()

                async def capped() -> bool:
                    return len(retry_delays(caplog, "gate", "refused the log-in")) >= 4

                await wait_for(capped, 60, "four refused log-ins")
                delays = retry_delays(caplog, "gate", "refused the log-in")
                # Doubling from the first delay, then held at the cap.
                assert delays[:4] == [FIRST_S, 2 * FIRST_S, CAP_S, CAP_S]

                async def failing() -> bool:
                    found = await stub.GetCamera(svc.GetCameraRequest(name="cameras/gate"))
                    return found.recording_status.state == Status.STATE_FAILING

                await wait_for(failing, 20, "GetCamera says FAILING")
                status = await stub.GetCamera(svc.GetCameraRequest(name="cameras/gate"))
                assert "refused the log-in" in status.recording_status.last_error
                assert "n3w" not in str(status) and "s3cret" not in str(status)
                await wait_for(lambda: all_uploaded(settings, "gate"), 30, "uploads done")
                # The timeline's last gap is still open: from the last recorded second to now,
                # with the failure's reason.
                recorded_end = await database.fetchval(
                    "SELECT max(end_ns) FROM recordings WHERE camera_id = 'gate'"
                )
                before = time.time_ns()
                line = await stub.GetCameraTimeline(
                    svc.GetCameraTimelineRequest(
                        name="cameras/gate",
                        start_time=ts(recorded_end - 10**9),
                        end_time=ts(before + 3600 * 10**9),
                    )
                )
                open_gap = line.gaps[0]
                assert open_gap.reason == Gap.REASON_AUTHENTICATION_FAILED
                assert open_gap.start_time.ToNanoseconds() == recorded_end
                assert open_gap.end_time.ToNanoseconds() >= before
                assert "refused the log-in" in open_gap.detail
                # After now nothing is known yet: no reason.
                assert [g.reason for g in line.gaps[1:]] == [Gap.REASON_UNSPECIFIED]

                # The operator gives the camera its new password: recorded again.
                count = await segments()
                await stub.UpdateCamera(
                    svc.UpdateCameraRequest(
                        camera=camera_pb2.Camera(
                            name="cameras/gate",
                            credentials=camera_pb2.CameraCredentials(
                                username="viewer", password="n3w"
                            ),
                        ),
                        update_mask=field_mask_pb2.FieldMask(paths=["credentials"]),
                    )
                )
                await wait_for(lambda: at_least(count + 2), 40, "segments after the fix")
            rows = await database.fetch(
                "SELECT start_ns, end_ns FROM recordings WHERE camera_id = 'gate' ORDER BY start_ns"
            )
            stored = await timeline(database, "gate", rows[0]["start_ns"], rows[-1]["end_ns"])
    auth_gaps = [g for g in stored.gaps if g.reason is GapReason.AUTHENTICATION_FAILED]
    assert len(auth_gaps) == 1, stored.gaps
    assert auth_gaps[0].start_ns == recorded_end
    assert "n3w" not in auth_gaps[0].detail


@pytest.mark.timeout(180)
async def test_a_camera_without_keyframes_is_a_no_keyframe_gap(
    service_settings: Callable[..., Settings], database: Database, tmp_path: Path
) -> None:
    settings = service_settings(**FAST, recorder_buffer_dir=tmp_path / "buffer")
    redis = aioredis.Redis.from_url(settings.redis_url)
    control = RecordingControl(database, redis, Keys(settings.redis_prefix))
    try:
        with TestCamera(size=(160, 96), fps=10) as camera:
            store = await add_recorded_camera(database, "yard", camera.url)
            storage = LocalStorage.from_settings(settings)
            async with running_recorder(settings, database, storage, "rec-a"):

                async def at_least(n: int) -> bool:
                    return len(await store.all_recordings("yard")) >= n

                await wait_for(lambda: at_least(2), 40, "two segments")

                async def recording() -> bool:
                    return (await control.view("yard")).status.state is RecordingState.RECORDING

                await wait_for(recording, 30, "recording")
                # While recording, the open segment is not a gap: the timeline ends where the
                # catalogue does.
                first_start = (await store.all_recordings("yard"))[0].start_ns
                line = await control.timeline("yard", first_start, time.time_ns() + 10**9)
                assert line.spans[-1].end_ns == line.end_ns, line
                assert all(gap.end_ns <= line.spans[-1].start_ns for gap in line.gaps), line.gaps
                camera.withhold_keyframes()
                camera.drop()

                async def no_keyframe() -> bool:
                    status = (await control.view("yard")).status
                    return status.last_error_reason == GapReason.NO_KEYFRAME.value

                await wait_for(no_keyframe, 60, "a run ended without a keyframe")
                await wait_for(lambda: all_uploaded(settings, "yard"), 30, "uploads done")
                view = (await control.view("yard")).status
                assert view.state in (RecordingState.FAILING, RecordingState.CONNECTING)
                recorded_end = (await store.all_recordings("yard"))[-1].end_ns
                line = await control.timeline("yard", recorded_end, time.time_ns() + 10**9)
                assert line.gaps[0].reason is GapReason.NO_KEYFRAME
                assert line.gaps[0].start_ns == recorded_end
                count = len(await store.all_recordings("yard"))
                camera.withhold_keyframes(False)
                await wait_for(lambda: at_least(count + 1), 60, "a segment after keyframes")
        found = await store.all_recordings("yard")
        stored = await timeline(database, "yard", found[0].start_ns, found[-1].end_ns)
        reasons = [g.reason for g in stored.gaps]
        assert GapReason.NO_KEYFRAME in reasons, stored.gaps
    finally:
        await redis.aclose()
