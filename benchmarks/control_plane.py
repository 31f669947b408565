"""Control-plane benchmark: how much the queue, the streams and the API add to an export.

    .venv/bin/python -m benchmarks.control_plane [--quick] [--only pickup,progress,...]

Starts the real service as separate processes (`sparc-video serve`, and `sparc-video worker`
where a figure needs one) against a local Redis (its own key prefix), a PostgreSQL database of
its own (the system of record, created and migrated for the run, dropped at its end) and moto's
S3 server, drives load from this process with grpc.aio clients (progress events are published
from another process, as a worker would), and prints each figure with p50/p95/p99 beside its
target.

PostgreSQL: the server at $DATABASE_URL when it answers, else the one on 127.0.0.1:5432 (trust
auth, user postgres or root), else an embedded PostgreSQL 16 (pgserver) started for the run.

Figures (targets from issue 9):

- pickup: CreateExport returned → the worker's job started (the record's start_time), idle
  worker, one export at a time.
- progress: an event written to Redis → received by each of 100 WatchExport clients.
- CreateExport / GetExport: calls per second and latency from one client process, beside a
  grpc.health Check on the same server (the floor cost of one Python gRPC call here).
- memory: Redis bytes per 100,000 finished exports while they are retained and after their
  retention (finished records expire from Redis), and PostgreSQL bytes per 100,000 exports.
- watchers: 2,000 WatchExport streams over 200 exports on one server process: its RSS, its Redis
  connections, and whether every stream saw every event in order.
- queue overhead: 1,000 tiny exports through one worker with 4 slots; per export, the time its
  slot sat between the previous export's end and this export's start.
- priority: an interactive export created behind a queue of batch exports: how long it waits and
  how many batch exports start before it.
- storage: upload and download of one object through S3Storage (aioboto3) and through boto3's
  managed transfer in the same run, with each side's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import multiprocessing
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis
import redis.asyncio as aioredis
from arq.connections import RedisSettings, create_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sparc.video.v1 import export_pb2, export_service_pb2, export_service_pb2_grpc

from sparc_video.core.embedded_redis import EmbeddedRedis, answers, free_port
from sparc_video.core.event_loop import install_uvloop
from sparc_video.database import embedded as embedded_postgres
from sparc_video.database.migrations import migrate
from sparc_video.database.urls import redacted
from tests.fixtures.postgres import _admin, create_database, drop_database, run_sync

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ACCESS_KEY = SECRET_KEY = "bench"
REGION = "us-east-1"
State = export_pb2.Export
TERMINAL = {State.STATE_SUCCEEDED, State.STATE_FAILED, State.STATE_CANCELLED}
MIB = 1024 * 1024
# Channels to one target share a TCP connection unless told otherwise; like separate clients,
# each of ours gets its own (and so its own HTTP/2 stream limit).
SEPARATE_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
# Where a PostgreSQL is looked for when $DATABASE_URL is unset or does not answer.
LOCAL_POSTGRES_URLS = (
    "postgresql://postgres@127.0.0.1:5432/postgres",
    "postgresql://root@127.0.0.1:5432/postgres",
)


# --- results -------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    samples: list[float] = field(default_factory=list)  # latencies in ms, for p50/p95/p99
    measured: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def print_table(rows: list[Row], header: str) -> None:
    print()
    print(header)
    cols = ["figure", "p50 ms", "p95 ms", "p99 ms", "measured", "target", "met"]
    lines = []
    for row in rows:
        p = ["", "", ""]
        if row.samples:
            p = [f"{pct(row.samples, q):.2f}" for q in (0.5, 0.95, 0.99)]
        met = "" if row.met is None else ("yes" if row.met else "NO")
        lines.append([row.figure, *p, row.measured, row.target, met])
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) + " |")
    notes = [f"- {r.figure}: {r.note}" for r in rows if r.note]
    if notes:
        print("\n".join(["", "notes:", *notes]))
    sys.stdout.flush()


# --- processes -----------------------------------------------------------------------------


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout_s:.0f} s")
        time.sleep(0.05)


class Processes:
    """Children started by the benchmark; all stopped at exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT
        )
        self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.children:
            self.children.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.children)):
            self.stop(proc, 5)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU time (user + system) the process has used so far: less moved by other work on the
    machine than throughput is."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_connections_to(pid: int, port: int) -> int:
    """Established TCP connections of process `pid` to `port` on any address."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                remote_port = int(parts[2].rsplit(":", 1)[1], 16)
                if remote_port == port and parts[3] == "01" and parts[9] in inodes:
                    count += 1
    return count


@dataclass
class Env:
    redis_url: str
    redis_port: int
    prefix: str
    s3_endpoint: str
    bucket: str
    grpc_port: int
    workdir: Path
    procs: Processes
    database_url: str
    signing_key: str
    server: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    source_key: str = "bench/clip.mp4"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def service_env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'generated'}",
            "REDIS_URL": self.redis_url,
            "REDIS_PREFIX": self.prefix,
            "DATABASE_URL": self.database_url,
            "MANIFEST_SIGNING_KEY": self.signing_key,
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": str(self.grpc_port),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(free_port()),
            "S3_BUCKET": self.bucket,
            "S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "VIDEO_TEMP_DIR": str(self.workdir / "work"),
            "WORKER_METRICS_PORT": "0",
            **extra,
        }

    def start_server(self) -> None:
        self.server = self.procs.start(
            "server",
            [
                PYTHON,
                # BENCH_SERVER_PROFILE=path: run the server under cProfile, stats written there
                # when it stops.
                *(
                    ["-m", "cProfile", "-o", os.environ["BENCH_SERVER_PROFILE"]]
                    if os.environ.get("BENCH_SERVER_PROFILE")
                    else []
                ),
                "-m",
                "sparc_video.cli.main",
                "--log-level",
                os.environ.get("BENCH_SERVER_LOG", "WARNING"),
                "serve",
            ],
            # Measures the control plane alone: no authentication or per-principal quotas.
            self.service_env(AUTH_DISABLED="true"),
        )
        wait_until(self._serving, "the gRPC server")

    def _serving(self) -> bool:
        assert self.server is not None
        if self.server.poll() is not None:
            raise RuntimeError(f"server exited; see {self.workdir / 'server.log'}")
        channel = grpc.insecure_channel(self.target)
        try:
            health: Any = health_pb2_grpc.HealthStub(channel)  # its stubs name no methods
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
        except grpc.RpcError:
            return False
        finally:
            channel.close()

    def start_worker(self, concurrency: int) -> None:
        self.stop_worker()
        self.worker = self.procs.start(
            f"worker-{concurrency}",
            [PYTHON, "-m", "sparc_video.cli", "--log-level", "WARNING", "worker"],
            self.service_env(VIDEO_WORKER_CONCURRENCY=str(concurrency)),
        )
        client = redis.Redis.from_url(self.redis_url)
        try:
            # A worker announces itself once its context is open (heartbeat sorted set).
            def announced() -> bool:
                return int(client.zcard(f"{self.prefix}:workers")) > 0  # type: ignore[arg-type]

            wait_until(announced, "the worker", timeout_s=60)
        finally:
            client.close()
        time.sleep(0.5)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.procs.stop(self.worker, 30)
            self.worker = None
            client = redis.Redis.from_url(self.redis_url)
            try:
                client.delete(f"{self.prefix}:workers")
            finally:
                client.close()


@contextlib.contextmanager
def moto_server(procs: Processes) -> Iterator[str]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = procs.start(
        "moto", [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], dict(os.environ)
    )

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("moto server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(answers, "moto server")
    try:
        yield endpoint
    finally:
        procs.stop(proc)


@contextlib.contextmanager
def local_redis(workdir: Path) -> Iterator[str]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if answers(url):
        yield url
        return
    server = EmbeddedRedis(workdir / "redis", save="")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """A PostgreSQL server that answers: $DATABASE_URL, else a local one on 5432, else an
    embedded one with its data in the work dir (stopped at the end)."""
    for url in (os.environ.get("DATABASE_URL", ""), *LOCAL_POSTGRES_URLS):
        if url and embedded_postgres.answers(url):
            yield url
            return
    with embedded_postgres.ensure_database(None, workdir / "postgres") as url:
        yield url


@contextlib.contextmanager
def run_database(workdir: Path) -> Iterator[str]:
    """A new database for this run on `postgres_server`, migrated to the newest revision;
    dropped at the end."""
    with postgres_server(workdir) as server_url:
        url = create_database(server_url)
        try:
            run_sync(migrate(url))
            # Diagnosis only (not a production setting): BENCH_SYNCHRONOUS_COMMIT=off shows what
            # the commit's WAL flush costs the figures.
            synchronous_commit = os.environ.get("BENCH_SYNCHRONOUS_COMMIT")
            if synchronous_commit in ("on", "off", "local"):
                name = url.rsplit("/", 1)[1].split("?", 1)[0]
                run_sync(
                    _admin(
                        server_url,
                        f'ALTER DATABASE "{name}" SET synchronous_commit = {synchronous_commit}',
                    )
                )
            print(f"... PostgreSQL: {redacted(url)}", file=sys.stderr, flush=True)
            yield url
        finally:
            drop_database(server_url, url)


def new_signing_key() -> str:
    """An Ed25519 key in PEM for MANIFEST_SIGNING_KEY (serve and worker refuse to start
    without one)."""
    from sparc_video.evidence.signing import new_private_key_pem

    return new_private_key_pem().decode()


@contextlib.asynccontextmanager
async def export_store(redis_url: str, prefix: str, database_url: str) -> AsyncIterator[Any]:
    """An ExportStore over the run's Redis prefix and database, as the service opens it."""
    from sparc_video.core.keys import Keys
    from sparc_video.database.pool import open_database
    from sparc_video.exports.records import ExportStore

    client = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        async with open_database(database_url, min_size=1, max_size=8) as database:
            yield ExportStore(client, Keys(prefix), database, event_retention_s=3600)
    finally:
        await client.aclose()


