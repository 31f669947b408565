"""Putting exports on the arq queue and taking queued ones off it.

Jobs carry only the export id (the record holds everything else) and use it as arq's `_job_id`,
so a second enqueue of the same export is refused by arq instead of running it twice.

Two things arq does not do are added here without changing its data layout (a plain arq worker
still runs these jobs):

- **Wake-ups.** Every enqueue also publishes on `Keys.queue_wakeup`; `workers.job.runner`'s worker
  waits on that channel instead of sleeping between polls, so an idle worker starts a job within
  a Redis round trip or two rather than a poll interval.
- **Priority.** arq's queue is one sorted set scored by the time a job becomes runnable, and
  workers take the lowest scores first. An interactive export is scored `head_start_s` earlier
  than its enqueue time, so it goes ahead of every batch export queued in that window. That is
  also the aging that keeps batch work from starving: a batch export that has waited longer than
  the head start is ahead of any interactive export queued after it.
"""

from __future__ import annotations

import time

from arq.connections import ArqRedis
from arq.constants import (
    expires_extra_ms,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
)
from arq.jobs import serialize_job

from sparc_video.core.keys import RUN_EXPORT_JOB, Keys
from sparc_video.exports.models import Priority
from sparc_video.exports.records import Command

# How far ahead of batch work an interactive export is queued; see the module docstring. An hour
# of batch backlog is jumped; batch work waits at most this long behind later interactive work.
INTERACTIVE_HEAD_START_S = 3600.0

# arq's enqueue_job (WATCH, EXISTS, MULTI, PSETEX, ZADD, EXEC) plus the wake-up in one atomic
# round trip: CreateExport pays one call to Redis for the queue instead of four.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
"""


class ExportQueue:
    def __init__(
        self, pool: ArqRedis, keys: Keys, *, head_start_s: float = INTERACTIVE_HEAD_START_S
    ) -> None:
        self._pool = pool
        self._keys = keys
        self._head_start_ms = int(head_start_s * 1000)
        self._enqueue = pool.register_script(_ENQUEUE)

    def score_ms(self, priority: Priority, not_before: float | None = None) -> int:
        """Queue position of a job: when it may run, minus the head start of interactive work.

        A job deferred to a later time (a retry's backoff) runs at that time, so it gets no head
        start: subtracting one would make it due early.
        """
        if not_before is not None and not_before > time.time():
            return int(not_before * 1000)
        now_ms = int(time.time() * 1000)
        return now_ms - self._head_start_ms if priority == Priority.INTERACTIVE else now_ms

    async def enqueue(
        self,
        export_id: str,
        *,
        priority: Priority = Priority.INTERACTIVE,
        defer_s: float | None = None,
    ) -> bool:
        """Queue the export's job; False when a job with its id is already queued or kept."""
        job_key, payload, expires_ms, score = self._job(export_id, priority, defer_s)
        created = await self._enqueue(
            keys=[job_key, result_key_prefix + export_id, self._keys.queue],
            args=[export_id, payload, expires_ms, score, self._keys.queue_wakeup],
        )
        return bool(created)

    def new_job_commands(
        self, export_id: str, *, priority: Priority = Priority.INTERACTIVE
    ) -> list[Command]:
        """The writes that queue a new export's job, for the transaction that creates the
        export (`ExportStore.create(also=...)`): the job exists exactly when the record does.
        Only for a fresh export id, which can have no job yet: unlike `enqueue` they do not
        check for one."""
        job_key, payload, expires_ms, score = self._job(export_id, priority, None)
        return [
            ("PSETEX", job_key, expires_ms, payload),
            ("ZADD", self._keys.queue, score, export_id),
            ("PUBLISH", self._keys.queue_wakeup, export_id),
        ]

    def _job(
        self, export_id: str, priority: Priority, defer_s: float | None
    ) -> tuple[str, bytes, int, int]:
        """arq's job key, its data, how long the data is kept (ms) and the queue score."""
        enqueue_time_ms = int(time.time() * 1000)
        not_before = time.time() + defer_s if defer_s else None
        score = self.score_ms(priority, not_before)
        payload = serialize_job(
            RUN_EXPORT_JOB,
            (export_id,),
            {},
            None,
            enqueue_time_ms,
            serializer=self._pool.job_serializer,
        )
        # As arq: the job data outlives the time it becomes runnable by a day.
        expires_ms = max(score, enqueue_time_ms) - enqueue_time_ms + expires_extra_ms
        return job_key_prefix + export_id, payload, expires_ms, score

    async def remove(self, export_id: str) -> bool:
        """Take a job that no worker has picked up off the queue. True when it was queued.

        A worker that picked the job up already sees the export's CANCELLED state instead; we
        never use arq's abort, since aborting an id that is not queued poisons a later job.
        """
        async with self._pool.pipeline(transaction=True) as pipe:
            pipe.zrem(self._keys.queue, export_id)
            pipe.delete(job_key_prefix + export_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def is_queued(self, export_id: str) -> bool:
        return await self._pool.zscore(self._keys.queue, export_id) is not None

    async def requeue(
        self,
        export_id: str,
        *,
        not_before: float | None = None,
        priority: Priority = Priority.INTERACTIVE,
    ) -> None:
        """Make sure a worker will pick the export up, whatever state arq's keys are in.

        Used by the reconciler for exports whose worker was lost (arq would only retry them when
        its in-progress key expires, i.e. after the longest job timeout) or whose job vanished
        (e.g. a Redis failover lost the queue).
        """
        await self._pool.delete(in_progress_key_prefix + export_id)
        if await self.is_queued(export_id):
            await self.wake_workers()
            return
        if await self._pool.exists(job_key_prefix + export_id):
            # The job's data is still there: put it back on the queue as it is.
            score = self.score_ms(priority, not_before)
            await self._pool.zadd(self._keys.queue, {export_id: score})
            await self.wake_workers()
            return
        defer = max(0.0, (not_before or 0) - time.time())
        await self.enqueue(export_id, priority=priority, defer_s=defer or None)

    async def wake_workers(self) -> None:
        """Have idle workers look at the queue now instead of at their next fallback poll."""
        await self._pool.publish(self._keys.queue_wakeup, b"")

    async def depth(self) -> int:
        return int(await self._pool.zcard(self._keys.queue))
