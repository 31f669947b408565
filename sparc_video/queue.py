"""Putting exports on the arq queue and taking queued ones off it.

Jobs carry only the export id (the record holds everything else) and use it as arq's `_job_id`,
so a second enqueue of the same export is refused by arq instead of running it twice.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from arq.constants import job_key_prefix

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

    async def depth(self) -> int:
        return int(await self._pool.zcard(self._keys.queue))
