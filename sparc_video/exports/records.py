"""Export records and their event streams in Redis.

Our records are the truth about an export (state, attempt, progress, outputs, error); arq's job
keys are only plumbing. Every change is written together with an event on the export's stream in
one MULTI/EXEC, guarded by WATCH on the record, so a watcher replaying the stream and a reader of
the record never disagree, and two writers never lose each other's update. The first write, the
create, is one script with its checks (request id, quota, recordings being deleted).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from sparc_video.core.errors import (
    ExportNotFound,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
)
from sparc_video.core.keys import Keys
from sparc_video.core.transactions import watched
from sparc_video.exports.event_log import (
    EventKind,
    ExportEvent,
    decode_event,
    decode_record,
    encode_record,
    event_id_key,
)
from sparc_video.exports.leases import RELEASE_LEASE, RENEW_LEASE, Lease, LeaseHeld
from sparc_video.exports.models import ExportRecord, ExportState
from sparc_video.exports.worker_registry import WorkerRegistry

# Events kept per export: enough for any watcher that reconnects within the progress of a job
# (progress is published about twice a second) while bounding memory.
EVENT_STREAM_MAXLEN = 2000

REQUEST_ID_TTL_S = 7 * 24 * 3600
# What RetryInfo suggests to a principal at its queued-export limit: exports take a while.
QUEUED_QUOTA_RETRY_S = 30.0
# Records one ListExports call reads at most while filtering a principal's exports by state.
_OWNER_SCAN_LIMIT = 5000


# One Redis command as its words, e.g. ("SADD", key, member).
Command = tuple[str | bytes | int | float, ...]

# ExportStore.create's checks and writes in one round trip. ARGV: the request key ('' for none),
# the principal's unfinished set and its limit (0 for none), the number of recordings to hold
# and each one's record and deleting keys, then the writes: their number, and each as its
# number of words followed by the words. The keys are named in ARGV, not KEYS: the service
# runs on one Redis (no cluster), and one script serves every shape of create.
_CREATE = """
local request_key = ARGV[1]
if request_key ~= '' then
  local existing = redis.call('GET', request_key)
  if existing then return {'existing', existing} end
end
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('SCARD', ARGV[2]) >= limit then return {'quota'} end
local i = 5
for r = 1, tonumber(ARGV[4]) do
  if redis.call('EXISTS', ARGV[i]) == 0 or redis.call('EXISTS', ARGV[i + 1]) == 1 then
    return {'recording', r}
  end
  i = i + 2
end
local writes = tonumber(ARGV[i])
i = i + 1
for _ = 1, writes do
  local words = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + words))
  i = i + words + 1
