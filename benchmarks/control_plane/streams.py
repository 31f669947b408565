"""The stream figures (progress, watchers): WatchExport clients here, progress events published
from another process (playing the worker's part)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import grpc
import redis.asyncio as aioredis
from sparc.video.v1 import export_service_pb2, export_service_pb2_grpc

from benchmarks.control_plane.api import SEPARATE_CONNECTION, async_stub, seconds
from benchmarks.control_plane.env import Env
from benchmarks.control_plane.processes import rss_mb, tcp_connections_to
from benchmarks.control_plane.results import Row, pct
from benchmarks.control_plane.services import export_store


def publisher_main(
    redis_url: str,
    prefix: str,
    database_url: str,
    export_ids: list[str],
    rounds: int,
    interval_s: float,
) -> None:
    """Write `rounds` progress events to every export, then SUCCEEDED, as the job does."""
    asyncio.run(_publish(redis_url, prefix, database_url, export_ids, rounds, interval_s))


async def _publish(
    redis_url: str,
    prefix: str,
    database_url: str,
    export_ids: list[str],
    rounds: int,
    interval_s: float,
) -> None:
    from sparc_video.exports.event_log import EventKind
    from sparc_video.exports.models import ExportState, Progress

    async with export_store(redis_url, prefix, database_url) as store:
        next_at = time.monotonic()
        for n in range(rounds + 1):

            def change(record: Any, n: int = n) -> str:
                if n == rounds:
                    record.state = ExportState.SUCCEEDED
                    record.progress.percent = 100.0
                    return EventKind.STATE_CHANGED
                record.progress = Progress(
                    percent=100.0 * n / rounds,
                    current_operation="thumbnail",
                    operation_count=1,
                    fps=30.0,
                    speed=1.0,
                    eta_s=(rounds - n) * interval_s,
                )
                return EventKind.PROGRESS

            # One writer per export, as a worker publishing progress for the export it runs.
            await asyncio.gather(*(store.update(export_id, change) for export_id in export_ids))
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def create_records(redis_url: str, prefix: str, database_url: str, count: int) -> list[str]:
    """Exports that no worker will pick up (no job is queued): streams driven by the publisher."""
    from sparc_video.core.ids import new_id
    from sparc_video.exports.models import ExportRecord, ExportState
    from sparc_video.exports.operations import ThumbnailOp

    ids = []
    async with export_store(redis_url, prefix, database_url) as store:
        for _ in range(count):
            record = ExportRecord(
                id=new_id(), source_key="bench/none.mp4", operations=[ThumbnailOp()]
            )
            await store.create(record)

            def running(r: Any) -> str:
                r.state = ExportState.RUNNING
                r.attempt = 1
                return "state"

            await store.update(record.id, running)
            ids.append(record.id)
    return ids


def spawn_publisher(
    env: Env, export_ids: list[str], rounds: int, interval_s: float
) -> multiprocessing.process.BaseProcess:
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        target=publisher_main,
        args=(env.redis_url, env.prefix, env.database_url, export_ids, rounds, interval_s),
        daemon=True,
    )
    proc.start()
    return proc


async def bench_progress(env: Env, watchers: int, events: int, rate_hz: float) -> list[Row]:
    [export_id] = await create_records(env.redis_url, env.prefix, env.database_url, 1)
    name = f"exports/{export_id}"
    latencies: list[float] = []
    received: list[int] = []
    ready = 0
    all_ready = asyncio.Event()

    async def watcher(stub: export_service_pb2_grpc.ExportServiceAsyncStub) -> None:
        nonlocal ready
        count = 0
        async for message in stub.WatchExport(export_service_pb2.WatchExportRequest(name=name)):
            now = time.time()
            if message.kind == export_service_pb2.WatchExportResponse.EVENT_KIND_SNAPSHOT:
                ready += 1
                if ready == watchers:
                    all_ready.set()
                continue
            count += 1
            latencies.append((now - seconds(message.event_time)) * 1000)
        received.append(count)

    channels = [
        grpc.aio.insecure_channel(env.target, options=SEPARATE_CONNECTION)
        for _ in range(max(1, watchers // 100))
    ]
    try:
        stubs = [async_stub(c) for c in channels]
        tasks = [asyncio.create_task(watcher(stubs[i % len(stubs)])) for i in range(watchers)]
        await asyncio.wait_for(all_ready.wait(), 60)
        publisher = spawn_publisher(env, [export_id], events, 1 / rate_hz)
        await asyncio.wait_for(asyncio.gather(*tasks), events / rate_hz + 60)
        publisher.join(10)
    finally:
        for channel in channels:
            await channel.close()
    expected = events + 1
    complete = sum(1 for c in received if c == expected)
    return [
        Row(
            f"progress: event written → {watchers} watchers received",
            latencies,
            f"{events} events at {rate_hz:g}/s; {complete}/{watchers} got all {expected}",
            "p50 ≤ 5, p99 ≤ 50",
            pct(latencies, 0.5) <= 5 and pct(latencies, 0.99) <= 50,
        )
    ]


async def bench_watchers(
    env: Env, exports: int, per_export: int, rounds: int, interval_s: float
) -> list[Row]:
    assert env.server is not None
    pid = env.server.pid
    ids = await create_records(env.redis_url, env.prefix, env.database_url, exports)
    hub_name = f"{env.prefix}:event-hub"
    admin = aioredis.Redis.from_url(env.redis_url)

    async def hub_connections() -> int:
        return sum(1 for c in await admin.client_list() if c.get("name") == hub_name)

    total = exports * per_export
    received: dict[int, list[str]] = {}
    ready = 0
    milestones = {exports: asyncio.Event(), total: asyncio.Event()}
    release: dict[int, asyncio.Event] = {}

    async def watcher(n: int, stub: export_service_pb2_grpc.ExportServiceAsyncStub) -> None:
        nonlocal ready
        ids_seen: list[str] = []
        request = export_service_pb2.WatchExportRequest(name=f"exports/{ids[n % exports]}")
        async for message in stub.WatchExport(request):
            if message.kind == export_service_pb2.WatchExportResponse.EVENT_KIND_SNAPSHOT:
                ready += 1
                if ready in milestones:
                    milestones[ready].set()
                continue
            ids_seen.append(message.event_id)
        received[n] = ids_seen

    rss_before = rss_mb(pid)
    conns_before = tcp_connections_to(pid, env.redis_port)
    hub_before = await hub_connections()
    channels = [
        grpc.aio.insecure_channel(env.target, options=SEPARATE_CONNECTION)
        for _ in range(max(1, total // 100))
    ]
    stubs = [async_stub(c) for c in channels]
    peak_rss = rss_before
    sampling = True

    async def sample_rss() -> None:
        nonlocal peak_rss
        while sampling:
            peak_rss = max(peak_rss, rss_mb(pid))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample_rss())
    try:
        # One stream per export first (the hub's stream count grows to all exports), then the rest.
        tasks = [asyncio.create_task(watcher(n, stubs[n % len(stubs)])) for n in range(exports)]
        await asyncio.wait_for(milestones[exports].wait(), 60)
        conns_few = tcp_connections_to(pid, env.redis_port)
        hub_few = await hub_connections()
        for n in range(exports, total):
            tasks.append(asyncio.create_task(watcher(n, stubs[n % len(stubs)])))
            if n % 100 == 0:
                await asyncio.sleep(0)
        try:
            await asyncio.wait_for(milestones[total].wait(), 120)
        except TimeoutError:
            errors = {repr(t.exception())[:200] for t in tasks if t.done() and t.exception()}
            raise RuntimeError(f"only {ready}/{total} streams opened; errors: {errors}") from None
        conns_all = tcp_connections_to(pid, env.redis_port)
        hub_all = await hub_connections()
        rss_all = rss_mb(pid)
        started = time.monotonic()
        publisher = spawn_publisher(env, ids, rounds, interval_s)
        await asyncio.wait_for(asyncio.gather(*tasks), rounds * interval_s + 120)
        elapsed = time.monotonic() - started
        publisher.join(10)
        conns_after = tcp_connections_to(pid, env.redis_port)
    finally:
        sampling = False
        await sampler
        for channel in channels:
            await channel.close()
    # What each stream should have seen: everything after the snapshot, i.e. the published events.
    expected: dict[str, list[str]] = {}
    for export_id in ids:
        entries = await admin.xrange(f"{env.prefix}:export:{export_id}:events")
        expected[export_id] = [e[0].decode() for e in entries][-(rounds + 1) :]
    await admin.aclose()
    del release
    in_order = sum(1 for n, seen in received.items() if seen == expected[ids[n % exports]])
    ordered_subset = sum(
        1 for seen in received.values() if seen == sorted(seen, key=_event_key) and seen
    )
    events = exports * (rounds + 1)
    return [
        Row(
            f"watchers: {total:,} streams / {exports} exports, server RSS",
            [],
            f"{rss_before:.0f} → {rss_all:.0f} MB idle, peak {peak_rss:.0f} MB while "
            f"delivering {events * per_export:,} messages in {elapsed:.1f} s",
            "≤ 300 MB",
            peak_rss <= 300,
        ),
        Row(
            "watchers: server's Redis connections",
            [],
            f"hub {hub_before}/{hub_few}/{hub_all} at 0/{exports}/{total:,} streams; "
            f"process {conns_before}/{conns_few}/{conns_all} (after: {conns_after})",
            "progress: independent of streams",
            # The hub opens its control connections on first use: compare with streams open.
            hub_few == hub_all <= 3,
        ),
        Row(
            "watchers: every stream got every event in order",
            [],
            f"{in_order:,}/{total:,} streams complete and in order ({ordered_subset:,} in order)",
            f"{total:,}/{total:,}",
            in_order == total,
        ),
    ]


def _event_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)
