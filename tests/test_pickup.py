"""The worker starts queued jobs when told, not when its poll timer says.

Each worker here has a 30 s fallback poll, so a job that starts within a few seconds was started
by a wake-up: the enqueue's pub/sub message, a slot coming free, or a deferred job's due time.
The jobs are stand-ins registered under the export job's name, so the queue and the worker are
exercised exactly as in production without media work. Latency figures are for
`python -m benchmarks.control_plane`; these tests only check the behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from arq.connections import ArqRedis, create_pool
from arq.constants import in_progress_key_prefix
from arq.worker import func

from sparc_video.app import redis_settings
from sparc_video.core.keys import RUN_EXPORT_JOB, Keys
from sparc_video.core.settings import Settings
from sparc_video.exports.queue import ExportQueue
from workers.job.runner import ResilientWorker

NO_POLLING_S = 30.0
# Far below NO_POLLING_S, far above any scheduling hiccup of a loaded test machine.
PROMPTLY_S = 5.0


class Jobs:
    """Records job starts; a job runs until its `release` event is set (or at once)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.start_times: dict[str, float] = {}
        self.release: dict[str, asyncio.Event] = {}
        self.changed = asyncio.Event()

    async def run(self, ctx: dict[str, Any], export_id: str) -> None:
        self.started.append(export_id)
        self.start_times[export_id] = time.monotonic()
        self.changed.set()
        if export_id in self.release:
            await self.release[export_id].wait()

    async def wait_started(self, export_id: str, within_s: float = PROMPTLY_S) -> float:
        async with asyncio.timeout(within_s):
            while export_id not in self.start_times:
                self.changed.clear()
                await self.changed.wait()
        return self.start_times[export_id]


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, jobs: Jobs, **options: Any
) -> AsyncIterator[ResilientWorker]:
    keys = Keys(settings.redis_prefix)
    worker = ResilientWorker(
        functions=[func(jobs.run, name=RUN_EXPORT_JOB)],
        queue_name=keys.queue,
        redis_settings=redis_settings(settings),
        handle_signals=False,
        keep_result=0,
        **{
            "poll_delay": 0.1,
            "wakeup_channel": keys.queue_wakeup,
            "fallback_poll_s": NO_POLLING_S,
            **options,
        },
    )
    task = asyncio.create_task(worker.main())
    try:
        # Let it take its first look at the (empty) queue and settle into waiting.
        await asyncio.sleep(0.3)
        yield worker
    finally:
        for event in jobs.release.values():
            event.set()
        # arq's close() cancels running jobs and re-raises their CancelledError: let them end.
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


@pytest.fixture
async def queue(
    service_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Settings, ExportQueue, ArqRedis]]:
    settings = service_settings()
    pool = await create_pool(redis_settings(settings))
    try:
        yield settings, ExportQueue(pool, Keys(settings.redis_prefix)), pool
    finally:
        await pool.aclose()


def export_id(n: int) -> str:
    # Shaped like real ids so the test fixture's clean-up finds their arq keys.
    return f"{int(time.time() * 1000):012x}{n:08x}"


async def register(pool: ArqRedis, settings: Settings, *ids: str) -> None:
    """Index the ids like exports, so the redis_prefix fixture deletes their arq keys after."""
    await pool.zadd(Keys(settings.redis_prefix).all_exports, dict.fromkeys(ids, 0))


async def test_enqueue_wakes_an_idle_worker(
    queue: tuple[Settings, ExportQueue, ArqRedis],
) -> None:
    settings, export_queue, pool = queue
    jobs = Jobs()
    async with running_worker(settings, jobs) as worker:
        for n in range(3):
            job = export_id(n)
            await register(pool, settings, job)
            enqueued = time.monotonic()
            assert await export_queue.enqueue(job)
            started = await jobs.wait_started(job)
            assert started - enqueued < PROMPTLY_S
        assert worker.woken_polls >= 3


