"""Where a test looks for leaked secrets: what Redis holds and what was logged."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import redis.asyncio as aioredis


async def redis_contents(client: aioredis.Redis, prefix: str) -> list[bytes]:
    """Every key under `prefix`, and the value of each string key."""
    found: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}:*"):
        found.append(key)
        if await client.type(key) == b"string":
            found.append(await client.get(key) or b"")
    return found


def assert_in_none(secrets: Iterable[str], blobs: Iterable[bytes]) -> None:
    for blob in blobs:
        for secret in secrets:
            assert secret.encode() not in blob, (secret, blob[:300])


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Each captured record's message, exception text and arguments, a line each."""
    return "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}"
        for record in caplog.records
    )
