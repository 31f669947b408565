"""Interactive exports start before batch work; batch work still starts in the end.

Workers run stand-in jobs (registered under the export job's name) so the order in which arq
starts them can be observed exactly; the API tests check that the priority travels from
CreateExport to the record and the queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from arq.connections import ArqRedis, create_pool
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.app import redis_settings
from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings
from sparc_video.exports.models import Priority
from sparc_video.exports.queue import ExportQueue
from tests.fixtures.service import RunningService, start_service
from tests.test_pickup import Jobs, export_id, register, running_worker

Export = export_pb2.Export


@pytest.fixture
async def pool(
    service_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Settings, ArqRedis]]:
    settings = service_settings()
    arq_pool = await create_pool(redis_settings(settings))
    try:
        yield settings, arq_pool
    finally:
        await arq_pool.aclose()


async def test_interactive_exports_start_before_queued_batch_work(
    pool: tuple[Settings, ArqRedis],
) -> None:
    settings, arq_pool = pool
    queue = ExportQueue(arq_pool, Keys(settings.redis_prefix))
    batch = [export_id(n) for n in range(5)]
    interactive = [export_id(100 + n) for n in range(2)]
    await register(arq_pool, settings, *batch, *interactive)
    for job in batch:
        await queue.enqueue(job, priority=Priority.BATCH)
    for job in interactive:
        await queue.enqueue(job, priority=Priority.INTERACTIVE)
    jobs = Jobs()
    async with running_worker(settings, jobs, max_jobs=1):
        await jobs.wait_started(batch[-1])
    # Interactive first, each class in the order it was queued.
    assert jobs.started == interactive + batch


async def test_an_interactive_export_takes_the_next_free_slot(
    pool: tuple[Settings, ArqRedis],
) -> None:
    settings, arq_pool = pool
    queue = ExportQueue(arq_pool, Keys(settings.redis_prefix))
    batch = [export_id(n) for n in range(6)]
    urgent = export_id(100)
    await register(arq_pool, settings, *batch, urgent)
    jobs = Jobs()
    for job in [*batch, urgent]:
        jobs.release[job] = asyncio.Event()
    async with running_worker(settings, jobs, max_jobs=2):
        for job in batch:
            await queue.enqueue(job, priority=Priority.BATCH)
        await jobs.wait_started(batch[0])
        await jobs.wait_started(batch[1])
        # Both slots are busy with batch work and four more batch exports wait.
        await queue.enqueue(urgent, priority=Priority.INTERACTIVE)
        jobs.release[batch[0]].set()
        await jobs.wait_started(urgent)
        # The two oldest batch exports took the two slots, in whichever order their tasks began
        # (the queue promises which jobs, not which of two simultaneous starts is first); the
        # first slot to free went to the interactive export, ahead of four older batch ones.
        assert set(jobs.started[:2]) == {batch[0], batch[1]}
        assert jobs.started[2] == urgent
        for event in jobs.release.values():
            event.set()
        await jobs.wait_started(batch[-1])


async def test_batch_work_that_waited_longer_than_the_head_start_goes_first(
    pool: tuple[Settings, ArqRedis],
) -> None:
    settings, arq_pool = pool
    # A short head start stands for the hour of production.
    queue = ExportQueue(arq_pool, Keys(settings.redis_prefix), head_start_s=0.3)
    old_batch, fresh_batch, interactive = export_id(1), export_id(2), export_id(3)
    await register(arq_pool, settings, old_batch, fresh_batch, interactive)
    await queue.enqueue(old_batch, priority=Priority.BATCH)
    await asyncio.sleep(0.6)
    await queue.enqueue(fresh_batch, priority=Priority.BATCH)
    await queue.enqueue(interactive, priority=Priority.INTERACTIVE)
    jobs = Jobs()
    async with running_worker(settings, jobs, max_jobs=1):
        await jobs.wait_started(fresh_batch)
    # The old batch export is not starved; the interactive one still beats fresh batch work.
    assert jobs.started == [old_batch, interactive, fresh_batch]


async def test_a_requeued_export_keeps_its_priority(pool: tuple[Settings, ArqRedis]) -> None:
    settings, arq_pool = pool
    keys = Keys(settings.redis_prefix)
    queue = ExportQueue(arq_pool, keys)
    batch, interactive = export_id(1), export_id(2)
    await register(arq_pool, settings, batch, interactive)
    now_ms = time.time() * 1000
    await queue.requeue(batch, priority=Priority.BATCH)
    await queue.requeue(interactive, priority=Priority.INTERACTIVE)
    batch_score = await arq_pool.zscore(keys.queue, batch)
    interactive_score = await arq_pool.zscore(keys.queue, interactive)
    assert batch_score is not None and interactive_score is not None
    assert batch_score >= now_ms - 1000
    assert interactive_score < batch_score - 3000 * 1000
    # A retry's backoff is honoured whatever the priority: no head start into the past.
    later = time.time() + 60
    await queue.remove(interactive)
    await queue.requeue(interactive, priority=Priority.INTERACTIVE, not_before=later)
    assert await arq_pool.zscore(keys.queue, interactive) == pytest.approx(later * 1000, abs=2)


@pytest.fixture
async def api(service_settings: Callable[..., Settings]) -> AsyncIterator[RunningService]:
    async with start_service(service_settings(), worker=False) as service:
        await service.app.storage.put_bytes("in/clip.mp4", b"not decoded here", "video/mp4")
        yield service


def request(priority: int) -> export_service_pb2.CreateExportRequest:
    return export_service_pb2.CreateExportRequest(
        export=Export(
            source=export_pb2.ExportSource(object_key="in/clip.mp4"),
            operations=[export_pb2.Operation(thumbnail=export_pb2.ThumbnailOptions())],
            priority=priority,  # type: ignore[arg-type]
        )
    )


async def test_priority_is_stored_returned_and_queued(api: RunningService) -> None:
    batch = await api.exports.CreateExport(request(Export.PRIORITY_BATCH))
    default = await api.exports.CreateExport(request(Export.PRIORITY_UNSPECIFIED))
    assert batch.priority == Export.PRIORITY_BATCH
    assert default.priority == Export.PRIORITY_INTERACTIVE
    fetched = await api.exports.GetExport(export_service_pb2.GetExportRequest(name=batch.name))
    assert fetched.priority == Export.PRIORITY_BATCH
    keys = Keys(api.settings.redis_prefix)
    batch_score = await api.app.redis.zscore(keys.queue, batch.name.split("/")[1])
    default_score = await api.app.redis.zscore(keys.queue, default.name.split("/")[1])
    assert batch_score is not None and default_score is not None
    assert default_score < batch_score


async def test_an_unknown_priority_is_invalid_argument(api: RunningService) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.exports.CreateExport(request(7))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "export.priority" in (info.value.details() or "")