def s3_client(endpoint: str) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def clean_redis(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        members: list[bytes] = client.zrange(f"{prefix}:exports", 0, -1)  # type: ignore[assignment]
        ids = [m.decode() for m in members]
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for export_id in ids:
            keys += [
                f"arq:{kind}:{export_id}" for kind in ("job", "result", "in-progress", "retry")
            ]
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


# --- helpers over the API ------------------------------------------------------------------


def thumbnail_request(
    source_key: str, priority: int = 0, request_id: str = ""
) -> export_service_pb2.CreateExportRequest:
    return export_service_pb2.CreateExportRequest(
        export=export_pb2.Export(
            source=export_pb2.ExportSource(object_key=source_key),
            operations=[
                export_pb2.Operation(
                    thumbnail=export_pb2.ThumbnailOptions(timestamps=["50%"], size="64x0")
                )
            ],
            priority=priority,  # type: ignore[arg-type]
        ),
        request_id=request_id,
    )


def seconds(ts: Any) -> float:
    return float(ts.seconds) + float(ts.nanos) / 1e9


async def run_concurrently(
    calls: int, concurrency: int, call: Callable[[int], Awaitable[None]]
) -> list[float]:
    """Run `call(i)` for i < calls with `concurrency` in flight; latencies in ms."""
    latencies: list[float] = []
    counter = iter(range(calls))

    async def lane() -> None:
        for i in counter:
            start = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return latencies


_CHANNELS: dict[int, grpc.aio.Channel] = {}


def async_stub(channel: grpc.aio.Channel) -> export_service_pb2_grpc.ExportServiceAsyncStub:
    """The export service's stub on a grpc.aio channel (typed as the async stub)."""
    return export_service_pb2_grpc.ExportServiceStub(channel)


def stub_channel(stub: export_service_pb2_grpc.ExportServiceAsyncStub) -> grpc.aio.Channel:
    return _CHANNELS[id(stub)]


@contextlib.asynccontextmanager
async def channel_stub(
    target: str,
) -> AsyncIterator[export_service_pb2_grpc.ExportServiceAsyncStub]:
    channel = grpc.aio.insecure_channel(target)
    stub = async_stub(channel)
    _CHANNELS[id(stub)] = channel
    try:
        yield stub
    finally:
        del _CHANNELS[id(stub)]
        await channel.close()


async def watch_to_end(
    stub: export_service_pb2_grpc.ExportServiceAsyncStub, name: str
) -> list[export_service_pb2.WatchExportResponse]:
    messages = []
    async for message in stub.WatchExport(export_service_pb2.WatchExportRequest(name=name)):
        messages.append(message)
    return messages


# --- publisher process (plays the worker's part for the stream figures) --------------------


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


# --- scenarios -----------------------------------------------------------------------------


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
        stubs = [export_service_pb2_grpc.ExportServiceAsyncStub(c) for c in channels]
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


async def postgres_backends(database_url: str) -> set[int]:
    """The pids of the client backends connected to the run's database (the server's pool;
    the benchmark's own connections are closed while the RPC figures run)."""
    import asyncpg

    from sparc_video.database.urls import asyncpg_dsn

    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return {int(row["pid"]) for row in rows}


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_s(pid)
    except OSError:  # gone, or a PostgreSQL on another host
        return 0.0


@dataclass
class CpuMeter:
    """CPU seconds spent over one measurement by the server process, the PostgreSQL backends
    serving it and this (client) process: per call, they say where a ceiling comes from (one
    process's CPU, or the database's) when throughput alone, on a shared machine, cannot."""

    server_pid: int
    database_url: str
    _server: float = 0.0
    _client: float = 0.0
    _backends: dict[int, float] = field(default_factory=dict)

    async def start(self) -> None:
        self._backends = {p: _cpu_or_zero(p) for p in await postgres_backends(self.database_url)}
        self._server, self._client = cpu_s(self.server_pid), time.process_time()

    async def per_call(self, calls: int) -> str:
        server = cpu_s(self.server_pid) - self._server
        client = time.process_time() - self._client
        # A backend opened during the measurement counts whole (it started at 0).
        backends = await postgres_backends(self.database_url)
        postgres = sum(_cpu_or_zero(p) - self._backends.get(p, 0.0) for p in backends)
        ms = 1000 / calls
        return (
            f"CPU ms/call: server {server * ms:.2f}, PostgreSQL {postgres * ms:.2f}, "
            f"client {client * ms:.2f}"
        )


async def measure_rate(
    meter: CpuMeter, calls: int, concurrency: int, call: Callable[[int], Awaitable[None]]
) -> tuple[list[float], float, str]:
    """Latencies (ms), calls per second and CPU per call of `calls` calls after a warm-up."""
    await run_concurrently(min(500, calls), concurrency, call)
    await meter.start()
    start = time.perf_counter()
    latencies = await run_concurrently(calls, concurrency, call)
    rate = calls / (time.perf_counter() - start)
    return latencies, rate, f"{rate:,.0f}/s, {concurrency} in flight, {await meter.per_call(calls)}"


async def bench_rpc(env: Env, creates: int, gets: int, concurrency: int) -> list[Row]:
    rows = []
    assert env.server is not None
    meter = CpuMeter(env.server.pid, env.database_url)
    async with channel_stub(env.target) as stub:
        names: list[str] = []

        async def create(i: int) -> None:
            reply = await stub.CreateExport(
                thumbnail_request(env.source_key, request_id=f"bench-{uuid.uuid4().hex}")
            )
            names.append(reply.name)

        latencies, rate, measured = await measure_rate(meter, creates, concurrency, create)
        rows.append(
            Row(
                "CreateExport (thumbnail, request_id)",
                latencies,
                measured,
                "≥ 1,000/s, p99 ≤ 25",
                rate >= 1000 and pct(latencies, 0.99) <= 25,
            )
        )
        requests = [export_service_pb2.GetExportRequest(name=n) for n in names]

        async def get(i: int) -> None:
            await stub.GetExport(requests[i % len(requests)])

        latencies, rate, measured = await measure_rate(meter, gets, concurrency, get)
        rows.append(Row("GetExport", latencies, measured, "≥ 3,000/s", rate >= 3000))
        # The ceiling: grpc.aio's own cost per call, with a handler that does next to nothing.
        health: Any = health_pb2_grpc.HealthStub(stub_channel(stub))
        check = health_pb2.HealthCheckRequest(service="")

        async def ping(i: int) -> None:
            await health.Check(check)

        latencies, rate, measured = await measure_rate(meter, gets, concurrency, ping)
        rows.append(
            Row(
                "(reference) grpc.health Check, same server",
                latencies,
                measured,
                "(ceiling of a Python gRPC call here)",
            )
        )
    # No worker is to run these, nor the reconciler to requeue them later: delete them.
    await forget_exports(env, [n.split("/")[1] for n in names])
    return rows


async def forget_exports(env: Env, export_ids: list[str]) -> None:
    from sparc_video.core.keys import Keys
    from sparc_video.exports.queue import ExportQueue

    async with export_store(env.redis_url, env.prefix, env.database_url) as store:
        queue = ExportQueue(store.redis, Keys(env.prefix))
        for export_id in export_ids:
            await queue.remove(export_id)
            await store.delete(await store.get(export_id), "bench")


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
    stubs = [export_service_pb2_grpc.ExportServiceAsyncStub(c) for c in channels]
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


async def create_many(
    stub: export_service_pb2_grpc.ExportServiceAsyncStub,
    source_key: str,
    count: int,
    priority: int = 0,
    concurrency: int = 16,
) -> list[str]:
    names: list[str] = []

    async def create(i: int) -> None:
        reply = await stub.CreateExport(thumbnail_request(source_key, priority))
        names.append(reply.name)

    await run_concurrently(count, concurrency, create)
    return names


async def fetch_all(
    stub: export_service_pb2_grpc.ExportServiceAsyncStub, names: list[str]
) -> list[export_pb2.Export]:
    found: list[export_pb2.Export] = []

    async def get(i: int) -> None:
        found.append(await stub.GetExport(export_service_pb2.GetExportRequest(name=names[i])))

    await run_concurrently(len(names), 16, get)
    return found


async def wait_all_done(
    stub: export_service_pb2_grpc.ExportServiceAsyncStub, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await stub.GetQueueStats(export_service_pb2.GetQueueStatsRequest())
        if stats.queued + stats.running + stats.retrying == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"exports still unfinished after {timeout_s:.0f} s: {stats}")
        await asyncio.sleep(0.5)


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


# --- storage ------------------------------------------------------------------------------


def transfer_main(which: str, direction: str, args: dict[str, Any], out: Any) -> None:
    """One transfer in a fresh process, so its peak RSS is its own."""
    path = Path(args["path"])
    key = args["key"]
    if which == "boto3":
        client = s3_client(args["endpoint"])
        start = time.perf_counter()
        if direction == "upload":
            client.upload_file(str(path), args["bucket"], key)
        else:
            client.download_file(args["bucket"], key, str(path))
    else:
        from pydantic import SecretStr

        from sparc_video.core.settings import Settings
        from sparc_video.storage.s3 import S3Storage

        settings = Settings(
            s3_bucket=args["bucket"],
            s3_endpoint_url=args["endpoint"],
            aws_region=REGION,
            aws_access_key_id=SecretStr(ACCESS_KEY),
            aws_secret_access_key=SecretStr(SECRET_KEY),
        )

        async def go() -> float:
            # Clients are opened once per process in the service: not part of a transfer.
            storage = await S3Storage.open(settings)
            try:
                start = time.perf_counter()
                if direction == "upload":
                    await storage.upload_file(path, key, "application/octet-stream")
                else:
                    await storage.download_file(key, path)
                return time.perf_counter() - start
            finally:
                await storage.aclose()

        elapsed = asyncio.run(go())
    if which == "boto3":
        elapsed = time.perf_counter() - start
    out.put((elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run_transfer(which: str, direction: str, args: dict[str, Any]) -> tuple[float, float]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=transfer_main, args=(which, direction, args, out))
    proc.start()
    result = out.get(timeout=1800)
    proc.join(60)
    return result  # type: ignore[no-any-return]


def bench_storage(env: Env, size: int, repeats: int) -> list[Row]:
    client = s3_client(env.s3_endpoint)
    source = env.workdir / "blob.bin"
    block = os.urandom(8 * MIB)
    with source.open("wb") as f:
        for _ in range(size // len(block)):
            f.write(block[:-1] + os.urandom(1))  # no two parts identical
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for repeat in range(repeats):
        # Alternate who goes first: moto gets slower as it holds more, the machine is shared.
        for which in ("sparc", "boto3") if repeat % 2 == 0 else ("boto3", "sparc"):
            key = f"bench/blob-{which}.bin"
            up = run_transfer(
                which,
                "upload",
                {
                    "path": str(source),
                    "key": key,
                    "bucket": env.bucket,
                    "endpoint": env.s3_endpoint,
                },
            )
            results.setdefault((which, "upload"), []).append(up)
            target = env.workdir / f"down-{which}.bin"
            down = run_transfer(
                which,
                "download",
                {
                    "path": str(target),
                    "key": key,
                    "bucket": env.bucket,
                    "endpoint": env.s3_endpoint,
                },
            )
            results.setdefault((which, "download"), []).append(down)
            assert target.stat().st_size == size
            target.unlink()
            client.delete_object(Bucket=env.bucket, Key=key)
    source.unlink()
    rows = []
    size_mb = size / MIB
    for direction in ("upload", "download"):
        ours = [size_mb / t for t, _ in results[("sparc", direction)]]
        theirs = [size_mb / t for t, _ in results[("boto3", direction)]]
        ours_rss = max(r for _, r in results[("sparc", direction)])
        theirs_rss = max(r for _, r in results[("boto3", direction)])
        ratio = statistics.median(ours) / statistics.median(theirs)
        rows.append(
            Row(
                f"storage {direction}: {size_mb:,.0f} MiB through moto",
                [],
                f"S3Storage {statistics.median(ours):.0f} MiB/s (peak RSS {ours_rss:.0f} MB), "
                f"boto3 {statistics.median(theirs):.0f} MiB/s ({theirs_rss:.0f} MB): "
                f"{ratio:.2f}x",
                "≥ 0.8x boto3, bounded memory",
                ratio >= 0.8 and ours_rss < 200 + size / MIB / 8,
            )
        )
    return rows


def make_clip(path: Path, width: int = 160, height: int = 90, frames: int = 10) -> None:
    """A 1 s H.264 clip: the source of the tiny exports."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for n in range(frames):
            picture = np.full((height, width, 3), (n * 25) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --- main ----------------------------------------------------------------------------------

SCENARIOS = (
    "pickup",
    "progress",
    "rpc",
    "memory",
    "watchers",
    "queue",
    "priority",
    "storage",
)


async def run_scenarios(env: Env, args: argparse.Namespace, only: set[str]) -> list[Row]:
    quick = args.quick
    rows: list[Row] = []
    steps: list[tuple[str, Callable[[], Awaitable[list[Row]]]]] = [
        ("pickup", lambda: bench_pickup(env, 40 if quick else 200)),
        ("progress", lambda: bench_progress(env, 100, 50 if quick else 200, 20.0)),
        (
            "rpc",
            lambda: bench_rpc(env, 2000 if quick else 10000, 5000 if quick else 20000, 16),
        ),
        ("memory", lambda: bench_memory(env, 2000 if quick else 10000, 86400)),
        ("watchers", lambda: bench_watchers(env, 200, 10, 5 if quick else 10, 0.5)),
        ("queue", lambda: bench_queue_overhead(env, 200 if quick else 1000, 4)),
        ("priority", lambda: bench_priority(env, 12 if quick else 30, 2)),
    ]
    for name, step in steps:
        if name in only:
            print(f"... {name}", file=sys.stderr, flush=True)
            rows += await step()
    if "storage" in only:
        print("... storage", file=sys.stderr, flush=True)
        size = (128 if quick else 1024) * MIB
        rows += await asyncio.to_thread(bench_storage, env, size, 2)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, 128 MiB storage")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated: {','.join(SCENARIOS)}"
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    load_at_start = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="sparc-bench-"))
    procs = Processes(workdir)
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    rows: list[Row] = []
    try:
        with (
            local_redis(workdir) as redis_url,
            run_database(workdir) as database_url,
            moto_server(procs) as endpoint,
        ):
            bucket = f"bench-{uuid.uuid4().hex[:12]}"
            client = s3_client(endpoint)
            client.create_bucket(Bucket=bucket)
            env = Env(
                redis_url=redis_url,
                redis_port=int(redis_url.rsplit(":", 1)[1].split("/")[0]),
                prefix=prefix,
                s3_endpoint=endpoint,
                bucket=bucket,
                grpc_port=free_port(),
                workdir=workdir,
                procs=procs,
                database_url=database_url,
                signing_key=new_signing_key(),
            )
            clip = workdir / "clip.mp4"
            make_clip(clip)
            client.upload_file(str(clip), bucket, env.source_key)
            env.start_server()
            # The load generator shares the 2 cores with the service: keep its loop cheap.
            install_uvloop()
            try:
                rows = asyncio.run(run_scenarios(env, args, only))
            finally:
                env.stop_worker()
                if env.server is not None:
                    procs.stop(env.server)
                clean_redis(redis_url, prefix)
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work dir kept: {workdir}", file=sys.stderr)
    # Other work on the machine moves every figure: say how busy it was.
    header = (
        f"sparc-video control plane, {os.cpu_count()} CPUs, "
        f"{'quick' if args.quick else 'full'} run, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    print_table(rows, header)
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "figure": r.figure,
                        "p50": pct(r.samples, 0.5) if r.samples else None,
                        "p95": pct(r.samples, 0.95) if r.samples else None,
                        "p99": pct(r.samples, 0.99) if r.samples else None,
                        "measured": r.measured,
                        "target": r.target,
                        "met": r.met,
                    }
                    for r in rows
                ],
                indent=1,
            )
        )
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
