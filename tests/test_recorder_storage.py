"""The recorder when storage goes away: a moto S3 server of the test's own, stopped and started
again on the same port. Segments wait in the buffer and are uploaded in order once it is back,
with no gap; only a full buffer drops segments, recorded as a storage_unavailable gap."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from sparc_video.core.settings import Settings
from sparc_video.database.pool import Database
from sparc_video.recording.reasons import GapReason
from sparc_video.recording.timeline import timeline
from sparc_video.simulator import TestCamera
from sparc_video.storage import open_storage
from tests.fixtures.redis import free_port
from tests.fixtures.s3 import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, REGION, s3_client
from tests.recorder_helpers import FAST, add_recorded_camera, running_recorder, wait_for

BUCKET = "recordings"


class Moto:
    """A moto server that can be stopped and started again on its port (empty again)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1).close()
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        s3_client(self.endpoint).create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def moto() -> Iterator[Moto]:
    server = Moto()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def s3(moto: Moto, **more: object) -> dict[str, object]:
    return {
        **FAST,
        "s3_bucket": BUCKET,
        "s3_endpoint_url": moto.endpoint,
        "aws_region": REGION,
        "aws_access_key_id": DUMMY_ACCESS_KEY,
        "aws_secret_access_key": DUMMY_SECRET_KEY,
        **more,
    }


@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    "outage_s",
    # A few segments in the default run; the minute-long outage with `-m slow`.
    [0.0, pytest.param(60.0, marks=pytest.mark.slow, id="a-minute")],
)
async def test_segments_wait_for_storage_and_go_up_in_order_without_a_gap(
    service_settings: Callable[..., Settings],
    database: Database,
    moto: Moto,
    tmp_path: Path,
    outage_s: float,
) -> None:
    settings = service_settings(**s3(moto, recorder_buffer_dir=tmp_path / "buffer"))
    with TestCamera(size=(160, 96), fps=10) as camera:
        store = await add_recorded_camera(database, "cam", camera.url)
        async with (
            open_storage(settings) as storage,
            running_recorder(settings, database, storage, "rec") as recorder,
        ):

            async def registered(n: int) -> bool:
                return len(await store.all_recordings("cam")) >= n

            await wait_for(lambda: registered(2), 60, "segments before the outage")
            moto.stop()
            before = len(await store.all_recordings("cam"))
            buffer = settings.recorder_buffer_dir / "cam"

            async def buffered(n: int) -> bool:
                return len(list(buffer.glob("*.mp4"))) >= n

            await wait_for(lambda: buffered(3), 60, "segments waiting in the buffer")

            async def outage_covered() -> bool:
                # Buffered segments are named by their start (ns): storage has been away for
                # at least the time from the first to the newest.
                starts = sorted(int(p.stem) for p in buffer.glob("*.mp4"))
                return bool(starts) and (starts[-1] - starts[0]) / 1e9 >= outage_s

            await wait_for(outage_covered, outage_s + 90, "the outage's length in the buffer")
            assert len(await store.all_recordings("cam")) <= before + 1
            moto.start()
            waiting = sorted(int(p.stem) for p in buffer.glob("*.mp4"))
            await wait_for(lambda: registered(before + len(waiting) + 1), 90, "uploads resumed")
            assert recorder.held == {"cam"}
    found = await store.all_recordings("cam")
    # Registered in the order they were recorded: creation follows start.
    assert [r.create_time for r in found] == sorted(r.create_time for r in found)
    assert {w for w in waiting} <= {r.start_ns for r in found}
    line = await timeline(database, "cam", found[0].start_ns, found[-1].end_ns)
    assert line.gaps == (), line.gaps
    assert len(line.spans) == 1
    client = s3_client(moto.endpoint)
    for record in found:
        if record.start_ns in waiting:
            head = client.head_object(Bucket=BUCKET, Key=record.object_key)
            assert head["ContentLength"] == record.size_bytes


