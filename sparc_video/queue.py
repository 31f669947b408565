"""Putting exports on the arq queue and taking queued ones off it.

Jobs carry only the export id (the record holds everything else) and use it as arq's `_job_id`,
so a second enqueue of the same export is refused by arq instead of running it twice.
"""

from __future__ import annotations

import time

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix

from sparc_video.keys import RUN_EXPORT_JOB, Keys


class ExportQueue:
    def __init__(self, pool: ArqRedis, keys: Keys) -> None:
        self._pool = pool
        self._keys = keys

    async def enqueue(self, export_id: str, *, defer_s: float | None = None) -> bool:
        """Queue the export's job; False when a job with its id is already queued or kept."""
        job = await self._pool.enqueue_job(
            RUN_EXPORT_JOB,
            export_id,
            _job_id=export_id,
            _queue_name=self._keys.queue,
            _defer_by=defer_s,
        )
        return job is not None

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

    async def requeue(self, export_id: str, *, not_before: float | None = None) -> None:
        """Make sure a worker will pick the export up, whatever state arq's keys are in.

        Used by the reconciler for exports whose worker was lost (arq would only retry them when
        its in-progress key expires, i.e. after the longest job timeout) or whose job vanished
        (e.g. a Redis failover lost the queue).
        """
        await self._pool.delete(in_progress_key_prefix + export_id)
        if await self.is_queued(export_id):
            return
        score_ms = int((not_before or time.time()) * 1000)
        if await self._pool.exists(job_key_prefix + export_id):
            # The job's data is still there: put it back on the queue as it is.
            await self._pool.zadd(self._keys.queue, {export_id: score_ms})
            return
        defer = max(0.0, (not_before or 0) - time.time())
        await self.enqueue(export_id, defer_s=defer or None)

    async def depth(self) -> int:
        return int(await self._pool.zcard(self._keys.queue))
