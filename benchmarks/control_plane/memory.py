"""The memory figures: Redis and PostgreSQL bytes per 100,000 finished exports."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from benchmarks.control_plane.api import run_concurrently
from benchmarks.control_plane.env import Env
from benchmarks.control_plane.results import Row
from benchmarks.control_plane.services import export_store


def redis_bytes(url: str, prefix: str) -> tuple[int, int]:
    """What the keys under `prefix` take in Redis (MEMORY USAGE, summed: unlike used_memory,
    not moved by other users of the same Redis): all of them, and those with no expiry."""
    client = redis.Redis.from_url(url)
    try:
        total = persistent = 0
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            size = int(client.memory_usage(key, samples=0) or 0)  # type: ignore[arg-type]
            total += size
            if client.ttl(key) == -1:
                persistent += size
        return total, persistent
    finally:
        client.close()


async def postgres_bytes(database_url: str) -> int:
    """The run database's tables with their indexes and TOAST (alembic's own excluded)."""
    import asyncpg

    from sparc_video.database.urls import asyncpg_dsn

    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute("VACUUM ANALYZE")  # so the free space map and stats are current
        return int(
            await connection.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm') "
                "AND c.relname <> 'alembic_version'"
            )
        )
    finally:
        await connection.close()


async def bench_memory(env: Env, exports: int, retention_s: int) -> list[Row]:
    """Memory per 100,000 finished exports: Redis (the live copies kept for their retention,
    and what has no expiry, i.e. would stay) and PostgreSQL (the rows: records, state changes,
    audit entries).

    The exports are written through ExportStore as the service writes them (created, RUNNING,
    SUCCEEDED) without a worker; the store keeps finished records `retention_s` seconds, as
    the service does with EVENT_RETENTION (a day by default, as here: none expires before it
    is counted)."""
    from sparc_video.core.ids import new_id
    from sparc_video.exports.models import ExportRecord, ExportState
    from sparc_video.exports.operations import ThumbnailOp

    redis_before = await asyncio.to_thread(redis_bytes, env.redis_url, env.prefix)
    pg_before = await postgres_bytes(env.database_url)
    scale = 100_000 / exports
    async with export_store(env.redis_url, env.prefix, env.database_url) as store:
        store._event_retention_s = retention_s

        def running(r: Any) -> str:
            r.state = ExportState.RUNNING
            r.attempt = 1
            return "state"

        def succeeded(r: Any) -> str:
            r.state = ExportState.SUCCEEDED
            r.progress.percent = 100.0
            return "state"

        async def one(i: int) -> None:
            record = ExportRecord(
                id=new_id(), source_key=env.source_key, operations=[ThumbnailOp()]
            )
            await store.create(record)
            await store.update(record.id, running)
            await store.update(record.id, succeeded)

        start = time.perf_counter()
        await run_concurrently(exports, 8, one)
        written_s = time.perf_counter() - start
    redis_after = await asyncio.to_thread(redis_bytes, env.redis_url, env.prefix)
    pg_after = await postgres_bytes(env.database_url)
    mib = 1024 * 1024
    retained = redis_after[0] - redis_before[0]
    persistent = redis_after[1] - redis_before[1]
    return [
        Row(
            "Redis, per 100,000 finished exports: keys with no expiry",
            [],
            f"{persistent * scale / mib:,.2f} MiB ({persistent:,} B for {exports:,} exports; "
            f"every other key expires after EVENT_RETENTION)",
            "no growth",
            persistent <= 0,
        ),
        Row(
            "Redis, per 100,000 finished exports: within their retention",
            [],
            f"{retained * scale / mib:,.1f} MiB ({retained / exports:,.0f} B/export; "
            f"record and event stream, expiring {retention_s:,} s after the end)",
            "(bounded by EVENT_RETENTION)",
        ),
        Row(
            "PostgreSQL, per 100,000 exports (tables, indexes, TOAST)",
            [],
            f"{(pg_after - pg_before) * scale / mib:,.1f} MiB "
            f"({(pg_after - pg_before) / exports:,.0f} B/export; "
            f"{exports / written_s:,.0f} exports/s written)",
            "(system of record)",
        ),
    ]
