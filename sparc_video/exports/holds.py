"""Retention holds: a recording read by an unfinished export cannot be deleted.

CreateExport inserts a `retention_holds` row per recording it reads in the transaction that
stores the export (`ExportCatalog.hold_recordings`), and the write that ends the export deletes
them (`ExportCatalog.save`), whichever path ends it: the worker, CancelExport, or a lost
attempt's cleanup. The foreign key (RESTRICT) makes the database itself refuse to delete a
held recording.

Deleting a recording first marks it (`recordings.deleting_until`) with its row locked FOR
UPDATE, after checking it has no hold, and only then removes its object: an export's create
locks the rows it holds FOR SHARE, so it either committed its hold before the mark (and the
deletion is refused) or reads the mark afterwards (and the export is refused).

Crash safety: holds are rows in PostgreSQL; a flushed Redis loses none. A deletion that died
between its mark and its end leaves the mark until it lapses (DELETING_MARK_TTL_S). A hold whose
export already ended (which no code path should leave) does not block a deletion: it is dropped
when found.
"""

from __future__ import annotations

from sparc_video.cameras.records import RecordingInUse
from sparc_video.database.pool import Database
from sparc_video.exports.models import ExportState

__all__ = ["DELETING_MARK_TTL_S", "RecordingHolds", "RecordingInUse"]

# A deletion interrupted between its mark and its end leaves the mark this long: until then
# exports cannot use the recording; DeleteRecording can be repeated at once.
DELETING_MARK_TTL_S = 600

_TERMINAL = [s.value for s in ExportState if s.terminal]


class RecordingHolds:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def begin_delete(self, recording_id: str, recording_name: str) -> None:
        """Mark the recording as being deleted, or raise RecordingInUse naming a holder."""
        async with self._database.transaction() as connection:
            found = await connection.fetchval(
                "SELECT 1 FROM recordings WHERE id = $1 FOR UPDATE", recording_id
            )
            if found is None:
                return  # gone already: the deletion that follows finds nothing to do
            rows = await connection.fetch(
                "SELECT h.id, h.export_id, h.case_id, e.state = ANY($2::text[]) AS ended "
                "FROM retention_holds h LEFT JOIN exports e ON e.id = h.export_id "
                "WHERE h.recording_id = $1 ORDER BY h.export_id NULLS FIRST, h.id",
                recording_id,
                _TERMINAL,
            )
            stale = [row["id"] for row in rows if row["export_id"] is not None and row["ended"]]
            live = [row for row in rows if row["id"] not in stale]
            if live:
                first = live[0]
                more = f" (and {len(live) - 1} more)" if len(live) > 1 else ""
                if first["export_id"] is None:
                    raise RecordingInUse(
                        f"recording {recording_name} is held for case {first['case_id']!r}{more}"
                    )
                raise RecordingInUse(
                    f"recording {recording_name} is used by export exports/{first['export_id']}"
                    f"{more}, which has not finished; delete it once the export ends, or "
                    "cancel the export"
                )
            if stale:
                await connection.execute(
                    "DELETE FROM retention_holds WHERE id = ANY($1::bigint[])", stale
                )
            await connection.execute(
                "UPDATE recordings SET deleting_until = now() + make_interval(secs => $2) "
                "WHERE id = $1",
                recording_id,
                float(DELETING_MARK_TTL_S),
            )

    async def end_delete(self, recording_id: str, *, deleted: bool) -> None:
        """The deletion failed: lift the mark (a deleted recording took it with its row)."""
        if not deleted:
            await self._database.execute(
                "UPDATE recordings SET deleting_until = NULL WHERE id = $1", recording_id
            )
