"""What the ExportService does, free of protobuf and gRPC: one method per RPC.

Handlers (`export_service.py`) convert requests with `validation.py`, call one method here and
convert the result back with `proto_mapping.py`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sparc_video import confinement
from sparc_video.errors import FailedPrecondition, FieldViolation, InvalidArgument, ObjectNotFound
from sparc_video.events import EventHub
from sparc_video.models import (
    ExportRecord,
    ExportState,
    Operation,
    Priority,
    ThumbnailOp,
    WatermarkOp,
)
from sparc_video.queue import ExportQueue
from sparc_video.records import EventKind, ExportEvent, ExportStore, new_export_id
from sparc_video.settings import Settings
from sparc_video.stat_cache import StatCache
from sparc_video.storage import Storage
from sparc_video.telemetry import enqueue_span


@dataclass(frozen=True)
class WatchMessage:
    """One message of a watch: a snapshot (kind "snapshot") or an event."""

    kind: str
    event_id: str
    time: float
    record: ExportRecord


@dataclass(frozen=True)
class DownloadLink:
    output_index: int
    storage_key: str
    url: str
    expire_time: float


@dataclass(frozen=True)
class QueueStats:
    counts: dict[ExportState, int]
    workers: int
    oldest_queued_age_s: float


SNAPSHOT = "snapshot"


class Exports:
    def __init__(
        self,
        settings: Settings,
        store: ExportStore,
        queue: ExportQueue,
        storage: Storage,
        hub: EventHub,
    ) -> None:
        self._settings = settings
        self._store = store
        self._queue = queue
        self._storage = storage
        self._sources = StatCache(storage)
        self._hub = hub

    async def create(
        self,
        source_key: str,
        operations: list[Operation],
        request_id: str,
        priority: Priority = Priority.INTERACTIVE,
    ) -> ExportRecord:
        if request_id:
            # A retried request must not fail on a source deleted since the first call.
            existing_id = await self._store.request_owner(request_id)
            if existing_id is not None:
                return await self._store.get(existing_id)
        self._check_request(source_key, operations)
        try:
            info = await self._sources.stat(source_key)
        except ObjectNotFound as exc:
            raise ObjectNotFound(source_key, what="source video") from exc
        if info.size_bytes > self._settings.max_upload_size:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "export.source.object_key",
                        f"the source is {info.size_bytes} bytes, above MAX_VIDEO_UPLOAD_SIZE "
                        f"({self._settings.max_upload_size} bytes)",
                    )
                ]
            )
        for op in operations:
            if isinstance(op, WatermarkOp) and op.image_key:
                try:
                    await self._storage.stat(op.image_key)
                except ObjectNotFound as exc:
                    raise ObjectNotFound(op.image_key, what="watermark image") from exc
        record = ExportRecord(
            id=new_export_id(),
            source_key=source_key,
            operations=operations,
            request_id=request_id,
            priority=priority,
        )
        with enqueue_span(record.id) as traceparent:
            record.trace_context = traceparent
            record, created = await self._store.create(record)
            if created:
                await self._queue.enqueue(record.id, priority=priority)
        return record

    def _check_request(self, source_key: str, operations: list[Operation]) -> None:
        """The limits and confinement that depend on the configuration (validation.py checks
        the fixed rules): where inputs come from, how many operations and images."""
        settings = self._settings
        keys = [("export.source.object_key", source_key)]
        keys += [
            (f"export.operations[{index}].watermark.image_object_key", op.image_key)
            for index, op in enumerate(operations)
            if isinstance(op, WatermarkOp) and op.image_key
        ]
        confinement.check_source_keys(keys, settings)
        violations: list[FieldViolation] = []
        if len(operations) > settings.max_export_operations:
            violations.append(
                FieldViolation(
                    "export.operations",
                    f"{len(operations)} operations; at most MAX_EXPORT_OPERATIONS "
                    f"({settings.max_export_operations}) per export",
                )
            )
        images = sum(
            op.sprite_frame_count or len(op.timestamps)
            for op in operations
            if isinstance(op, ThumbnailOp)
        )
        if images > settings.max_export_thumbnails:
            violations.append(
                FieldViolation(
                    "export.operations",
                    f"{images} thumbnails (sprite tiles count one each); at most "
                    f"MAX_EXPORT_THUMBNAILS ({settings.max_export_thumbnails}) per export",
                )
            )
        if violations:
            raise InvalidArgument(violations)

    async def get(self, export_id: str) -> ExportRecord:
        return await self._store.get(export_id)

    async def page(
        self, page_size: int, page_token: str, state: ExportState | None
    ) -> tuple[list[ExportRecord], str]:
        return await self._store.page(page_size=page_size, page_token=page_token, state=state)

    async def cancel(self, export_id: str) -> ExportRecord:
        def to_cancelled(record: ExportRecord) -> str:
            if record.state.terminal:
                raise FailedPrecondition(
                    f"export {export_id} already ended in state {record.state}; "
                    "only QUEUED, RUNNING or RETRYING exports can be cancelled",
                    reason="EXPORT_FINISHED",
                )
            record.state = ExportState.CANCELLED
            record.end_time = time.time()
            record.progress.eta_s = None
            return EventKind.STATE_CHANGED

        record = await self._store.update(export_id, to_cancelled)
        # A worker running it sees CANCELLED at its next progress write and stops.
        await self._queue.remove(export_id)
        return record

    async def watch(self, export_id: str, after_event_id: str) -> AsyncIterator[WatchMessage]:
        """The current state, then every change, ending after a terminal state."""
        record, last_id = await self._store.get_with_last_event(export_id)
        replay: list[ExportEvent] | None = None
        if after_event_id:
            replay = await self._store.events_after(export_id, after_event_id)
        if replay:
            start_id = after_event_id
        else:
            yield WatchMessage(SNAPSHOT, last_id, record.update_time, record)
            if record.state.terminal:
                return
            start_id = last_id
        async with self._hub.subscribe(export_id, start_id) as mailbox:
            for event in replay or []:
                mailbox.put(event)
            while True:
                for event in await mailbox.get():
                    yield WatchMessage(event.kind, event.event_id, event.time, event.record)
                    if event.record.state.terminal:
                        return

    async def download_links(self, export_id: str, ttl_s: int) -> list[DownloadLink]:
        confinement.check_ttl(ttl_s, self._settings, "ttl")
        ttl_s = ttl_s or self._settings.download_url_ttl_s
        record = await self._store.get(export_id)
        if record.state != ExportState.SUCCEEDED:
            raise FailedPrecondition(
                f"export {export_id} is {record.state}; download URLs exist once it SUCCEEDED",
                reason="EXPORT_NOT_SUCCEEDED",
            )
        expire = time.time() + ttl_s
        links = []
        for index, output in enumerate(record.outputs):
            filename = output.storage_key.rsplit("/", 1)[-1]
            url = await self._storage.download_url(output.storage_key, ttl_s, filename=filename)
            links.append(DownloadLink(index, output.storage_key, url, expire))
        return links

    async def queue_stats(self) -> QueueStats:
        counts = await self._store.count_by_state()
        oldest = await self._store.oldest_in_state(ExportState.QUEUED)
        age = max(0.0, time.time() - oldest.create_time) if oldest else 0.0
        return QueueStats(counts, await self._store.live_workers(), age)
