"""Keeps our records and arq's queue in agreement, and applies retention.

Every worker runs this loop; a short Redis lock lets one of them do each round. A round:

- RUNNING exports whose lease expired lost their worker (killed, OOM, partitioned): they go back
  to QUEUED and their job is made runnable again at once. arq alone would only retry them when its
  in-progress key expires: after the largest job timeout plus 10 s.
- QUEUED and RETRYING exports with no job on arq's queue (e.g. a Redis failover or FLUSHALL
  lost it) are enqueued again (RETRYING ones not before their next attempt time). The list of
  unfinished exports comes from PostgreSQL, the system of record: what Redis lost (records,
  queue, leases) is rebuilt from it, so at most a running attempt is redone.
- Failed exports beyond the newest FAILED_EXPORTS_KEPT, and finished exports older than
  EXPORT_RETENTION, are deleted with their events and outputs.
- Uploads (UploadService) older than UPLOAD_RETENTION that no export used are removed: their
  parts (the multipart upload aborted) or their object. Here rather than in the server: the
  round runs on one worker at a time under the reconciler lock, beside export retention, and
  the server stays free of storage clean-up work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from sparc_video.core.errors import ExportNotFound, SparcVideoError
from sparc_video.core.settings import Settings
from sparc_video.exports.event_log import EventKind
from sparc_video.exports.models import ExportRecord, ExportState
from sparc_video.exports.queue import ExportQueue
from sparc_video.exports.records import ExportStore
from sparc_video.storage import Storage
from sparc_video.uploads import Uploads

log = logging.getLogger(__name__)

PRUNE_BATCH = 100
# Who deletes expired exports, as the audit log names it.
RETENTION_PRINCIPAL = "system:retention"


@dataclass
class RoundReport:
    recovered: int = 0
    requeued: int = 0
    pruned: int = 0
    uploads_removed: int = 0


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        store: ExportStore,
        queue: ExportQueue,
        storage: Storage,
        uploads: Uploads | None = None,
    ) -> None:
        self._settings = settings
        self._uploads = uploads
        self._store = store
        self._queue = queue
        self._storage = storage

    async def run_forever(self) -> None:
        while True:
            try:
                report = await self.run_once()
                if report.recovered or report.requeued or report.pruned or report.uploads_removed:
                    log.info("reconciler: %s", report)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or storage down: try again next round
                log.warning("reconciler round failed: %s", exc)
            await asyncio.sleep(self._settings.reconcile_interval_s)

    async def run_once(self) -> RoundReport:
        report = RoundReport()
        lock_ms = max(1000, int(self._settings.reconcile_interval_s * 1000))
        redis = self._store.redis
        if not await redis.set(self._store.keys.reconciler_lock, "1", nx=True, px=lock_ms):
            return report
        for export_id in await self._store.ids([ExportState.RUNNING]):
            if await self._store.lease_holder(export_id) is None:
                report.recovered += await self._recover(export_id)
        for export_id in await self._store.ids([ExportState.QUEUED, ExportState.RETRYING]):
            report.requeued += await self._ensure_queued(export_id)
        report.pruned += await self._prune()
        if self._uploads is not None:
            report.uploads_removed += await self._uploads.sweep()
        return report

    async def _recover(self, export_id: str) -> int:
        def to_queued(record: ExportRecord) -> str | None:
            if record.state != ExportState.RUNNING:
                return None
            record.state = ExportState.QUEUED
            record.worker_id = ""
            return EventKind.STATE_CHANGED

        try:
            record = await self._store.update(export_id, to_queued)
        except ExportNotFound:
            return 0
        if record.state != ExportState.QUEUED:
            return 0
        # A lease may have been taken meanwhile by a new attempt: then leave its job alone.
        if await self._store.lease_holder(export_id) is not None:
            return 0
        log.warning("export %s lost its worker during attempt %d", export_id, record.attempt)
        await self._queue.requeue(export_id, priority=record.priority)
        return 1

    async def _ensure_queued(self, export_id: str) -> int:
        if await self._queue.is_queued(export_id):
            return 0
        try:
            # Also puts the record back into Redis when Redis lost it (watchers see it again).
            record = await self._store.restore(export_id)
        except ExportNotFound:
            return 0
        if record.state.terminal or await self._store.lease_holder(export_id) is not None:
            return 0
        log.warning("export %s is %s with no job queued; queueing it", export_id, record.state)
        await self._queue.requeue(
            export_id, not_before=record.next_attempt_time, priority=record.priority
        )
        return 1

    async def _prune(self) -> int:
        pruned = 0
        counts = await self._store.count_by_state()
        excess = counts[ExportState.FAILED] - self._settings.failed_exports_kept
        if excess > 0:
            for record in await self._store.oldest(ExportState.FAILED, min(excess, PRUNE_BATCH)):
                pruned += await self._delete(record)
        if self._settings.export_retention_s:
            cutoff = time.time() - self._settings.export_retention_s
            for state in (ExportState.SUCCEEDED, ExportState.FAILED, ExportState.CANCELLED):
                for record in await self._store.oldest(state, PRUNE_BATCH):
                    if record.create_time > cutoff:
                        break  # oldest first, and an export ends after it is created
                    if (record.end_time or record.create_time) <= cutoff:
                        pruned += await self._delete(record)
        return pruned

    async def _delete(self, record: ExportRecord) -> int:
        if not record.state.terminal:
            return 0
        with contextlib.suppress(SparcVideoError):
            await self._storage.delete_prefix(f"exports/{record.id}/")
        await self._store.delete(record, RETENTION_PRINCIPAL)
        return 1
