"""The figures that need a worker: pickup latency, queue overhead per export, priority."""

from __future__ import annotations

import asyncio
import heapq
import random
import statistics
import time

from benchmarks.control_plane.api import (
    State,
    channel_stub,
    create_many,
    fetch_all,
    seconds,
    thumbnail_request,
    wait_all_done,
    watch_to_end,
)
from benchmarks.control_plane.env import Env
from benchmarks.control_plane.results import Row, pct


async def bench_pickup(env: Env, samples: int) -> list[Row]:
    env.start_worker(2)
    from_return: list[float] = []
    from_enqueue: list[float] = []
    failed = 0
    async with channel_stub(env.target) as stub:
        for i in range(samples + 3):
            created = await stub.CreateExport(thumbnail_request(env.source_key))
            returned = time.time()
            messages = await watch_to_end(stub, created.name)
            final = messages[-1].export
            failed += final.state != State.STATE_SUCCEEDED
            if i >= 3:  # the first ones warm up the worker's forkserver and connections
                started = seconds(final.start_time)
                from_return.append((started - returned) * 1000)
                from_enqueue.append((started - seconds(final.create_time)) * 1000)
            # Random gaps, so arrivals fall anywhere in a poll cycle.
            await asyncio.sleep(random.uniform(0.05, 0.25))
    env.stop_worker()
    return [
        Row(
            "pickup: CreateExport returned → job started",
            from_return,
            f"n={len(from_return)}, {failed} failed",
            "p50 ≤ 20, p99 ≤ 100",
            pct(from_return, 0.5) <= 20 and pct(from_return, 0.99) <= 100 and not failed,
            "negative when the worker starts before the reply reaches the client",
        ),
        Row(
            "pickup: record created → job started",
            from_enqueue,
            f"n={len(from_enqueue)}",
            "(context)",
        ),
    ]


async def bench_queue_overhead(env: Env, jobs: int, slots: int) -> list[Row]:
    env.start_worker(slots)
    async with channel_stub(env.target) as stub:
        warm = await create_many(stub, env.source_key, slots * 2)
        await wait_all_done(stub, 120)
        started = time.monotonic()
        names = await create_many(stub, env.source_key, jobs)
        await wait_all_done(stub, 60 + jobs * 2.0)
        wall = time.monotonic() - started
        exports = await fetch_all(stub, names)
    env.stop_worker()
    del warm
    failed = sum(e.state != State.STATE_SUCCEEDED for e in exports)
    done = [e for e in exports if e.state == State.STATE_SUCCEEDED]
    # Rebuild the slots: in start order, each export takes the slot that came free first. A
    # slot comes free with the export's terminal write (its update_time), which follows its
    # end_time by the signing and upload of its manifest (part of producing the export).
    free: list[float] = []
    gaps = []
    processing = []
    finishing = []
    for export in sorted(done, key=lambda e: seconds(e.start_time)):
        start, end, written, created = (
            seconds(export.start_time),
            seconds(export.end_time),
            seconds(export.update_time),
            seconds(export.create_time),
        )
        processing.append(end - start)
        finishing.append(written - end)
        ready_at = created
        if len(free) >= slots:
            ready_at = max(created, heapq.heappop(free))
        gaps.append(max(0.0, start - ready_at) * 1000)
        heapq.heappush(free, written)
    mean_processing = statistics.mean(processing) * 1000 if processing else float("nan")
    mean_finishing = statistics.mean(finishing) * 1000 if finishing else float("nan")
    per_job_wall = wall * slots / max(1, len(done)) * 1000
    return [
        Row(
            f"queue overhead: {jobs:,} tiny exports, {slots} slots",
            gaps,
            f"{len(done) / wall:.1f} exports/s; processing {mean_processing:.0f} ms mean, "
            f"then manifest and terminal write {mean_finishing:.0f} ms; slot time per export "
            f"{per_job_wall:.0f} ms; {failed} failed",
            "p50 ≤ 10",
            pct(gaps, 0.5) <= 10 and not failed,
            "per export: its slot's idle time between the previous export's terminal write "
            "and its start (both written by the jobs to their records)",
        )
    ]


async def bench_priority(env: Env, batch: int, slots: int) -> list[Row]:
    env.start_worker(slots)
    async with channel_stub(env.target) as stub:
        batch_names = await create_many(stub, env.source_key, batch, State.PRIORITY_BATCH, 4)
        # Let the batch work fill the slots, then ask for one interactive export.
        await asyncio.sleep(1.0)
        created = await stub.CreateExport(
            thumbnail_request(env.source_key, State.PRIORITY_INTERACTIVE)
        )
        messages = await watch_to_end(stub, created.name)
        interactive = messages[-1].export
        await wait_all_done(stub, 60 + batch * 2.0)
        batch_exports = await fetch_all(stub, batch_names)
    env.stop_worker()
    created_at = seconds(interactive.create_time)
    started_at = seconds(interactive.start_time)
    ahead = sum(1 for e in batch_exports if created_at < seconds(e.start_time) < started_at)
    # The longest a slot can take to come free: the longest batch export.
    turnover = max(seconds(e.end_time) - seconds(e.start_time) for e in batch_exports) * 1000
    waited = (started_at - created_at) * 1000
    queued_behind = sum(1 for e in batch_exports if seconds(e.start_time) > started_at)
    return [
        Row(
            f"priority: interactive behind {batch} batch exports, {slots} slots",
            [waited],
            f"waited {waited:.0f} ms; {ahead} batch started before it, {queued_behind} after; "
            f"slot turnover ≤ {turnover:.0f} ms",
            "starts within one slot turnover",
            ahead == 0 and waited <= turnover + 50,
        )
    ]
