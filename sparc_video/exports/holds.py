"""Retention holds: a recording read by an unfinished export cannot be deleted.

CreateExport adds the export's id to each recording's hold set in the transaction that stores
the export (`ExportStore.create`), and the write that ends the export removes it
(`ExportStore._write_commands`), whichever path ends it: the worker, CancelExport, or a lost
attempt's cleanup. Deleting a recording first marks it as being deleted, in a transaction that
watches its hold set, and only then removes its object: an export created meanwhile finds the
mark and is refused, and a hold added meanwhile aborts the mark.

Crash safety: holds live with the export records in Redis, so nothing is lost when a server or
worker dies. A hold whose export is gone or already ended (which no code path should leave, but
a restore from an older dump could) does not block a deletion: it is dropped when found.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from sparc_video.core.errors import FailedPrecondition
from sparc_video.core.keys import Keys
from sparc_video.core.transactions import watched
from sparc_video.exports.event_log import decode_record

# A deletion interrupted between its mark and its end leaves the mark this long: until then
# exports cannot use the recording; DeleteRecording can be repeated at once.
DELETING_MARK_TTL_S = 600


class RecordingInUse(FailedPrecondition):
    reason = "RECORDING_IN_USE"


class RecordingHolds:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def begin_delete(self, recording_id: str, recording_name: str) -> None:
        """Mark the recording as being deleted, or raise RecordingInUse naming an export."""
        holds = self._keys.recording_holds(recording_id)

        async def mark(pipe: Pipeline) -> None:
            members = await pipe.smembers(holds)  # type: ignore[misc]
            ids = sorted(m.decode() for m in members)
            live, stale = await self._split(ids, pipe)
            if live:
                more = f" (and {len(live) - 1} more)" if len(live) > 1 else ""
                raise RecordingInUse(
                    f"recording {recording_name} is used by export exports/{live[0]}"
                    f"{more}, which has not finished; delete it once the export "
                    "ends, or cancel the export"
                )
            pipe.multi()  # type: ignore[no-untyped-call]
            if stale:
                pipe.srem(holds, *stale)
            pipe.set(self._keys.recording_deleting(recording_id), "1", ex=DELETING_MARK_TTL_S)

        await watched(self._redis, [holds], mark)

    async def end_delete(self, recording_id: str, *, deleted: bool) -> None:
        """The deletion finished (`deleted`: drop the hold set too) or failed: drop the mark."""
        keys = [self._keys.recording_deleting(recording_id)]
        if deleted:
            keys.append(self._keys.recording_holds(recording_id))
        await self._redis.delete(*keys)

    async def _split(self, ids: list[str], client: aioredis.Redis) -> tuple[list[str], list[str]]:
        """(exports not yet ended, ids of ended or forgotten exports)."""
        if not ids:
            return [], []
        raws = await client.mget([self._keys.export(i) for i in ids])
        live: list[str] = []
        stale: list[str] = []
        for export_id, raw in zip(ids, raws, strict=True):
            if raw is None or decode_record(raw).state.terminal:
                stale.append(export_id)
            else:
                live.append(export_id)
        return live, stale
