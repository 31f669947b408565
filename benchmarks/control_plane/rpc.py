"""The RPC figures: CreateExport and GetExport throughput and latency beside a health check,
with the CPU each call costs the server, PostgreSQL and the client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc
from sparc.video.v1 import export_service_pb2

from benchmarks.control_plane.api import (
    channel_stub,
    run_concurrently,
    stub_channel,
    thumbnail_request,
)
from benchmarks.control_plane.env import Env
from benchmarks.control_plane.processes import cpu_s
from benchmarks.control_plane.results import Row, pct
from benchmarks.control_plane.services import export_store


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
