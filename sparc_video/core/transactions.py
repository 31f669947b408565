"""Optimistic Redis transactions (WATCH/MULTI/EXEC), written once.

`fn` gets a pipeline whose `keys` are watched, in immediate mode: it reads what it needs, then
calls `pipe.multi()` and queues its writes, and returns its result; `watched` runs EXEC. When a
watched key changed before EXEC, the whole of `fn` runs again on fresh reads, so `fn` must not
keep state between runs. Returning without `multi()` writes nothing; raising aborts (the
pipeline is reset, the keys unwatched).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

T = TypeVar("T")


async def watched(
    redis: aioredis.Redis, keys: list[str], fn: Callable[[Pipeline], Awaitable[T]]
) -> T:
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(*keys)
                result = await fn(pipe)
                if pipe.explicit_transaction:
                    await pipe.execute()
                else:
                    await pipe.reset()  # type: ignore[no-untyped-call]
                return result
            except WatchError:
                continue
