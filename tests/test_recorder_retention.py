"""The retention sweep of recorded segments, in a real PostgreSQL with local storage: expired
segments go (object, row, audit entry as system:retention, storage-used bytes), a segment an
unfinished export holds stays, and uploaded recordings are never swept."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from sparc_video.audit import Action, AuditLog
from sparc_video.cameras.records import CameraRecord, CameraStore, RecordingRecord
from sparc_video.core.errors import ObjectNotFound
from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings
from sparc_video.database.pool import Database
from sparc_video.exports.holds import RecordingHolds
from sparc_video.media.probe import StreamInfo
from sparc_video.observability.metrics import StorageUsage
from sparc_video.recording.fencing import register_segment, take_over
from sparc_video.recording.policy import RecordingMode, RecordingPolicy, set_policy
from sparc_video.recording.retention import DAY_NS, sweep
from sparc_video.storage import LocalStorage

T0 = 1_700_000_000 * 10**9


async def test_expired_segments_go_unless_an_unfinished_export_holds_them(
    service_settings: Callable[..., Settings], database: Database
) -> None:
    settings = service_settings()
    storage = LocalStorage.from_settings(settings)
    redis = aioredis.Redis.from_url(settings.redis_url)
    usage = StorageUsage(redis, Keys(settings.redis_prefix))
    store = CameraStore(database, RecordingHolds(database))
    await store.create_camera(CameraRecord(id="cam", stream_url="rtsp://cam/x"), "alice")
    policy = RecordingPolicy(RecordingMode.CONTINUOUS, segment_s=60, retention_days=2)
    await set_policy(database, "cam", policy, "alice")
    held = await take_over(database, "cam", "rec")
    records = []
    for i, recorder in enumerate(("rec", "rec", "rec", "")):
        key = f"cameras/cam/recorder/{i}.mp4"
        info = await storage.put_bytes(key, b"x" * (100 + i), "video/mp4")
        await usage.record(key, info.size_bytes)
        record = RecordingRecord(
            id=f"r{i}",
            camera_id="cam",
            object_key=key,
            start_ns=T0 + i * 60 * 10**9,
            duration_ns=60 * 10**9,
            stream=StreamInfo("mp4", "h264", 160, 96, 10.0, ""),
            frame_count=600,
            size_bytes=info.size_bytes,
            sha256=info.sha256 or "",
            recorder_id=recorder,
            clock_source="rtcp",
        )
        await register_segment(database, record, held.token, None, "system:recorder")
        records.append(record)
    # An unfinished export holds r1.
    await database.execute(
        "INSERT INTO exports (id, state, create_time, update_time, record) "
        "VALUES ('exp', 'RUNNING', now(), now(), '{}')"
    )
    await database.execute(
        "INSERT INTO retention_holds (recording_id, export_id) VALUES ('r1', 'exp')"
    )
    total = await usage.total()
    # Two days after the third segment's end: the first three expired; r3 was uploaded.
    now = records[2].end_ns + 2 * DAY_NS
    result = await sweep(
        database, store, storage, settings.recording_retention_days, now, usage.forget_prefix
    )
    assert (result.deleted, result.held) == (2, 1)
    left = [r.id for r in await store.all_recordings("cam")]
    assert left == ["r1", "r3"]
    for gone in (records[0], records[2]):
        with pytest.raises(ObjectNotFound):
            await storage.stat(gone.object_key)
    await storage.stat(records[1].object_key)
    assert await usage.total() == total - records[0].size_bytes - records[2].size_bytes
    trail = await AuditLog(database).trail(resource=records[0].name)
    assert [(e.entry.principal, e.entry.action) for e in trail][-1] == (
        "system:retention",
        Action.RECORDING_DELETE,
    )
    # The export ends: its hold no longer keeps r1.
    await database.execute("UPDATE exports SET state = 'SUCCEEDED' WHERE id = 'exp'")
    again = await sweep(database, store, storage, 30, now, usage.forget_prefix)
    assert (again.deleted, again.held) == (1, 0)
    assert [r.id for r in await store.all_recordings("cam")] == ["r3"]
    await redis.aclose()
