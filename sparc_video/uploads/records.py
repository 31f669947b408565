"""Upload records in Redis: one JSON value per upload, and a sorted set of when each is
removed unless an export uses it (the retention sweep reads it oldest first)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import LockError

from sparc_video.core.errors import NotFound, Unavailable
from sparc_video.core.keys import Keys
from sparc_video.uploads.models import UploadRecord

# Longest a completion (joining a multi-GB file in local storage) may hold an upload's lock.
LOCK_TTL_S = 15 * 60
LOCK_WAIT_S = 10.0


class UploadNotFound(NotFound):
    reason = "UPLOAD_NOT_FOUND"


class UploadStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, record: UploadRecord) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.upload(record.id), record.to_json())
            pipe.zadd(self.keys.upload_expiry, {record.id: record.expire_time})
            await pipe.execute()

    async def get(self, upload_id: str) -> UploadRecord:
        raw = await self.redis.get(self.keys.upload(upload_id))
        if raw is None:
            raise UploadNotFound(f"upload {upload_id!r} does not exist")
        return UploadRecord.from_json(raw)

    async def save(self, record: UploadRecord, *, keep_s: int = 0) -> None:
        """Write the record back; `keep_s` > 0: it expires then (cancelled uploads)."""
        await self.redis.set(self.keys.upload(record.id), record.to_json(), ex=keep_s or None)

    async def unschedule(self, upload_id: str) -> None:
        """Retention no longer removes the upload (used by an export, or cancelled)."""
        await self.redis.zrem(self.keys.upload_expiry, upload_id)

    async def due(self, now: float, limit: int) -> list[str]:
        """Ids of uploads whose retention ended by `now`, oldest first."""
        ids = await self.redis.zrangebyscore(
            self.keys.upload_expiry, "-inf", now, start=0, num=limit
        )
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def delete(self, upload_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.upload(upload_id))
            pipe.zrem(self.keys.upload_expiry, upload_id)
            await pipe.execute()

    @contextlib.asynccontextmanager
    async def locked(self, upload_id: str, *, wait_s: float = LOCK_WAIT_S) -> AsyncIterator[None]:
        """Hold the upload's lock: completing, cancelling, claiming and removing it exclude
        each other, across server replicas and workers. Unavailable when it stays busy."""
        lock = self.redis.lock(
            self.keys.upload_lock(upload_id), timeout=LOCK_TTL_S, blocking_timeout=wait_s
        )
        if not await lock.acquire():
            raise Unavailable(f"upload {upload_id!r} is busy (being completed?); try again")
        try:
            yield
        finally:
            with contextlib.suppress(LockError):
                await lock.release()
