"""Leases, membership and balancing of several recorders in a real Redis: one holder per camera,
fair shares as recorders come and go, a lapsed member forgotten; and the status board a future
WatchCamera reads."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from sparc_video.core.keys import Keys
from sparc_video.recording.leases import RecorderLeases, share
from sparc_video.recording.status import (
    RecordingState,
    RecordingStatus,
    StatusBoard,
    read_status,
    watch_status,
)
from tests.recorder_helpers import wait_for

CAMERAS = [f"cam-{n:02d}" for n in range(10)]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def balance_round(recorder: RecorderLeases, held: set[str]) -> None:
    """What a recorder's lease keeper and round do with leases (recorder.py), without
    recording: renew, drop the lost, take up to the share."""
    live = await recorder.heartbeat()
    held &= await recorder.renew(sorted(held))
    holders = await recorder.holders(sorted(set(CAMERAS) - held))
    free = [c for c, h in holders.items() if h is None]
    plan = share(CAMERAS, held, free, len(live), seed=recorder.recorder_id)
    for camera_id in plan.release:
        await recorder.release(camera_id)
        held.discard(camera_id)
    for camera_id in plan.take:
        if await recorder.acquire(camera_id):
            held.add(camera_id)


async def test_recorders_share_the_cameras_fairly_and_never_twice(
    redis: aioredis.Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    recorders = [RecorderLeases(redis, keys, f"rec-{n}", ttl_s=2.0) for n in range(3)]
    held: dict[str, set[str]] = {r.recorder_id: set() for r in recorders}

    async def rounds(active: list[RecorderLeases]) -> None:
        await asyncio.gather(*(balance_round(r, held[r.recorder_id]) for r in active))

    async def fair(active: list[RecorderLeases]) -> bool:
        await rounds(active)
        counts = [len(held[r.recorder_id]) for r in active]
        owners = await active[0].holders(CAMERAS)
        for r in active:  # what each believes it holds, Redis says it holds
            assert all(owners[c] == r.recorder_id for c in held[r.recorder_id])
        target = math.ceil(len(CAMERAS) / len(active))
        return sum(counts) == len(CAMERAS) and max(counts) <= target

    await wait_for(lambda: fair(recorders), 30, "three recorders share ten cameras")
    # One stops renewing (dies): after its TTL the two others share everything.
    dead, *alive = recorders
    await wait_for(lambda: fair(alive), 30, "two recorders share after a death")
    assert set(await dead.renew(sorted(held[dead.recorder_id]))) == set()
    assert sorted(await alive[0].heartbeat()) == [r.recorder_id for r in alive]
    # A new one joins: the others release extras until it has its share.
    held[dead.recorder_id] = set()
    await wait_for(lambda: fair(recorders), 30, "three again after a join")


def test_share_releases_unwanted_and_extras_and_takes_up_to_the_target() -> None:
    plan = share(["a", "b", "c", "d"], {"a", "b", "c", "x"}, ["d"], live_recorders=2)
    assert plan.target == 2 and set(plan.release) == {"x", "c"} and plan.take == ()
    plan = share(["a", "b", "c"], set(), ["a", "b", "c"], live_recorders=2, seed="r")
    assert plan.target == 2 and len(plan.take) == 2 and plan.release == ()


async def test_status_is_read_and_watched(redis: aioredis.Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    board = StatusBoard(redis, keys, ttl_s=30)
    assert await read_status(redis, keys, "cam") is None
    seen: list[RecordingState] = []

    async def watch() -> None:
        async for _, status in watch_status(redis, keys, "cam", after_id="0", block_ms=200):
            seen.append(status.state)
            if status.state is RecordingState.OFF:
                return

    watcher = asyncio.create_task(watch())
    for state in (RecordingState.CONNECTING, RecordingState.RECORDING):
        await board.write(RecordingStatus("cam", state, "rec", last_packet_ns=1))
    await board.write(RecordingStatus("cam", RecordingState.FAILING, "rec", "gone", "stream_ended"))
    await board.write(RecordingStatus("cam", RecordingState.OFF))
    await asyncio.wait_for(watcher, 10)
    assert seen == [
        RecordingState.CONNECTING,
        RecordingState.RECORDING,
        RecordingState.FAILING,
        RecordingState.OFF,
    ]
    now = await read_status(redis, keys, "cam")
    assert now is not None and now.state is RecordingState.OFF
