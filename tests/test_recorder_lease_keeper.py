"""One owner of a recorder's leases: its lease keeper renews them on its own cadence, so a round
stalled past the TTL loses nothing, and the rounds never renew; a lease the keeper finds lost
(taken by another recorder) stops the camera here, and nothing more is registered under the
old fence."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings
from sparc_video.database.pool import Database
from sparc_video.recording import fencing
from sparc_video.recording import recorder as recorder_module
from sparc_video.recording.policy import RecordedCamera
from sparc_video.recording.reasons import GapReason
from sparc_video.simulator import TestCamera
from sparc_video.storage import LocalStorage
from tests.recorder_helpers import FAST, add_recorded_camera, running_recorder, wait_for


async def _fence(database: Database, camera_id: str) -> int:
    return int(
        await database.fetchval("SELECT recorder_fence FROM cameras WHERE id = $1", camera_id)
    )


@pytest.mark.timeout(180)
async def test_a_stalled_round_keeps_its_leases_and_only_the_keeper_renews(
    service_settings: Callable[..., Settings],
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = service_settings(**FAST, recorder_buffer_dir=tmp_path / "buffer")
    ttl_s = settings.recorder_lease_ttl_s
    storage = LocalStorage.from_settings(settings)
    redis = aioredis.Redis.from_url(settings.redis_url)
    lease = Keys(settings.redis_prefix).recorder_lease("cam")
    stall, stalled, resumed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    read_policies = recorder_module.cameras_to_record

    async def slow_policies(database: Database) -> list[RecordedCamera]:
        if stall.is_set() and not resumed.is_set():
            # A round held up on PostgreSQL for twice the lease TTL.
            stalled.set()
            await asyncio.sleep(2 * ttl_s)
            resumed.set()
        return await read_policies(database)

    monkeypatch.setattr(recorder_module, "cameras_to_record", slow_policies)
    with TestCamera(size=(160, 96), fps=10) as camera:
        await add_recorded_camera(database, "cam", camera.url)
        async with running_recorder(settings, database, storage, "rec-a") as recorder:
            renewers: list[str] = []
            renew = recorder.leases.renew

            async def renew_noting_who(camera_ids: Sequence[str]) -> set[str]:
                task = asyncio.current_task()
                renewers.append(task.get_name() if task else "")
                return await renew(camera_ids)

            monkeypatch.setattr(recorder.leases, "renew", renew_noting_who)

            async def held() -> bool:
                return recorder.held == {"cam"} and await redis.get(lease) == b"rec-a"

            await wait_for(held, 60, "the camera held")
            supervisor, fence = recorder.supervisors["cam"], await _fence(database, "cam")
            stall.set()
            await asyncio.wait_for(stalled.wait(), 30)
            holders: list[bytes | None] = []

            async def resumed_holding() -> bool:
                holders.append(await redis.get(lease))
                return resumed.is_set()

            await wait_for(resumed_holding, 6 * ttl_s, "the stalled round resumed")
            assert set(holders) == {b"rec-a"}
            assert recorder.supervisors["cam"] is supervisor  # never dropped and taken again
            assert await _fence(database, "cam") == fence
    assert renewers and set(renewers) == {recorder.lease_keeper_name}
    await redis.aclose()


@pytest.mark.timeout(180)
async def test_a_lease_taken_by_another_recorder_stops_the_camera_here(
    service_settings: Callable[..., Settings], database: Database, tmp_path: Path
) -> None:
    settings = service_settings(**FAST, recorder_buffer_dir=tmp_path / "buffer")
    storage = LocalStorage.from_settings(settings)
    redis = aioredis.Redis.from_url(settings.redis_url)
    lease = Keys(settings.redis_prefix).recorder_lease("cam")
    with TestCamera(size=(160, 96), fps=10) as camera:
        store = await add_recorded_camera(database, "cam", camera.url)
        async with running_recorder(settings, database, storage, "rec-a") as recorder:

            async def registered() -> bool:
                return len(await store.all_recordings("cam")) >= 1

            await wait_for(registered, 60, "a segment registered")
            supervisor = recorder.supervisors["cam"]
            # rec-a's lease lapsed (deleted here) and rec-b took the camera: lease and fence.
            await redis.set(lease, "rec-b", px=120_000)
            await fencing.take_over(database, "cam", "rec-b")
            before = len(await store.all_recordings("cam"))

            async def dropped() -> bool:
                # Out of the held set first, then its supervisor's stop ends the recording.
                task = supervisor.task
                return "cam" not in recorder.held and task is not None and task.done()

            await wait_for(dropped, 4 * settings.recorder_lease_ttl_s, "the lost camera dropped")
            # It records the camera no more: rec-b holds it, and rec-a released nothing.
            assert await redis.get(lease) == b"rec-b"
            assert recorder.held == set()
    found = await store.all_recordings("cam")
    assert len(found) == before and all(r.recorder_id == "rec-a" for r in found)
    holder = await database.fetchval("SELECT recorder_id FROM cameras WHERE id = 'cam'")
    assert holder == "rec-b"
    await redis.aclose()


@pytest.mark.timeout(240)
async def test_stopping_lets_every_camera_go_at_once_and_keeps_their_leases_meanwhile(
    service_settings: Callable[..., Settings],
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A recorder stopping while storage hangs: both cameras are let go side by side (not one
    after another, each waiting out its upload time), and the keeper renews their leases
    until they are released, so no other recorder can take one while it still uploads."""
    settings = service_settings(**FAST, recorder_buffer_dir=tmp_path / "buffer")
    ttl_s = settings.recorder_lease_ttl_s
    storage = LocalStorage.from_settings(settings)
    redis = aioredis.Redis.from_url(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    cameras = ("cam-1", "cam-2")
    # Uploads wait at the gate while it is shut; the release waits on them for up to this.
    monkeypatch.setattr(recorder_module, "RELEASE_UPLOAD_S", 120.0)
    gate = asyncio.Event()
    gate.set()
    waiting: set[str] = set()
    upload = storage.upload_file

    async def gated_upload(path: Path, key: str, *args: object, **kwargs: object) -> object:
        if not gate.is_set():
            waiting.add(next(c for c in cameras if c in key))
            await gate.wait()
        return await upload(path, key, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "upload_file", gated_upload)
    with TestCamera(size=(160, 96), fps=10) as camera:
        stores = [await add_recorded_camera(database, c, camera.url) for c in cameras]
        recorder = recorder_module.Recorder(settings, database, redis, storage, "rec-a")
        letting_go: set[str] = set()
        overlapped: list[bool] = []
        let_go = recorder._let_go

        async def let_go_noting(camera_id: str, reason: GapReason) -> None:
            letting_go.add(camera_id)
            overlapped.append(len(letting_go) == len(cameras))
            await let_go(camera_id, reason)

        monkeypatch.setattr(recorder, "_let_go", let_go_noting)
        renewals: list[int] = []
        renew = recorder.leases.renew

        async def renew_counting(camera_ids: Sequence[str]) -> set[str]:
            renewals.append(len(camera_ids))
            return await renew(camera_ids)

        monkeypatch.setattr(recorder.leases, "renew", renew_counting)
        stop = asyncio.Event()
        running = asyncio.create_task(recorder.run(stop))

        async def recording_both() -> bool:
            found = [await s.all_recordings(c) for s, c in zip(stores, cameras, strict=True)]
            return recorder.held == set(cameras) and all(found)

        await wait_for(recording_both, 90, "both cameras recorded")
        gate.clear()

        async def both_waiting() -> bool:
            return waiting == set(cameras)

        await wait_for(both_waiting, 60, "an upload of each camera waiting for storage")
        stop.set()

        async def both_letting_go() -> bool:
            return letting_go == set(cameras)

        await wait_for(both_letting_go, 60, "both cameras being let go")
        assert any(overlapped)
        # Twice the lease TTL into the release: renewed all along, still this recorder's.
        renewed_before = len(renewals)

        async def renewed_past_the_ttl() -> bool:
            return len(renewals) >= renewed_before + 6

        await wait_for(renewed_past_the_ttl, 20 * ttl_s, "renewals during the release")
        for camera_id in cameras:
            assert await redis.get(keys.recorder_lease(camera_id)) == b"rec-a"
        assert not running.done()
        gate.set()
        await asyncio.wait_for(running, 120)
    for camera_id in cameras:
        assert await redis.get(keys.recorder_lease(camera_id)) is None
    await redis.aclose()
