"""Recording catalogue benchmark: one camera with millions of recordings in PostgreSQL.

    .venv/bin/python -m benchmarks.recordings [--recordings 10000000] [--queries 2000]
                                              [--register-s 10] [--writers 16] [--keep]

Creates a fresh database on the PostgreSQL at DATABASE_URL or 127.0.0.1:5432 (else starts an
embedded one in a temporary directory), migrates it, and bulk-loads one camera's recordings
with COPY: contiguous one-minute segments, as a recorder writes them. Then, through the real
`CameraStore` (`sparc_video.cameras.records`), it measures (targets from issue 15):

- overlap: "recordings overlapping a one-hour range" (`page_recordings`) at random places in
  the catalogue, p50/p95/p99 (target p99 <= 5 ms); reference: `SELECT 1` on the same pool, the
  floor any query pays.
- registration: recordings per second through `create_recording` (row, camera bound, audit
  entry in one transaction) from `--writers` concurrent tasks (target >= 2,000/s); reference:
  bare single-row INSERTs into `recordings` with the same concurrency.
- Redis per 100,000 recordings: the store holds no Redis client, so 0; reference: what the
  previous layout (record, index entry and object claim per recording) took, written into a
  Redis of its own and measured with INFO memory.

Ratios are printed against the references measured in the same run. 10 million rows take
minutes to load on 2 cores (the loaded count is printed); pass a smaller --recordings first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from sparc_video.cameras.records import CameraRecord, CameraStore, RecordingRecord, TimeRange
from sparc_video.core.embedded_redis import EmbeddedRedis
from sparc_video.database.embedded import EmbeddedPostgres, answers
from sparc_video.database.migrations import migrate
from sparc_video.database.pool import open_database
from sparc_video.database.urls import asyncpg_dsn, with_database
from sparc_video.exports.holds import RecordingHolds
from sparc_video.media.probe import StreamInfo

LOCAL_SERVER_URL = "postgresql://root@127.0.0.1:5432/postgres"
CAMERA = "bench-cam"
SEGMENT_NS = 60 * 10**9
HOUR_NS = 3600 * 10**9
T0_NS = 1_764_547_200 * 10**9  # 2025-12-01T00:00:00Z
STREAM = StreamInfo(
    format="mp4", video_codec="h264", width=1920, height=1080, fps=25.0, audio_codec="aac"
)
COPY_CHUNK = 50_000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def recording(index: int, start_ns: int) -> RecordingRecord:
    return RecordingRecord(
        id=f"rec-{index:09d}",
        camera_id=CAMERA,
        object_key=f"nvr/{CAMERA}/{index:09d}.mp4",
        start_ns=start_ns,
        duration_ns=SEGMENT_NS,
        stream=STREAM,
        frame_count=1500,
        size_bytes=30_000_000,
        sha256=f"{index:064x}",
        create_time=time.time(),
    )


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL") or LOCAL_SERVER_URL
    if answers(url):
        yield url
        return
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedPostgres(Path(folder) / "data")
        try:
            yield server.start()
        finally:
            server.stop()


async def admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def bulk_load(url: str, count: int) -> float:
    """COPY `count` contiguous one-minute recordings of the camera; seconds taken."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    started = time.perf_counter()
    try:
        # The row as text, formatted from one record's JSON: json.dumps per row would make
        # this process, not PostgreSQL, the bottleneck of the load.
        sample = recording(0, 123456789)
        line = "\t".join(
            ["%(id)s", CAMERA, "%(start)d", "%(end)d", "%(key)s", "%(sha)s", sample.to_json()]
        )
        line = (
            line.replace(f'"{sample.id}"', '"%(id)s"')
            .replace(f'"{sample.object_key}"', '"%(key)s"')
            .replace(f'"{sample.sha256}"', '"%(sha)s"')
            .replace(":123456789,", ":%(start)d,")
            + "\n"
        )

        async def rows() -> AsyncIterator[bytes]:
            for first in range(0, count, COPY_CHUNK):
                chunk = "".join(
                    line
                    % {
                        "id": f"rec-{i:09d}",
                        "key": f"nvr/{CAMERA}/{i:09d}.mp4",
                        "sha": f"{i:064x}",
                        "start": T0_NS + i * SEGMENT_NS,
                        "end": T0_NS + (i + 1) * SEGMENT_NS,
                    }
                    for i in range(first, min(first + COPY_CHUNK, count))
                )
                yield chunk.encode()
                done = min(first + COPY_CHUNK, count)
                if done % 1_000_000 < COPY_CHUNK:
                    print(f"  loaded {done:,} ({time.perf_counter() - started:.0f} s)", flush=True)

        await connection.copy_to_table(
            "recordings",
            source=rows(),
            columns=["id", "camera_id", "start_ns", "end_ns", "storage_key", "sha256", "record"],
        )
        await connection.execute(
            "UPDATE cameras SET longest_recording_ns = $2 WHERE id = $1", CAMERA, SEGMENT_NS
        )
        await connection.execute("VACUUM ANALYZE recordings")
        await connection.execute("VACUUM ANALYZE cameras")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def timed(samples: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    latencies = []
    for _ in range(samples):
        start = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


async def rate(seconds: float, writers: int, write: Callable[[int], Awaitable[object]]) -> float:
    """Writes per second from `writers` tasks for `seconds`."""
    counter = iter(range(10**12))
    done = 0
    deadline = time.perf_counter() + seconds

    async def writer() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await write(next(counter))
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return done / (time.perf_counter() - start)


async def old_redis_bytes_per_100k(folder: Path) -> int:
    """What the previous Redis layout took for 100,000 recordings: record JSON, index entry
    (START:END:ID, zero-padded) and object claim each."""
    server = EmbeddedRedis(folder / "redis", save="")
    server.start()
    client = aioredis.Redis.from_url(server.url)
    try:
        before = int((await client.info("memory"))["used_memory"])
        for first in range(0, 100_000, 1000):
            async with client.pipeline(transaction=False) as pipe:
                for i in range(first, first + 1000):
                    r = recording(i, T0_NS + i * SEGMENT_NS)
                    pipe.set(f"bench:recording:{r.id}", r.to_json())
                    pipe.set(f"bench:recording-object:{r.object_key}", r.id)
                    pipe.zadd(
                        f"bench:camera:{CAMERA}:recordings",
                        {f"{r.start_ns:020d}:{r.end_ns:020d}:{r.id}": 0},
                    )
                await pipe.execute()
        return int((await client.info("memory"))["used_memory"]) - before
    finally:
        await client.aclose()
        server.stop()


async def run(args: argparse.Namespace, url: str) -> None:
    print(f"database {url.rsplit('/', 1)[1]}: migrating, loading {args.recordings:,} recordings")
    await migrate(url)
    async with open_database(url, max_size=args.writers) as database:
        store = CameraStore(database, RecordingHolds(database))
        await store.create_camera(CameraRecord(id=CAMERA, stream_url="rtsp://cam/"), "bench")
        load_s = await bulk_load(url, args.recordings)
        print(f"  loaded {args.recordings:,} in {load_s:.0f} s ({args.recordings / load_s:,.0f}/s)")
        # The formatted rows decode to the records they stand for.
        last = args.recordings - 1
        stored = await store.get_recording(f"rec-{last:09d}")
        expected = recording(last, T0_NS + last * SEGMENT_NS)
        assert (stored.object_key, stored.start_ns, stored.end_ns, stored.sha256) == (
            expected.object_key,
            expected.start_ns,
            expected.end_ns,
            expected.sha256,
        ), stored
        size = await database.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('recordings'))"
        )

        span_ns = args.recordings * SEGMENT_NS
        rng = random.Random(15)

        async def overlap() -> None:
            start = T0_NS + rng.randrange(max(1, span_ns - HOUR_NS))
            records, _ = await store.page_recordings(
                CAMERA, window=TimeRange(start, start + HOUR_NS), page_size=1000, page_token=""
            )
            assert 60 <= len(records) <= 61 or args.recordings < 61, len(records)

        await timed(100, overlap)  # warm the pool, the plan cache and the index's upper pages
        query = await timed(args.queries, overlap)
        floor = await timed(args.queries, lambda: database.fetchval("SELECT 1"))
        probe = T0_NS + span_ns // 2
        plan = await database.fetchval(
            "EXPLAIN (FORMAT JSON, ANALYZE, BUFFERS) SELECT record FROM recordings "
            "WHERE camera_id = $1 AND start_ns < $3 AND end_ns > $2 AND start_ns >= $2 - "
            "(SELECT longest_recording_ns FROM cameras WHERE id = $1) ORDER BY start_ns, id",
            CAMERA,
            probe,
            probe + HOUR_NS,
        )
        top = json.loads(plan)[0]["Plan"]
        scan = top
        while "Plans" in scan and "Index" not in scan.get("Node Type", ""):
            scan = scan["Plans"][-1]

        created = iter(range(args.recordings, 10**12))

        async def register(_: int) -> None:
            i = next(created)
            await store.create_recording(recording(i, T0_NS + i * SEGMENT_NS), "bench")

        async def bare_insert(_: int) -> None:
            i = next(created)
            r = recording(i, T0_NS + i * SEGMENT_NS)
            await database.execute(
                "INSERT INTO recordings (id, camera_id, start_ns, end_ns, storage_key, sha256, "
                "record) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
                r.id,
                CAMERA,
                r.start_ns,
                r.end_ns,
                r.object_key,
                r.sha256,
                r.to_json(),
            )

        registered = await rate(args.register_s, args.writers, register)
        inserted = await rate(args.register_s, args.writers, bare_insert)
        with tempfile.TemporaryDirectory() as folder:
            old_bytes = await old_redis_bytes_per_100k(Path(folder))

    p50, p95, p99 = (pct(query, q) for q in (0.5, 0.95, 0.99))
    f50, f99 = pct(floor, 0.5), pct(floor, 0.99)
    print()
    print(f"recordings loaded: {args.recordings:,} (one camera; table + indexes {size})")
    print(
        f"overlap, one hour ({args.queries} queries): p50 {p50:.2f} ms, p95 {p95:.2f} ms, "
        f"p99 {p99:.2f} ms (target p99 <= 5 ms: {'met' if p99 <= 5 else 'NOT met'}); "
        f"SELECT 1 p50 {f50:.2f} ms, p99 {f99:.2f} ms: x{p50 / f50:.1f} / x{p99 / f99:.1f}"
    )
    print(
        f"  plan: {scan.get('Node Type')} on {scan.get('Index Name', '?')}, "
        f"{scan.get('Actual Rows')} rows, {top.get('Shared Hit Blocks', 0)} buffer hits, "
        f"{top.get('Shared Read Blocks', 0)} reads"
    )
    print(
        f"registration ({args.writers} writers, {args.register_s:g} s): {registered:,.0f}/s "
        f"(target >= 2,000/s: {'met' if registered >= 2000 else 'NOT met'}); bare INSERT "
        f"{inserted:,.0f}/s: x{registered / inserted:.2f}"
    )
    print(
        f"Redis per 100,000 recordings: 0 B (the store has no Redis client); the previous "
        f"layout took {old_bytes / 2**20:.1f} MiB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--register-s", type=float, default=10.0)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    with server_url() as server:
        name = f"sparc_video_bench_{uuid.uuid4().hex[:12]}"
        asyncio.run(admin(server, f'CREATE DATABASE "{name}"'))
        try:
            asyncio.run(run(args, with_database(server, name)))
        finally:
            if not args.keep:
                asyncio.run(admin(server, f'DROP DATABASE "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
