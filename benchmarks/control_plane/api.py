"""Helpers over the export API: requests, grpc.aio channels and stubs, concurrent calls."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from sparc.video.v1 import export_pb2, export_service_pb2, export_service_pb2_grpc

State = export_pb2.Export
# Channels to one target share a TCP connection unless told otherwise; like separate clients,
# each of ours gets its own (and so its own HTTP/2 stream limit).
SEPARATE_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


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
