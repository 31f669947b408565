"""What the ExportService does, free of protobuf and gRPC: one method per RPC.

Handlers (`api/exports/handlers.py`) convert requests with `api/exports/requests/`, call one
method here and convert the result back with `api/exports/mapping.py`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

from sparc_video.audit import Action, AuditEntry
from sparc_video.core.errors import (
    ExportNotFound,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ObjectNotFound,
    SparcVideoError,
)
from sparc_video.core.ids import new_id
from sparc_video.core.settings import Settings
from sparc_video.exports.catalog import ExportFilter, grant_row
from sparc_video.exports.event_log import EventKind, ExportEvent
from sparc_video.exports.events import EventHub
from sparc_video.exports.models import (
    MAX_DOWNLOAD_GRANTS,
    DownloadGrant,
    ExportRecord,
    ExportState,
    Priority,
)
from sparc_video.exports.operations import Operation, ThumbnailOp, WatermarkOp
from sparc_video.exports.queue import ExportQueue
from sparc_video.exports.records import ExportStore
from sparc_video.exports.sources import ExportSources, RecordingSource, ResolvedSource, SourceSpec
from sparc_video.observability.tracing import enqueue_span
from sparc_video.security import confinement
from sparc_video.security.auth import Principal
from sparc_video.storage import Storage
from sparc_video.storage.stat_cache import StatCache


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
class DownloadLinks:
    outputs: list[DownloadLink]
    # None for exports that finished before manifests were written.
    manifest: DownloadLink | None
    signature: DownloadLink | None


@dataclass(frozen=True)
class AuditFields:
    """Why an export is made; recorded on it and in its manifest (with its requester)."""

    case_id: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class QueueStats:
    counts: dict[ExportState, int]
    workers: int
    oldest_queued_age_s: float


SNAPSHOT = "snapshot"

# Told of every object key an export reads (its object source, watermark images) before the
# export is stored; may refuse one (e.g. another caller's upload, `uploads.Uploads.claim_source`).
ClaimSource = Callable[[Principal, str], Awaitable[None]]


def _visible(record: ExportRecord, caller: Principal) -> ExportRecord:
    """The record, if the caller may see it. Another principal's export is reported exactly
    as a missing one would be, so callers cannot learn which export ids exist."""
    if not caller.owns(record.requester):
        raise ExportNotFound(f"export {record.id!r} does not exist")
    return record


class Exports:
    def __init__(
        self,
        settings: Settings,
        store: ExportStore,
        queue: ExportQueue,
        storage: Storage,
        hub: EventHub,
        sources: ExportSources,
        *,
        claim_source: ClaimSource | None = None,
    ) -> None:
        self._settings = settings
        self._claim_source = claim_source
        self._source_resolver = sources
        self._store = store
        self._queue = queue
        self._storage = storage
        self._sources = StatCache(storage)
        self._hub = hub
        # The quota on unfinished exports per principal; none for the local admin of a server
        # running without authentication.
        self._max_unfinished = 0 if settings.auth_disabled else settings.quota_max_queued_exports

    async def create(
        self,
        caller: Principal,
        source: SourceSpec,
        operations: list[Operation],
        request_id: str,
        priority: Priority = Priority.INTERACTIVE,
        *,
        audit: AuditFields | None = None,
    ) -> ExportRecord:
        audit = audit or AuditFields()
        try:
            resolved = await self._resolve(source, operations)
        except SparcVideoError:
            # A retried request must not fail on a source deleted (or a limit lowered) since
            # the first call. Looked up only here: on success, the create itself finds the
            # request id. Request ids are per principal: another's id is a new request.
            existing_id = (
                await self._store.request_owner(caller.id, request_id) if request_id else None
            )
            if existing_id is None:
                raise
            return await self._store.get(existing_id)
        if self._claim_source is not None:
            for key in [source] if isinstance(source, str) else []:
                await self._claim_source(caller, key)
            for op in operations:
                if isinstance(op, WatermarkOp) and op.image_key:
                    await self._claim_source(caller, op.image_key)
        record = ExportRecord(
            id=new_id(),
            source_key=resolved.source_key,
            operations=operations,
            request_id=request_id,
            priority=priority,
            requester=caller.id,
            case_id=audit.case_id,
            purpose=audit.purpose,
            recording=resolved.recording,
            camera_range=resolved.camera_range,
            coverage=resolved.coverage,
            capture_start_ns=resolved.capture_start_ns,
        )
        with enqueue_span(record.id) as traceparent:
            record.trace_context = traceparent
            record, _ = await self._store.create(
                record,
                max_unfinished=self._max_unfinished,
                also=self._queue.new_job_commands(record.id, priority=priority),
            )
        return record

    async def _resolve(self, source: SourceSpec, operations: list[Operation]) -> ResolvedSource:
        """The checks that depend on the configuration and on storage; the source resolved."""
        # A recording's object was confined when the recording was registered.
        self._check_request(source if isinstance(source, str) else "", operations)
        if isinstance(source, str):
            resolved = ResolvedSource(source_key=source)
        elif isinstance(source, RecordingSource):
            resolved = await self._source_resolver.recording(source)
        else:
            resolved = await self._source_resolver.camera_range(source)
        if resolved.source_key:
            await self._check_object(resolved.source_key, bool(resolved.recording))
        for op in operations:
            if isinstance(op, WatermarkOp) and op.image_key:
                try:
                    await self._storage.stat(op.image_key)
                except ObjectNotFound as exc:
                    raise ObjectNotFound(op.image_key, what="watermark image") from exc
        return resolved

    async def _check_object(self, source_key: str, recording: bool) -> None:
        try:
            info = await self._sources.stat(source_key)
        except ObjectNotFound as exc:
            what = "object of the recording" if recording else "source video"
            raise ObjectNotFound(source_key, what=what) from exc
        field = "export.source.recording" if recording else "export.source.object_key"
        if info.size_bytes > self._settings.max_upload_size:
            raise InvalidArgument(
                [
                    FieldViolation(
                        field,
                        f"the source is {info.size_bytes} bytes, above MAX_VIDEO_UPLOAD_SIZE "
                        f"({self._settings.max_upload_size} bytes)",
                    )
                ]
            )

    def _check_request(self, source_key: str, operations: list[Operation]) -> None:
        """The limits and confinement that depend on the configuration (api/exports/requests
        checks the fixed rules): where inputs come from, how many operations and images."""
        settings = self._settings
        keys = [("export.source.object_key", source_key)] if source_key else []
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

    async def get(self, caller: Principal, export_id: str) -> ExportRecord:
        return _visible(await self._store.get(export_id), caller)

    async def page(
        self, caller: Principal, page_size: int, page_token: str, keep: ExportFilter
    ) -> tuple[list[ExportRecord], str]:
        """Admins page through every export; anyone else through the exports it created."""
        if not caller.sees_all:
            if keep.requester not in (None, caller.id):
                return [], ""  # another's exports: none visible
            keep = replace(keep, requester=caller.id)
        return await self._store.page(page_size=page_size, page_token=page_token, keep=keep)

    async def cancel(self, caller: Principal, export_id: str) -> ExportRecord:
        def to_cancelled(record: ExportRecord) -> str:
            _visible(record, caller)
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

        record = await self._store.update(
            export_id,
            to_cancelled,
            audit=lambda r: [AuditEntry(caller.id, Action.EXPORT_CANCEL, r.name, r.case_id)],
        )
        # A worker running it sees CANCELLED at its next progress write and stops.
        await self._queue.remove(export_id)
        return record

    async def watch(
        self, caller: Principal, export_id: str, after_event_id: str
    ) -> AsyncIterator[WatchMessage]:
        """The current state, then every change, ending after a terminal state."""
        record, last_id = await self._store.get_with_last_event(export_id)
        _visible(record, caller)
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

    async def download_links(self, caller: Principal, export_id: str, ttl_s: int) -> DownloadLinks:
        """URLs for every output and the manifest; the grant is logged on the export first,
        so no URL is ever handed out unrecorded."""
        confinement.check_ttl(ttl_s, self._settings, "ttl")
        ttl_s = ttl_s or self._settings.download_url_ttl_s
        record = _visible(await self._store.get(export_id), caller)
        if record.state != ExportState.SUCCEEDED:
            raise FailedPrecondition(
                f"export {export_id} is {record.state}; download URLs exist once it SUCCEEDED",
                reason="EXPORT_NOT_SUCCEEDED",
            )
        now = time.time()
        expire = now + ttl_s
        keys = [output.storage_key for output in record.outputs]
        if record.manifest is not None:
            keys += [record.manifest.storage_key, record.manifest.signature_storage_key]
        grant = DownloadGrant(now, caller.id, tuple(keys), expire)

        def log_grant(current: ExportRecord) -> str:
            current.download_grants = [*current.download_grants, grant][-MAX_DOWNLOAD_GRANTS:]
            return EventKind.AUDIT

        await self._store.update(
            export_id,
            log_grant,
            audit=lambda r: [
                AuditEntry(
                    caller.id,
                    Action.EXPORT_DOWNLOAD,
                    r.name,
                    r.case_id,
                    {"storage_keys": keys, "expire_time": expire},
                )
            ],
            also=grant_row(export_id, grant),
        )

        async def link(index: int, key: str) -> DownloadLink:
            filename = key.rsplit("/", 1)[-1]
            url = await self._storage.download_url(key, ttl_s, filename=filename)
            return DownloadLink(index, key, url, expire)

        outputs = [await link(i, out.storage_key) for i, out in enumerate(record.outputs)]
        if record.manifest is None:
            return DownloadLinks(outputs, None, None)
        return DownloadLinks(
            outputs,
            await link(-1, record.manifest.storage_key),
            await link(-1, record.manifest.signature_storage_key),
        )

    async def queue_stats(self) -> QueueStats:
        counts = await self._store.count_by_state()
        oldest = await self._store.oldest_in_state(ExportState.QUEUED)
        age = max(0.0, time.time() - oldest.create_time) if oldest else 0.0
        return QueueStats(counts, await self._store.workers.live(), age)