async def test_a_freed_slot_takes_the_next_job_without_waiting_for_a_poll(
    queue: tuple[Settings, ExportQueue, ArqRedis],
) -> None:
    settings, export_queue, pool = queue
    jobs = Jobs()
    first, second = export_id(1), export_id(2)
    await register(pool, settings, first, second)
    jobs.release[first] = asyncio.Event()
    async with running_worker(settings, jobs, max_jobs=1):
        await export_queue.enqueue(first)
        await jobs.wait_started(first)
        await export_queue.enqueue(second)
        # The wake-up for `second` arrived while the only slot was busy: nothing starts.
        await asyncio.sleep(0.3)
        assert jobs.started == [first]
        jobs.release[first].set()
        await jobs.wait_started(second)
    assert jobs.started == [first, second]


async def test_a_deferred_job_starts_when_due(
    queue: tuple[Settings, ExportQueue, ArqRedis],
) -> None:
    settings, export_queue, pool = queue
    jobs = Jobs()
    job = export_id(1)
    await register(pool, settings, job)
    async with running_worker(settings, jobs):
        enqueued = time.monotonic()
        await export_queue.enqueue(job, defer_s=0.5)
        started = await jobs.wait_started(job)
    assert 0.45 <= started - enqueued < PROMPTLY_S


async def test_without_a_wakeup_the_fallback_poll_still_finds_the_job(
    queue: tuple[Settings, ExportQueue, ArqRedis],
) -> None:
    settings, _, pool = queue
    jobs = Jobs()
    job = export_id(1)
    await register(pool, settings, job)
    async with running_worker(settings, jobs, fallback_poll_s=0.2):
        # A job queued by plain arq (or whose wake-up was lost) publishes nothing.
        await pool.enqueue_job(
            RUN_EXPORT_JOB, job, _job_id=job, _queue_name=Keys(settings.redis_prefix).queue
        )
        await jobs.wait_started(job)


async def test_wakeups_resume_after_the_subscription_is_dropped(
    queue: tuple[Settings, ExportQueue, ArqRedis],
) -> None:
    settings, export_queue, pool = queue
    jobs = Jobs()
    async with running_worker(settings, jobs) as worker:
        subscription = worker.wakeup_subscription
        assert subscription is not None and subscription.connection is not None
        # As a Redis restart or a network blip would.
        await subscription.connection.disconnect()
        async with asyncio.timeout(PROMPTLY_S):
            while worker.wakeup_subscription in (None, subscription):
                await asyncio.sleep(0.05)
        job = export_id(1)
        await register(pool, settings, job)
        await export_queue.enqueue(job)
        await jobs.wait_started(job)


async def test_a_job_in_progress_elsewhere_is_not_started_again(
    queue: tuple[Settings, ExportQueue, ArqRedis],
) -> None:
    settings, export_queue, pool = queue
    jobs = Jobs()
    job = export_id(1)
    await register(pool, settings, job)
    # Another worker's claim on it (arq's in-progress key) until that worker lets go.
    await pool.set(in_progress_key_prefix + job, b"1", px=60_000)
    async with running_worker(settings, jobs, fallback_poll_s=0.2) as worker:
        await export_queue.enqueue(job)
        await asyncio.sleep(0.8)
        assert jobs.started == []
        assert worker.job_counter == 0
        await pool.delete(in_progress_key_prefix + job)
        await jobs.wait_started(job)
    assert jobs.started == [job]


async def test_two_workers_start_each_job_once(
    queue: tuple[Settings, ExportQueue, ArqRedis],
) -> None:
    settings, export_queue, pool = queue
    jobs = Jobs()
    ids = [export_id(n) for n in range(20)]
    await register(pool, settings, *ids)
    async with (
        running_worker(settings, jobs, max_jobs=2),
        running_worker(settings, jobs, max_jobs=2),
    ):
        await asyncio.gather(*(export_queue.enqueue(job) for job in ids))
        for job in ids:
            await jobs.wait_started(job)
        await asyncio.sleep(0.3)
    assert sorted(jobs.started) == sorted(ids)
