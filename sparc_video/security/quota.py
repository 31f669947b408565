"""Per-principal request rate limit, shared by every server replica through Redis.

Fixed one-minute windows: one INCR (and EXPIRE) per call, in one round trip. A burst at a
window's edge can reach twice the limit over a minute; the limit is about abuse and runaway
clients, not exact billing. The other quota, unfinished exports per principal, is checked in the
same transaction that creates an export (`records.ExportStore.create`).
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from sparc_video.core.errors import ResourceExhausted
from sparc_video.core.keys import Keys

WINDOW_S = 60


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, keys: Keys, per_minute: int) -> None:
        self._redis = redis
        self._keys = keys
        self._limit = per_minute

    async def hit(self, principal_id: str) -> None:
        """Count one call; ResourceExhausted (with when to retry) past the limit."""
        now = time.time()
        window = int(now // WINDOW_S)
        key = self._keys.principal_rate(principal_id, window)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2 * WINDOW_S)
            count, _ = await pipe.execute()
        if int(count) > self._limit:
            raise ResourceExhausted(
                f"{principal_id!r} made more than {self._limit} calls this minute "
                "(QUOTA_REQUESTS_PER_MINUTE); retry after the delay in RetryInfo",
                subject=f"principal:{principal_id}",
                retry_after_s=(window + 1) * WINDOW_S - now,
                reason="RATE_LIMITED",
            )