@pytest.mark.timeout(240)
async def test_a_full_buffer_drops_segments_as_a_storage_unavailable_gap(
    service_settings: Callable[..., Settings], database: Database, moto: Moto, tmp_path: Path
) -> None:
    settings = service_settings(
        **s3(moto, recorder_buffer_dir=tmp_path / "buffer", recorder_buffer_max=64 * 1024)
    )
    with TestCamera(size=(320, 180), fps=25) as camera:
        store = await add_recorded_camera(database, "cam", camera.url)
        async with (
            open_storage(settings) as storage,
            running_recorder(settings, database, storage, "rec"),
        ):

            async def registered(n: int) -> bool:
                return len(await store.all_recordings("cam")) >= n

            await wait_for(lambda: registered(1), 60, "a segment before the outage")
            moto.stop()
            dropped = _dropped()

            async def dropping() -> bool:
                return _dropped() >= dropped + 2

            await wait_for(dropping, 90, "segments dropped by the full buffer")
            before = len(await store.all_recordings("cam"))
            moto.start()
            await wait_for(lambda: registered(before + 2), 90, "uploads resumed")
    found = await store.all_recordings("cam")
    line = await timeline(database, "cam", found[0].start_ns, found[-1].end_ns)
    assert [g.reason for g in line.gaps] == [GapReason.STORAGE_UNAVAILABLE], line.gaps


def _dropped() -> float:
    return REGISTRY.get_sample_value("video_recorder_segments_dropped_total") or 0.0


@pytest.mark.timeout(240)
async def test_segments_left_in_the_buffer_are_uploaded_by_the_next_start(
    service_settings: Callable[..., Settings], database: Database, moto: Moto, tmp_path: Path
) -> None:
    settings = service_settings(**s3(moto, recorder_buffer_dir=tmp_path / "buffer"))
    buffer = settings.recorder_buffer_dir / "cam"
    with TestCamera(size=(160, 96), fps=10) as camera:
        store = await add_recorded_camera(database, "cam", camera.url)
        async with open_storage(settings) as storage:
            async with running_recorder(settings, database, storage, "first"):

                async def registered(n: int) -> bool:
                    return len(await store.all_recordings("cam")) >= n

                await wait_for(lambda: registered(1), 60, "a segment")
                moto.stop()

                async def buffered() -> bool:
                    return len(list(buffer.glob("*.mp4"))) >= 2

                await wait_for(buffered, 60, "segments waiting in the buffer")
            # Stopped while storage was away: its segments stay on disk.
            left = sorted(int(p.stem) for p in buffer.glob("*.mp4"))
            assert len(left) >= 2
            moto.start()
            async with running_recorder(settings, database, storage, "second"):

                async def uploaded() -> bool:
                    starts = {r.start_ns for r in await store.all_recordings("cam")}
                    return set(left) <= starts

                await wait_for(uploaded, 90, "the left segments registered")
    found = await store.all_recordings("cam")
    assert [r.create_time for r in found] == sorted(r.create_time for r in found)
    assert {r.recorder_id for r in found if r.start_ns in left} == {"first"}
    assert not list(buffer.glob(f"{left[0]}.*"))


@pytest.mark.timeout(300)
async def test_segments_left_behind_a_takeover_are_never_uploaded(
    service_settings: Callable[..., Settings], database: Database, moto: Moto, tmp_path: Path
) -> None:
    """A recorder stops with segments buffered; another records the camera meanwhile (its
    failover gap covers their time). When the first takes the camera again, those segments are
    stale: neither uploaded nor registered, only removed; the timeline keeps the gap."""
    settings = service_settings(**s3(moto, recorder_buffer_dir=tmp_path / "buffer"))
    other = service_settings(**s3(moto, recorder_buffer_dir=tmp_path / "other"))
    buffer = settings.recorder_buffer_dir / "cam"
    with TestCamera(size=(160, 96), fps=10) as camera:
        store = await add_recorded_camera(database, "cam", camera.url)

        async def registered_by(recorder_id: str, n: int) -> bool:
            found = await store.all_recordings("cam")
            return sum(1 for r in found if r.recorder_id == recorder_id) >= n

        async with open_storage(settings) as storage:
            async with running_recorder(settings, database, storage, "first"):
                await wait_for(lambda: registered_by("first", 1), 60, "a segment")
                moto.stop()

                async def buffered() -> bool:
                    return len(list(buffer.glob("*.mp4"))) >= 2

                await wait_for(buffered, 60, "segments waiting in the buffer")
            left = sorted(int(p.stem) for p in buffer.glob("*.mp4"))
            moto.start()
            async with running_recorder(other, database, storage, "second"):
                await wait_for(lambda: registered_by("second", 2), 60, "the other's segments")
            async with running_recorder(settings, database, storage, "first-again"):
                await wait_for(lambda: registered_by("first-again", 1), 60, "recorded again")

                async def cleared() -> bool:
                    return not list(buffer.glob("*.mp4"))

                await wait_for(cleared, 30, "the stale segments removed")
    found = await store.all_recordings("cam")
    assert not {r.start_ns for r in found} & set(left)
    listed = s3_client(moto.endpoint).list_objects_v2(Bucket=BUCKET, Prefix="cameras/cam/")
    keys = {item["Key"] for item in listed.get("Contents", [])}
    assert not {k for k in keys if int(k.rsplit("/", 1)[1].split(".")[0]) in left}
    line = await timeline(database, "cam", found[0].start_ns, found[-1].end_ns)
    failover = [g for g in line.gaps if g.reason is GapReason.RECORDER_FAILOVER]
    # The gap before the other recorder's footage covers the stale segments' time.
    assert any(g.start_ns <= left[0] and g.end_ns > left[-1] for g in failover), line.gaps


