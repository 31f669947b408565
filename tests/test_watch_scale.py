"""Many WatchExport streams on one server: fixed Redis connections, every event to every stream.

The figures at 2,000 streams (RSS, delivery latency) come from `python -m
benchmarks.control_plane`; this test checks the behaviour at a size that runs in seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
from sparc.video.v1 import export_service_pb2, export_service_pb2_grpc

from sparc_video.core.ids import new_id
from sparc_video.core.settings import Settings
from sparc_video.exports.event_log import EventKind
from sparc_video.exports.models import ExportRecord, ExportState, Progress, ThumbnailOp
from tests.fixtures.service import RunningService, start_service

EXPORTS = 20
WATCHERS_PER_EXPORT = 10
ROUNDS = 5
SNAPSHOT = export_service_pb2.WatchExportResponse.EVENT_KIND_SNAPSHOT


async def hub_connections(service: RunningService) -> int:
    clients = await service.app.redis.client_list()
    return sum(1 for c in clients if c.get("name") == service.app.hub.client_name)


async def running_export(service: RunningService) -> str:
    record = ExportRecord(id=new_id(), source_key="in/x.mp4", operations=[ThumbnailOp()])
    await service.app.store.create(record)

    def start(r: ExportRecord) -> str:
        r.state = ExportState.RUNNING
        r.attempt = 1
        return EventKind.STATE_CHANGED

    await service.app.store.update(record.id, start)
    return record.id


class Watcher:
    def __init__(self, stub: export_service_pb2_grpc.ExportServiceStub, export_id: str) -> None:
        self.export_id = export_id
        self.event_ids: list[str] = []
        self.subscribed = asyncio.Event()
        self.received = asyncio.Event()
        self.task = asyncio.create_task(self._watch(stub))

    async def _watch(self, stub: export_service_pb2_grpc.ExportServiceStub) -> None:
        request = export_service_pb2.WatchExportRequest(name=f"exports/{self.export_id}")
        async for message in stub.WatchExport(request):
            if message.kind == SNAPSHOT:
                self.subscribed.set()
            else:
                self.event_ids.append(message.event_id)
                self.received.set()


async def test_streams_share_the_hub_connections_and_get_every_event_in_order(
    service_settings: Callable[..., Settings],
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        ids = [await running_export(service) for _ in range(EXPORTS)]
        # Several client connections, as separate clients would have.
        channels = [
            grpc.aio.insecure_channel(
                service.target, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(4)
        ]
        try:
            stubs = [export_service_pb2_grpc.ExportServiceStub(c) for c in channels]
            first = Watcher(stubs[0], ids[0])
            await first.subscribed.wait()
            with_one_stream = await hub_connections(service)
            watchers = [first] + [
                Watcher(stubs[n % len(stubs)], ids[n % EXPORTS])
                for n in range(1, EXPORTS * WATCHERS_PER_EXPORT)
            ]
            async with asyncio.timeout(30):
                await asyncio.gather(*(w.subscribed.wait() for w in watchers))
            assert service.app.hub.watched_streams == EXPORTS
            assert await hub_connections(service) <= max(with_one_stream, 1) + 2

            for n in range(ROUNDS + 1):

                def change(record: ExportRecord, n: int = n) -> str:
                    if n == ROUNDS:
                        record.state = ExportState.SUCCEEDED
                        return EventKind.STATE_CHANGED
                    record.progress = Progress(percent=100 * n / ROUNDS)
                    return EventKind.PROGRESS

                for w in watchers:
                    w.received.clear()
                for export_id in ids:
                    await service.app.store.update(export_id, change)
                # Paced like a worker (progress at most twice a second): nobody falls behind,
                # so nothing is coalesced and every stream must see every event.
                async with asyncio.timeout(30):
                    await asyncio.gather(*(w.received.wait() for w in watchers))
            async with asyncio.timeout(30):
                await asyncio.gather(*(w.task for w in watchers))
            connections_at_the_end = await hub_connections(service)
        finally:
            for channel in channels:
                await channel.close()
        assert connections_at_the_end <= max(with_one_stream, 1) + 2
        for export_id in ids:
            entries = await service.app.redis.xrange(service.app.store.keys.events(export_id))
            published = [entry[0].decode() for entry in entries][-(ROUNDS + 1) :]
            for w in watchers:
                if w.export_id == export_id:
                    assert w.event_ids == published
        assert service.app.hub.watched_streams == 0
