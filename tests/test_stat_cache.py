"""CreateExport's cache of source lookups: hits are reused briefly, misses never are."""

from __future__ import annotations

import asyncio

import pytest

from sparc_video.core.errors import ObjectNotFound
from sparc_video.core.settings import Settings
from sparc_video.storage.base import ObjectInfo
from sparc_video.storage.local import LocalStorage
from sparc_video.storage.stat_cache import StatCache


class CountingStorage(LocalStorage):
    """The real local backend, counting how often it is asked."""

    stats = 0

    async def stat(self, key: str) -> ObjectInfo:
        self.stats += 1
        await asyncio.sleep(0.01)  # long enough for concurrent callers to overlap
        return await super().stat(key)


@pytest.fixture
def storage(local_settings: Settings) -> CountingStorage:
    return CountingStorage.from_settings(local_settings)  # type: ignore[return-value]


async def test_a_found_source_is_reused_until_the_ttl_ends(storage: CountingStorage) -> None:
    await storage.put_bytes("in/a.mp4", b"12345", "video/mp4")
    cache = StatCache(storage, ttl_s=0.2)
    infos = await asyncio.gather(*(cache.stat("in/a.mp4") for _ in range(10)))
    assert {info.size_bytes for info in infos} == {5}
    assert storage.stats == 1  # ten concurrent calls, one lookup
    await cache.stat("in/a.mp4")
    assert storage.stats == 1
    await asyncio.sleep(0.25)
    await storage.put_bytes("in/a.mp4", b"1234567", "video/mp4")
    assert (await cache.stat("in/a.mp4")).size_bytes == 7
    assert storage.stats == 2


async def test_a_missing_source_is_asked_for_again(storage: CountingStorage) -> None:
    cache = StatCache(storage, ttl_s=60)
    with pytest.raises(ObjectNotFound):
        await cache.stat("in/late.mp4")
    await storage.put_bytes("in/late.mp4", b"x", "video/mp4")
    assert (await cache.stat("in/late.mp4")).size_bytes == 1
    assert storage.stats == 2