@pytest.mark.timeout(300)
async def test_a_segment_changed_while_storage_is_away_is_not_catalogued_and_is_kept(
    service_settings: Callable[..., Settings], database: Database, moto: Moto, tmp_path: Path
) -> None:
    settings = service_settings(**s3(moto, recorder_buffer_dir=tmp_path / "buffer"))
    buffer = settings.recorder_buffer_dir / "cam"
    refused = _changed()
    with TestCamera(size=(160, 96), fps=10) as camera:
        store = await add_recorded_camera(database, "cam", camera.url)
        async with (
            open_storage(settings) as storage,
            running_recorder(settings, database, storage, "rec") as recorder,
        ):

            async def registered_after(start_ns: int) -> bool:
                return any(r.start_ns > start_ns for r in await store.all_recordings("cam"))

            await wait_for(lambda: registered_after(0), 60, "a segment before the outage")
            moto.stop()

            async def buffered() -> bool:
                return len(list(buffer.glob("*.mp4"))) >= 2

            await wait_for(buffered, 60, "segments waiting in the buffer")
            # The newest waits behind the others, which storage refuses: changed in place.
            victim = max(buffer.glob("*.mp4"), key=lambda p: int(p.stem))

            async def hashed_while_waiting() -> bool:
                description = json.loads(victim.with_suffix(".json").read_text())
                return bool(description.get("sha256"))

            await wait_for(hashed_while_waiting, 30, "the waiting segment hashed")
            changed = bytearray(victim.read_bytes())
            changed[len(changed) // 2] ^= 0xFF
            victim.write_bytes(changed)
            moto.start()
            await wait_for(lambda: registered_after(int(victim.stem)), 90, "uploads resumed")
            assert recorder.held == {"cam"}
    found = await store.all_recordings("cam")
    assert int(victim.stem) not in {r.start_ns for r in found}
    assert _changed() == refused + 1
    # Kept for inspection as it was found, with the hash it was recorded with.
    kept = buffer / ".changed" / victim.name
    assert kept.read_bytes() == changed and not victim.exists()
    recorded = json.loads(kept.with_suffix(".json").read_text())["sha256"]
    assert recorded and recorded != hashlib.sha256(changed).hexdigest()
    # Its upload was deleted, not left behind (the server restarted empty: only what went up
    # since is there).
    listed = s3_client(moto.endpoint).list_objects_v2(Bucket=BUCKET)["Contents"]
    keys = {o["Key"] for o in listed}
    assert keys and all(k.endswith(".mp4") for k in keys)
    assert f"cameras/cam/recorder/{victim.stem}.mp4" not in keys
    # Its time is explained by a gap of exactly its span, not left an unexplained hole.
    start = int(victim.stem)
    end = int(recorded_description(kept)["end_ns"])
    line = await timeline(database, "cam", found[0].start_ns, found[-1].end_ns)
    changed_gaps = [g for g in line.gaps if g.reason is GapReason.SEGMENT_CHANGED]
    assert [(g.start_ns, g.end_ns) for g in changed_gaps] == [(start, end)], line.gaps
    assert str(kept) in changed_gaps[0].detail
    assert all(g.reason is not None for g in line.gaps), line.gaps


def recorded_description(kept: Path) -> dict[str, object]:
    description: dict[str, object] = json.loads(kept.with_suffix(".json").read_text())
    return description


def _changed() -> float:
    return REGISTRY.get_sample_value("video_recorder_segments_changed_total") or 0.0
