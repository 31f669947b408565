"""Recently seen source objects, so CreateExport does not ask storage about the same one each time.

A HEAD request to S3 costs more than the rest of CreateExport together (a network round trip to
the storage service, and request signing in Python). Exports tend to come in groups per source
(several thumbnails, a transcode and a trim of one clip), so a source found within the last few
seconds is taken as still there. Only hits are kept: a NOT_FOUND is never cached, so an upload
that completes right after a refused call is seen at once. A source deleted within the TTL lets
an export through that its worker then fails with SOURCE_NOT_FOUND, as it would had the source
been deleted a moment after the call.

Concurrent calls for a key that is not cached share one request to storage.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from sparc_video.storage import Storage
from sparc_video.storage.base import ObjectInfo

DEFAULT_TTL_S = 5.0
DEFAULT_MAX_ENTRIES = 10_000


class StatCache:
    def __init__(
        self,
        storage: Storage,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._storage = storage
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, ObjectInfo]] = OrderedDict()
        self._pending: dict[str, asyncio.Task[ObjectInfo]] = {}

    async def stat(self, key: str) -> ObjectInfo:
        """As Storage.stat, answered from memory when the key was found in the last ttl_s."""
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < self._ttl_s:
            return entry[1]
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = asyncio.create_task(self._fetch(key))
        # Shielded: one caller giving up (its RPC cancelled) must not fail the others.
        return await asyncio.shield(pending)

    async def _fetch(self, key: str) -> ObjectInfo:
        try:
            started = time.monotonic()
            info = await self._storage.stat(key)
            self._entries[key] = (started, info)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            return info
        except BaseException:
            self._entries.pop(key, None)
            raise
        finally:
            del self._pending[key]
