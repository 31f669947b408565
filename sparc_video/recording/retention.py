"""The retention sweep of recorded segments: what a recorder wrote and its camera's retention
(RECORDING_RETENTION_DAYS unless the policy names one) has passed is deleted, object first,
then the row with its audit entry (principal `system:retention`). A segment an unfinished
export reads (its retention hold) is left for a later sweep. Uploaded recordings are never
swept: only what carries a recorder id.

One recorder sweeps at a time (a Redis lock with a TTL); any may, so the sweep survives the
death of one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sparc_video.cameras.records import CameraStore, RecordingInUse, RecordingRecord
from sparc_video.database.pool import Database
from sparc_video.storage import ManagedStorage

log = logging.getLogger(__name__)
PRINCIPAL = "system:retention"
DAY_NS = 24 * 3600 * 10**9
_BATCH = 500


@dataclass
class SweepResult:
    deleted: int = 0
    held: int = 0
    freed_bytes: int = 0


async def sweep(
    database: Database,
    cameras: CameraStore,
    storage: ManagedStorage,
    default_days: int,
    now_ns: int | None = None,
    forget: Callable[[str], Awaitable[None]] | None = None,
) -> SweepResult:
    """Delete every expired recorded segment that nothing holds; `forget(key)` is told of each
    deleted object (the storage-used accounting)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    result = SweepResult()
    rows = await database.fetch("SELECT id, retention_days FROM cameras ORDER BY id")
    for row in rows:
        cutoff = now_ns - (row["retention_days"] or default_days) * DAY_NS
        after = (-1, "")
        while True:
            found = await database.fetch(
                "SELECT record FROM recordings WHERE camera_id = $1 AND start_ns < $2 "
                "AND end_ns <= $2 AND record->>'recorder_id' <> '' "
                "AND (start_ns, id) > ($3, $4) ORDER BY start_ns, id LIMIT $5",
                row["id"],
                cutoff,
                after[0],
                after[1],
                _BATCH,
            )
            for item in found:
                record = RecordingRecord.from_json(item["record"])
                if await _delete(cameras, storage, record):
                    result.deleted += 1
                    result.freed_bytes += record.size_bytes
                    if forget is not None:
                        await forget(record.object_key)
                else:
                    result.held += 1
            if len(found) < _BATCH:
                break
            last = RecordingRecord.from_json(found[-1]["record"])
            after = (last.start_ns, last.id)
    if result.deleted or result.held:
        log.info(
            "retention: %d recorded segment(s) deleted (%d bytes), %d held by exports",
            result.deleted,
            result.freed_bytes,
            result.held,
        )
    return result


async def _delete(cameras: CameraStore, storage: ManagedStorage, record: RecordingRecord) -> bool:
    try:
        await cameras.holds.begin_delete(record.id, record.name)
    except RecordingInUse:
        return False
    deleted = False
    try:
        await storage.delete(record.object_key)
        await cameras.delete_recording(record, PRINCIPAL)
        deleted = True
    finally:
        await cameras.holds.end_delete(record.id, deleted=deleted)
    return True