end
return {'created'}
"""


class RecordingUnavailable(FailedPrecondition):
    """A recording an export would read was deleted (or is being deleted) meanwhile."""

    reason = "RECORDING_DELETED"


class StaleWrite(FailedPrecondition):
    """The record moved on under a writer (a newer attempt, another state): the write is refused."""

    reason = "STALE_WRITE"


class ExportStore:
    """Reads and writes export records; every write appends an event to the export's stream."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, event_retention_s: int) -> None:
        self.workers = WorkerRegistry(redis, keys)
        self._redis = redis
        self.keys = keys
        self._event_retention_s = event_retention_s
        self._create = redis.register_script(_CREATE)

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
        already has that many unfinished exports; the check and the write are one transaction,
        so replicas creating at once cannot overshoot. `also` (the export's job on the queue)
        is written in the same transaction, only when the export is created.

        The recordings the export reads (`record.recording_holds`) get a hold in the same
        transaction, which fails with RecordingUnavailable if one of them is gone or being
        deleted: an export never starts on footage a DeleteRecording is removing.

        One round trip: the checks and the writes run in one script (`_CREATE`).

        Returns (record, created).
        """
        now = time.time()
        record.create_time = record.update_time = now
        request_key = (
            self.keys.request(record.requester, record.request_id) if record.request_id else ""
        )
        holds = record.recording_holds
        writes: list[Command] = [
            ("SADD", self.keys.recording_holds(recording_id), record.id) for recording_id in holds
        ]
        if request_key:
            writes.append(("SET", request_key, record.id, "EX", REQUEST_ID_TTL_S))
        writes += self._write_commands(record, EventKind.STATE_CHANGED, None, now)
        writes += also
        args: list[Any] = [
            request_key,
            self.keys.principal_unfinished(record.requester),
            max_unfinished,
            len(holds),
        ]
        for recording_id in holds:
            args += [self.keys.recording(recording_id), self.keys.recording_deleting(recording_id)]
        args.append(len(writes))
        for command in writes:
            args.append(len(command))
            args += command
        outcome = await self._create(args=args)
        verdict = outcome[0].decode()
        if verdict == "existing":
            return await self.get(outcome[1].decode()), False
        if verdict == "quota":
            raise ResourceExhausted(
                f"{record.requester!r} already has {max_unfinished} unfinished "
                "exports (QUOTA_MAX_QUEUED_EXPORTS); wait for one to finish or "
                "cancel one",
                subject=f"principal:{record.requester}",
                retry_after_s=QUEUED_QUOTA_RETRY_S,
                reason="QUEUED_EXPORTS_QUOTA",
            )
        if verdict == "recording":
            raise RecordingUnavailable(
                f"recording {holds[int(outcome[1]) - 1]} was deleted or is being deleted; "
                "create the export again to use the footage that is left"
            )
        return record, True

    async def request_owner(self, requester: str, request_id: str) -> str | None:
        """The id of the export a principal's request_id created, if any."""
        owner = await self._redis.get(self.keys.request(requester, request_id))
        return owner.decode() if owner is not None else None

    async def get(self, export_id: str) -> ExportRecord:
        raw = await self._redis.get(self.keys.export(export_id))
        if raw is None:
            raise ExportNotFound(f"export {export_id!r} does not exist")
        return decode_record(raw)

    async def get_with_last_event(self, export_id: str) -> tuple[ExportRecord, str]:
        """The record and the id of the newest event at the same instant."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.export(export_id))
            pipe.xrevrange(self.keys.events(export_id), count=1)
            raw, last = await pipe.execute()
        if raw is None:
            raise ExportNotFound(f"export {export_id!r} does not exist")
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
    ) -> ExportRecord:
        """Apply `change` to the current record and write it with an event, atomically.

        `change` mutates the record in place and returns the event kind, or None to write nothing.
        It may raise (e.g. StaleWrite) to refuse; it is re-run if the record changed meanwhile.
        With `acquire`, the write also takes the export's lease and fails with LeaseHeld while
        another token holds it; with `release`, it drops the lease if that token still holds it.
        """
        key = self.keys.export(export_id)
        lease_key = self.keys.lease(export_id)

        async def write(pipe: Pipeline) -> ExportRecord:
            raw, holder = await pipe.mget(key, lease_key)
            if raw is None:
                raise ExportNotFound(f"export {export_id!r} does not exist")
            record = decode_record(raw)
            old_state = record.state
            kind = change(record)
            if kind is None:
                return record
            if acquire and holder is not None and holder.decode() != acquire.token:
                raise LeaseHeld(f"export {export_id} is being run by {holder.decode()}")
            now = time.time()
            record.update_time = now
            pipe.multi()  # type: ignore[no-untyped-call]
            for command in self._write_commands(record, kind, old_state, now):
                pipe.execute_command(*command)
            if acquire:
                pipe.set(lease_key, acquire.token, px=acquire.ttl_ms)
            if release and holder is not None and holder.decode() == release.token:
                pipe.delete(lease_key)
            return record

        return await watched(self._redis, [key, lease_key], write)

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

    def _write_commands(
        self,
        record: ExportRecord,
        kind: str,
        old_state: ExportState | None,
        now: float,
    ) -> list[Command]:
        """The Redis commands that store a change of the record: the record, its indexes and
        the event. Plain commands, so a transaction and the create script run the same ones."""
        encoded = encode_record(record)
        commands: list[Command] = [("SET", self.keys.export(record.id), encoded)]
        unfinished = self.keys.principal_unfinished(record.requester)
        if old_state is None:
            commands.append(("ZADD", self.keys.all_exports, 0, record.id))
            if record.requester:
                commands.append(
                    ("ZADD", self.keys.principal_exports(record.requester), 0, record.id)
                )
                if not record.state.terminal:
                    commands.append(("SADD", unfinished, record.id))
        elif record.requester and record.state.terminal and not old_state.terminal:
            commands.append(("SREM", unfinished, record.id))
        if old_state != record.state:
            if old_state is not None:
                commands.append(("ZREM", self.keys.by_state(old_state), record.id))
            commands.append(("ZADD", self.keys.by_state(record.state), 0, record.id))
        events = self.keys.events(record.id)
        commands.append(
            (
                "XADD",
                events,
                "MAXLEN",
                "~",
                EVENT_STREAM_MAXLEN,
                "*",
                "kind",
                kind,
                "time",
                repr(now),
                "record",
                encoded,
            )
        )
        if record.state.terminal:
            commands.append(("EXPIRE", events, self._event_retention_s))
            # The export no longer reads its recordings: release them with the write that
            # ends it, whoever writes it (worker, CancelExport, a stale-attempt cleanup).
            commands += [
                ("SREM", self.keys.recording_holds(recording_id), record.id)
                for recording_id in record.recording_holds
            ]
        return commands

    async def page(
        self,
        *,
        page_size: int,
        page_token: str,
        state: ExportState | None,
        requester: str | None = None,
    ) -> tuple[list[ExportRecord], str]:
        """A page of exports, newest first, and the token of the next page ("" when last).

        With `requester`, only the exports that principal created.
        """
        if requester is not None:
            return await self._owner_page(page_size, page_token, state, requester)
        index = self.keys.by_state(state) if state else self.keys.all_exports
        after = _decode_page_token(page_token, index) if page_token else None
        upper = f"({after}" if after else "+"
        ids = await self._redis.zrevrangebylex(index, upper, "-", start=0, num=page_size + 1)
        page_ids = [i.decode() for i in ids[:page_size]]
        raws = await self._redis.mget([self.keys.export(i) for i in page_ids]) if page_ids else []
        records = [decode_record(raw) for raw in raws if raw is not None]
        next_token = _encode_page_token(page_ids[-1], index) if len(ids) > page_size else ""
        return records, next_token

    async def _owner_page(
        self, page_size: int, page_token: str, state: ExportState | None, requester: str
    ) -> tuple[list[ExportRecord], str]:
        # The principal's index holds every state: filter while reading. A page stops early
        # (with a token to go on) after _OWNER_SCAN_LIMIT records, so one call stays bounded.
        index = self.keys.principal_exports(requester)
        bound = f"{index}|{state or ''}"
        after = _decode_page_token(page_token, bound) if page_token else None
        upper = f"({after}" if after else "+"
        records: list[ExportRecord] = []
        scanned = 0
        batch = page_size + 1 if state is None else max(page_size + 1, 100)
        while True:
            ids = await self._redis.zrevrangebylex(index, upper, "-", start=0, num=batch)
            if not ids:
                return records, ""
            page_ids = [i.decode() for i in ids]
            raws = await self._redis.mget([self.keys.export(i) for i in page_ids])
            for export_id, raw in zip(page_ids, raws, strict=True):
                scanned += 1
                record = decode_record(raw) if raw is not None else None
                if record is not None and (state is None or record.state == state):
                    if len(records) == page_size:
                        # One more match exists: the page is full and there is a next one.
                        return records, _encode_page_token(records[-1].id, bound)
                    records.append(record)
                if scanned >= _OWNER_SCAN_LIMIT:
                    return records, _encode_page_token(export_id, bound)
            if len(ids) < batch:
                return records, ""
            upper = f"({page_ids[-1]}"

    async def count_by_state(self) -> dict[ExportState, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for state in ExportState:
                pipe.zcard(self.keys.by_state(state))
            counts = await pipe.execute()
        return dict(zip(ExportState, counts, strict=True))

    async def oldest_in_state(self, state: ExportState) -> ExportRecord | None:
        ids = await self._redis.zrangebylex(self.keys.by_state(state), "-", "+", start=0, num=1)
        if not ids:
            return None
        try:
            return await self.get(ids[0].decode())
        except ExportNotFound:
            return None

    async def delete(self, record: ExportRecord) -> None:
        """Forget an export: record, events, lease, index entries and its request_id."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(
                self.keys.export(record.id), self.keys.events(record.id), self.keys.lease(record.id)
            )
            pipe.zrem(self.keys.all_exports, record.id)
            pipe.zrem(self.keys.by_state(record.state), record.id)
            if record.request_id:
                pipe.delete(self.keys.request(record.requester, record.request_id))
            if record.requester:
                pipe.zrem(self.keys.principal_exports(record.requester), record.id)
                pipe.srem(self.keys.principal_unfinished(record.requester), record.id)
            for recording_id in record.recording_holds:
                pipe.srem(self.keys.recording_holds(recording_id), record.id)
            await pipe.execute()

    async def oldest(self, state: ExportState, count: int) -> list[str]:
        """Up to `count` ids in `state`, oldest first."""
        ids = await self._redis.zrangebylex(self.keys.by_state(state), "-", "+", start=0, num=count)
        return [i.decode() for i in ids]

    async def ids(self, states: Iterable[ExportState]) -> list[str]:
        found: list[str] = []
        for state in states:
            found += [
                i.decode() for i in await self._redis.zrange(self.keys.by_state(state), 0, -1)
            ]
        return found


# Page tokens are opaque to clients (AIP-158) but bound to the index they page through, so a
# token from a filtered listing cannot be replayed against another filter.
def _encode_page_token(last_id: str, index: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([last_id, index]).encode()).decode()


def _decode_page_token(token: str, index: str) -> str:
    try:
        last_id, token_index = json.loads(base64.urlsafe_b64decode(token.encode()))
        if token_index != index or not isinstance(last_id, str):
            raise ValueError
        return last_id
    except (ValueError, TypeError, json.JSONDecodeError):
        raise InvalidArgument(
            [FieldViolation("page_token", "not a token from a previous call with the same filter")]
        ) from None
