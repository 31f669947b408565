"""Which workers are alive, and what hardware encoders each found, from their heartbeats.

Every worker writes its heartbeat (a sorted set scored by time) every few seconds, with its
start-up hardware probe's summary once known; the server's health check, GetQueueStats and the
metrics count the workers seen within a window. Entries a day old are dropped as they are read.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from sparc_video.core.keys import Keys

_FORGET_AFTER_S = 24 * 3600


class WorkerRegistry:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self.keys = keys

    async def heartbeat(self, worker_id: str, hardware: str = "", signing_key_id: str = "") -> None:
        """`hardware`: the worker's hardware encoders, once its start-up probe has run;
        `signing_key_id`: the key it signs manifests with (the server checks it publishes it)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.keys.workers, {worker_id: time.time()})
            if hardware:
                pipe.hset(self.keys.worker_hardware, worker_id, hardware)
            if signing_key_id:
                pipe.hset(self.keys.worker_signing_keys, worker_id, signing_key_id)
            await pipe.execute()

    async def live(self, within_s: float = 30.0) -> int:
        """How many workers sent a heartbeat in the last `within_s` seconds."""
        now = time.time()
        gone = await self._redis.zrangebyscore(self.keys.workers, "-inf", now - _FORGET_AFTER_S)
        if gone:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys.workers, *gone)
                pipe.hdel(self.keys.worker_hardware, *gone)
                pipe.hdel(self.keys.worker_signing_keys, *gone)
                await pipe.execute()
        return int(await self._redis.zcount(self.keys.workers, now - within_s, "+inf"))

    async def hardware(self, within_s: float = 30.0) -> dict[str, int]:
        """How many live workers reported each hardware summary (workers still probing are
        not counted)."""
        return await self._count_live(self.keys.worker_hardware, within_s)

    async def signing_keys(self, within_s: float = 30.0) -> dict[str, int]:
        """How many live workers sign with each key id."""
        return await self._count_live(self.keys.worker_signing_keys, within_s)

    async def _count_live(self, field: str, within_s: float) -> dict[str, int]:
        live = await self._redis.zrangebyscore(self.keys.workers, time.time() - within_s, "+inf")
        if not live:
            return {}
        found: dict[str, int] = {}
        summaries = await self._redis.hmget(field, live)  # type: ignore[misc]
        for summary in summaries:
            if summary is not None:
                text = summary.decode() if isinstance(summary, bytes) else str(summary)
                found[text] = found.get(text, 0) + 1
        return found
