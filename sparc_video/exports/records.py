"""Export records: durable in PostgreSQL, live in Redis.

PostgreSQL (`catalog.ExportCatalog`) holds the truth; every durable change (creation, state
changes, outputs, download grants, deletion) commits there first. Redis holds a copy of the
record for the hot paths, the export's event stream (`WatchExport` replays it), its lease and
its progress, which never goes to PostgreSQL.

- A durable write names the revision it read; PostgreSQL refuses it when another writer
  committed first (the fencing of state changes), then Redis gets the record and its event
  in one script that only ever replaces an older revision (`live_scripts.PUT`). A writer
  that finds PostgreSQL ahead of Redis (a writer between its two steps, or a Redis that lost
  its data) copies PostgreSQL's record to Redis and tries again on it.
- A progress write replaces the Redis record only if it is still the one it read
  (`live_scripts.PROGRESS`, compare-and-set on the whole value), so it never undoes a
  durable write.
- Creation holds the recordings it reads (`retention_holds` rows, in its transaction: a
  recording gone or being deleted rolls it back), commits, and only then writes the Redis
  part (record, event, job): a job on the queue always finds its row (written inside the
  transaction, a fast worker could take the job before the commit, find nothing and drop
  it). When that Redis write fails the export is committed all the same: the reconciler
  queues it from PostgreSQL, as it does after Redis lost its queue.
- Reads use Redis and fall back to PostgreSQL: finished records expire from Redis with their
  events, and a flushed Redis loses nothing (the reconciler re-queues unfinished exports).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sparc_video.audit import Action, AuditEntry
from sparc_video.core.errors import ExportNotFound, FailedPrecondition, ResourceExhausted
from sparc_video.core.keys import Keys
from sparc_video.database.pool import Connection, Database
from sparc_video.exports.catalog import ExportCatalog, ExportFilter, InTransaction
from sparc_video.exports.event_log import (
    EventKind,
    ExportEvent,
    decode_event,
    decode_record,
    encode_record,
    event_id_key,
)
from sparc_video.exports.leases import RELEASE_LEASE, RENEW_LEASE, Lease, LeaseHeld
from sparc_video.exports.live_scripts import CREATE, PROGRESS, PUT
from sparc_video.exports.models import ExportRecord, ExportState
from sparc_video.exports.worker_registry import WorkerRegistry

log = logging.getLogger(__name__)

# Events kept per export: enough for any watcher that reconnects within the progress of a job
# (progress is published about twice a second) while bounding memory.
EVENT_STREAM_MAXLEN = 2000
# What RetryInfo suggests to a principal at its queued-export limit: exports take a while.
QUEUED_QUOTA_RETRY_S = 30.0

# One Redis command as its words, e.g. ("SADD", key, member).
Command = tuple[str | bytes | int | float, ...]


class RecordingUnavailable(FailedPrecondition):
    """A recording an export would read was deleted (or is being deleted) meanwhile."""

    reason = "RECORDING_DELETED"


class StaleWrite(FailedPrecondition):
    """The record moved on under a writer (a newer attempt, another state): the write is refused."""

    reason = "STALE_WRITE"


class ExportStore:
    """Reads and writes export records; every write appends an event to the export's stream."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        database: Database,
        *,
        event_retention_s: int,
    ) -> None:
        self.workers = WorkerRegistry(redis, keys)
        self.catalog = ExportCatalog(database)
        self._redis = redis
        self.keys = keys
        self._event_retention_s = event_retention_s
        self._create = redis.register_script(CREATE)
        self._put = redis.register_script(PUT)
        self._progress = redis.register_script(PROGRESS)

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def create(
        self,
        record: ExportRecord,
        *,
        max_unfinished: int = 0,
        also: Sequence[Command] = (),
    ) -> tuple[ExportRecord, bool]:
        """Store a new QUEUED export. With a request_id its requester used before, return that
        export instead. With `max_unfinished`, refuse (ResourceExhausted) when the requester
        already has that many unfinished exports; the requester's creates are serialised in
        PostgreSQL, so replicas creating at once cannot overshoot. `also` (the export's job on
        the queue) is written to Redis with the record, only when the export is created.

        The recordings the export reads (`record.recording_holds`) get a hold in the same
        transaction, which fails with RecordingUnavailable if one of them is gone or being
        deleted: an export never starts on footage a DeleteRecording is removing.

        Returns (record, created).
        """
        now = time.time()
        record.create_time = record.update_time = now
        record.revision = 1
        # Encoded once: PostgreSQL's row and Redis's copy (and its first event) are this text.
        encoded = encode_record(record)
        audit = AuditEntry(
            record.requester,
            Action.EXPORT_CREATE,
            record.name,
            record.case_id,
            {"purpose": record.purpose, "source": record.recording or record.source_key},
        )
        catalog = self.catalog
        if max_unfinished or record.recording_holds:
            async with catalog.database.transaction() as connection:
                if max_unfinished:
                    existing = await self._check_quota(connection, record, max_unfinished)
                    if existing is not None:
                        return await self.get(existing), False
                created = await catalog.insert(record, encoded, audit, connection)
                if created:
                    await self._hold(connection, record)
        else:
            # The common create: one statement, no transaction, no lock; the unique
            # (requester, request_id) index settles concurrent creates of one request.
            created = await catalog.insert(record, encoded, audit)
        if not created:
            existing = await catalog.request_owner(record.requester, record.request_id)
            if existing is None:  # created, then deleted (retention) since: a new request
                return await self.create(record, max_unfinished=max_unfinished, also=also)
            return await self.get(existing), False
        try:
            await self._create_in_redis(record, encoded, also, now)
        except (RedisError, OSError) as exc:
            # Committed is acknowledged: the reconciler's next round finds the QUEUED row with
            # no job and queues it; reads fall back to PostgreSQL until then.
            log.warning(
                "export %s committed but not queued (%s); the reconciler queues it", record.id, exc
            )
        return record, True

    async def _check_quota(
        self, connection: Connection, record: ExportRecord, max_unfinished: int
    ) -> str | None:
        """With the requester's creates serialised (a transaction-scoped advisory lock, taken
        only here: without a quota the unique index alone settles request ids), the export its
        request_id names already, if any (a retry gets it even at the quota), else None; or
        ResourceExhausted when it has `max_unfinished` unfinished exports."""
        catalog = self.catalog
        await catalog.lock_requester(connection, record.requester)
        existing, unfinished = await catalog.owner_and_unfinished(
            connection, record.requester, record.request_id
        )
        if existing is None and unfinished >= max_unfinished:
            raise ResourceExhausted(
                f"{record.requester!r} already has {max_unfinished} unfinished "
                "exports (QUOTA_MAX_QUEUED_EXPORTS); wait for one to finish or "
                "cancel one",
                subject=f"principal:{record.requester}",
                retry_after_s=QUEUED_QUOTA_RETRY_S,
                reason="QUEUED_EXPORTS_QUOTA",
            )
        return existing

    async def _hold(self, connection: Connection, record: ExportRecord) -> None:
        unavailable = await self.catalog.hold_recordings(
            connection, record.id, record.recording_holds
        )
        if unavailable is not None:
            raise RecordingUnavailable(
                f"recording {unavailable} was deleted or is being deleted; "
                "create the export again to use the footage that is left"
            )

    async def _create_in_redis(
        self, record: ExportRecord, encoded: str, also: Sequence[Command], now: float
    ) -> None:
        writes: list[Command] = [
            ("SET", self.keys.export(record.id), encoded),
            (
                "XADD",
                self.keys.events(record.id),
                "MAXLEN",
                "~",
                EVENT_STREAM_MAXLEN,
                "*",
                "kind",
                EventKind.STATE_CHANGED,
                "time",
                repr(now),
                "record",
                encoded,
            ),
            *also,
        ]
        args: list[Any] = []
        for command in writes:
            args.append(len(command))
            args += command
        await self._create(args=args)

    async def request_owner(self, requester: str, request_id: str) -> str | None:
        """The id of the export a principal's request_id created, if any."""
        return await self.catalog.request_owner(requester, request_id)

    async def get(self, export_id: str) -> ExportRecord:
        raw = await self._redis.get(self.keys.export(export_id))
        if raw is not None:
            return decode_record(raw)
        record = await self.catalog.get(export_id)
        if record is None:
            raise ExportNotFound(f"export {export_id!r} does not exist")
        return record

    async def get_with_last_event(self, export_id: str) -> tuple[ExportRecord, str]:
        """The record and the id of the newest event at the same instant ("0-0" when Redis
        holds no events of it: a finished export read from PostgreSQL)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.export(export_id))
            pipe.xrevrange(self.keys.events(export_id), count=1)
            raw, last = await pipe.execute()
        if raw is None:
            return await self.get(export_id), "0-0"
        last_id = last[0][0].decode() if last else "0-0"
        return decode_record(raw), last_id

    async def events_after(self, export_id: str, after_id: str) -> list[ExportEvent] | None:
        """Events newer than after_id, or None when after_id is older than what is retained."""
        key = self.keys.events(export_id)
        first = await self._redis.xrange(key, count=1)
        if not first:
            return None
        # Only when the oldest retained event is not newer than after_id is nothing missing.
        if event_id_key(first[0][0].decode()) > event_id_key(after_id):
            return None
        entries = await self._redis.xrange(key, min=f"({after_id}")
        return [decode_event(eid, fields) for eid, fields in entries]

    async def update(
        self,
        export_id: str,
        change: Callable[[ExportRecord], str | None],
        *,
        acquire: Lease | None = None,
        release: Lease | None = None,
        audit: Callable[[ExportRecord], Iterable[AuditEntry]] | None = None,
        also: InTransaction | None = None,
    ) -> ExportRecord:
        """Apply `change` to the current record and store it with an event.

        `change` mutates the record in place and returns the event kind, or None to write
        nothing. It may raise (e.g. StaleWrite) to refuse; it is re-run on the newer record
        when another writer got there first. A progress change (kind PROGRESS, same state, no
        lease action) is written to Redis only; every other change commits to PostgreSQL first,
        with the `audit` entries made from the changed record and `also` in its transaction.
        With `acquire`, the write takes the export's lease and fails with LeaseHeld while
        another token holds it; with `release`, it drops the lease if that token holds it.
        """
        record_key = self.keys.export(export_id)
        while True:
            raw, holder = await self._redis.mget(record_key, self.keys.lease(export_id))
            if raw is None:
                # Finished and expired from Redis, or Redis lost it: PostgreSQL has it.
                record = await self.get(export_id)
            else:
                record = decode_record(raw)
            read_revision, old_state = record.revision, record.state
            kind = change(record)
            if kind is None:
                return record
            if acquire and holder is not None and holder.decode() != acquire.token:
                raise LeaseHeld(f"export {export_id} is being run by {holder.decode()}")
            now = time.time()
            record.update_time = now
            durable = kind != EventKind.PROGRESS or old_state != record.state
            if not durable and raw is not None and not (acquire or release):
                if await self._write_progress(record, raw, kind, now):
                    return record
                continue
            record.revision = read_revision + 1
            saved = await self.catalog.save(
                record,
                read_revision=read_revision,
                old_state=old_state,
                audit=audit(record) if audit else (),
                also=also,
            )
            if not saved:
                await self._catch_up(export_id)
                continue
            lease_action, lease = ("acquire", acquire) if acquire else ("release", release)
            await self._put_in_redis(record, kind, now, lease_action if lease else "", lease)
            return record

    async def _write_progress(
        self, record: ExportRecord, read: bytes, kind: str, now: float
    ) -> bool:
        keys = [self.keys.export(record.id), self.keys.events(record.id)]
        args: list[Any] = [read, encode_record(record), kind, repr(now), EVENT_STREAM_MAXLEN]
        return bool(await self._progress(keys=keys, args=args))

    async def _put_in_redis(
        self, record: ExportRecord, kind: str, now: float, lease_action: str, lease: Lease | None
    ) -> None:
        keys = [
            self.keys.export(record.id),
            self.keys.events(record.id),
            self.keys.lease(record.id),
        ]
        args: list[Any] = [
            record.revision,
            encode_record(record),
            kind,
            repr(now),
            EVENT_STREAM_MAXLEN,
            self._event_retention_s if record.state.terminal else 0,
            lease_action,
            lease.token if lease else "",
            lease.ttl_ms if lease else 0,
        ]
        await self._put(keys=keys, args=args)

    async def _catch_up(self, export_id: str) -> None:
        """PostgreSQL is ahead of Redis: copy its record over (as a state event, so watchers
        see it) before trying again."""
        record = await self.catalog.get(export_id)
        if record is None:
            raise ExportNotFound(f"export {export_id!r} does not exist")
        await self._put_in_redis(record, EventKind.STATE_CHANGED, time.time(), "", None)

    async def restore(self, export_id: str) -> ExportRecord:
        """Bring Redis's copy of an export up to PostgreSQL's (after Redis lost it)."""
        await self._catch_up(export_id)
        return await self.get(export_id)

    async def renew_lease(self, export_id: str, lease: Lease) -> ExportState | None:
        """Extend our lease; the export's state, or None when the lease is no longer ours."""
        state = await self._redis.eval(  # type: ignore[misc]
            RENEW_LEASE,
            2,
            self.keys.lease(export_id),
            self.keys.export(export_id),
            lease.token,
            str(lease.ttl_ms),
        )
        return ExportState(state.decode() if isinstance(state, bytes) else state) if state else None

    async def release_lease(self, export_id: str, lease: Lease) -> None:
        await self._redis.eval(  # type: ignore[misc]
            RELEASE_LEASE, 1, self.keys.lease(export_id), lease.token
        )

    async def lease_holder(self, export_id: str) -> str | None:
        holder = await self._redis.get(self.keys.lease(export_id))
        return holder.decode() if holder is not None else None

    async def page(
        self, *, page_size: int, page_token: str, keep: ExportFilter
    ) -> tuple[list[ExportRecord], str]:
        """A page of exports matching `keep`, newest first, and the token of the next page
        ("" when last). Read from PostgreSQL (indexed); progress comes from Redis where live.
        """
        records, token = await self.catalog.page(
            page_size=page_size, page_token=page_token, keep=keep
        )
        live = [r.id for r in records if not r.state.terminal]
        if live:
            raws = await self._redis.mget([self.keys.export(i) for i in live])
            fresh = {r.id: r for r in (decode_record(raw) for raw in raws if raw is not None)}
            records = [fresh.get(r.id, r) for r in records]
        return records, token

    async def count_by_state(self) -> dict[ExportState, int]:
        return await self.catalog.count_by_state()

    async def oldest_in_state(self, state: ExportState) -> ExportRecord | None:
        oldest = await self.catalog.oldest(state, 1)
        return oldest[0] if oldest else None

    async def delete(self, record: ExportRecord, principal: str) -> None:
        """Forget an export (retention): its row (audited; its holds go with it), its events
        and lease."""
        await self.catalog.delete(
            record.id, AuditEntry(principal, Action.EXPORT_DELETE, record.name, record.case_id)
        )
        await self._forget_live(record)

    async def _forget_live(self, record: ExportRecord) -> None:
        """Remove the live copy: record, events and lease."""
        await self._redis.delete(
            self.keys.export(record.id), self.keys.events(record.id), self.keys.lease(record.id)
        )

    async def oldest(self, state: ExportState, count: int) -> list[ExportRecord]:
        """Up to `count` exports in `state`, oldest first."""
        return await self.catalog.oldest(state, count)

    async def ids(self, states: Iterable[ExportState]) -> list[str]:
        return await self.catalog.ids(states)
