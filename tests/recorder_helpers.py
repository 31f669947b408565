"""What the recorder tests share: a camera in the catalogue pointing at a test camera, a
recorder running in this process, and waiting on conditions with deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from sparc_video.cameras.records import CameraRecord, CameraStore, RecordingRecord
from sparc_video.core.settings import Settings
from sparc_video.database.pool import Database
from sparc_video.exports.holds import RecordingHolds
from sparc_video.live.hub import LiveHubs
from sparc_video.recording.policy import RecordingMode, RecordingPolicy, set_policy
from sparc_video.recording.recorder import Recorder
from sparc_video.storage import ManagedStorage
from tests.fixtures.service import settings_env

ROOT = Path(__file__).resolve().parent.parent

# Short segments and leases so a test sees many of each in seconds.
FAST = {
    "camera_allowed_networks": ("127.0.0.0/8",),
    "recorder_lease_ttl_s": 3.0,
    "recorder_poll_interval_s": 0.3,
}


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, every_s: float = 0.1
) -> float:
    """Poll `check` until true; the seconds it took. AssertionError naming `what` on timeout."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(every_s)


async def add_recorded_camera(
    database: Database, camera_id: str, url: str, segment_s: float = 1.0
) -> CameraStore:
    store = CameraStore(database, RecordingHolds(database))
    await store.create_camera(CameraRecord(id=camera_id, stream_url=url), "alice")
    await set_policy(
        database, camera_id, RecordingPolicy(RecordingMode.CONTINUOUS, segment_s=segment_s), "alice"
    )
    return store


@contextlib.asynccontextmanager
async def running_recorder(
    settings: Settings,
    database: Database,
    storage: ManagedStorage,
    recorder_id: str,
    sweeper: CameraStore | None = None,
    live: LiveHubs | None = None,
) -> AsyncIterator[Recorder]:
    redis = aioredis.Redis.from_url(settings.redis_url)
    recorder = Recorder(settings, database, redis, storage, recorder_id, live=live)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop, sweeper))
    try:
        yield recorder
    finally:
        stop.set()
        await task
        await redis.aclose()


async def recordings(store: CameraStore, camera_id: str) -> list[RecordingRecord]:
    return await store.all_recordings(camera_id)


def assert_contiguous_or_gapped(found: list[RecordingRecord]) -> None:
    """No two segments overlap; time order is start order."""
    for before, after in itertools.pairwise(found):
        assert after.start_ns >= before.end_ns, (before, after)


def start_recorder(
    settings: Settings,
    buffer_dir: Path,
    metrics_port: int = 0,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`sparc-video recorder` as a real OS process; `env`: variables beyond the settings."""
    return subprocess.Popen(
        [sys.executable, "-m", "sparc_video.cli", "recorder"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            **settings_env(settings),
            "CAMERA_ALLOWED_NETWORKS": "127.0.0.0/8",
            "RECORDER_BUFFER_DIR": str(buffer_dir),
            "RECORDER_METRICS_PORT": str(metrics_port),
            **(env or {}),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
