"""The recorder against the test camera, PostgreSQL, Redis and storage, in this process:
segments registered in order that decode, gaps with reasons when the camera goes away, policy
OFF picked up without a restart, a full buffer, and the camera-range export of what it recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import redis.asyncio as aioredis

from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings
from sparc_video.database.pool import Database
from sparc_video.recording.policy import RecordingPolicy, get_policy, set_policy
from sparc_video.recording.reasons import GapReason
from sparc_video.recording.status import RecordingState, read_status
from sparc_video.recording.timeline import timeline
from sparc_video.simulator import TestCamera
from sparc_video.storage import LocalStorage
from tests.recorder_helpers import (
    FAST,
    add_recorded_camera,
    assert_contiguous_or_gapped,
    running_recorder,
    wait_for,
)


async def test_a_recorded_camera_gets_segments_that_decode_and_gaps_with_reasons(
    service_settings: Callable[..., Settings], database: Database, tmp_path: Path
) -> None:
    settings = service_settings(**FAST, recorder_buffer_dir=tmp_path / "buffer")
    storage = LocalStorage.from_settings(settings)
    redis = aioredis.Redis.from_url(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    with TestCamera(size=(160, 96), fps=10) as camera:
        store = await add_recorded_camera(database, "cam1", camera.url)
        async with running_recorder(settings, database, storage, "rec-a") as recorder:

            async def registered(n: int) -> bool:
                return len(await store.all_recordings("cam1")) >= n

            await wait_for(lambda: registered(3), 40, "three segments registered")
            status = await read_status(redis, keys, "cam1")
            assert status is not None and status.recorder_id == "rec-a"
            assert status.state is RecordingState.RECORDING
            before = len(await store.all_recordings("cam1"))
            camera.drop()
            await wait_for(lambda: registered(before + 2), 60, "segments after the drop")
            assert recorder.held == {"cam1"}
            await set_policy(database, "cam1", RecordingPolicy(), "alice")
            await wait_for(lambda: _state_is(redis, keys, "cam1", RecordingState.OFF), 20, "off")
            assert recorder.held == set()
    found = await store.all_recordings("cam1")
    assert_contiguous_or_gapped(found)
    assert all(r.recorder_id == "rec-a" and r.clock_source in ("rtcp", "receive") for r in found)
    for record in found[:2]:
        path = await storage.local_path(record.object_key)
        with av.open(str(path)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames > 0
        assert record.sha256 and record.stream.video_codec == "h264"
    line = await timeline(database, "cam1", found[0].start_ns, found[-1].end_ns)
    reasons = {g.reason for g in line.gaps}
    assert reasons & {GapReason.STREAM_ENDED, GapReason.STREAM_STALLED}, line.gaps
    assert await get_policy(database, "cam1") == RecordingPolicy()
    await redis.aclose()


async def _state_is(
    redis: aioredis.Redis, keys: Keys, camera_id: str, state: RecordingState
) -> bool:
    status = await read_status(redis, keys, camera_id)
    return status is not None and status.state is state
