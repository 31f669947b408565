"""Which recorder records which camera: membership by heartbeat and one lease per camera in
Redis, shared out evenly.

Every recorder renews its membership (a sorted set scored by expiry) and its cameras' leases
(keys holding its id, with a TTL) every third of RECORDER_LEASE_TTL, and every
RECORDER_POLL_INTERVAL compares what it holds with its share: ceil(cameras / live recorders).
Above it, it lets the extras go (gracefully: the segment in progress is finished first);
below it, it takes free cameras. A dead recorder's membership and leases lapse after the TTL,
the others' share grows and they take its cameras within TTL + poll interval.

A lease says who should record; it does not fence. A recorder paused past its TTL may still
believe it holds a camera: PostgreSQL's fence (`fencing.py`) refuses its segments.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from sparc_video.core.keys import Keys

# Renew each lease held by ARGV[1] (KEYS: the leases) for ARGV[2] ms; return those still held.
_RENEW = """
local held = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[#held + 1] = i
  end
end
return held
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Membership: renew ARGV[1] until ARGV[2] (ms), forget the lapsed, list the live.
_HEARTBEAT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if ARGV[2] ~= '0' then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


@dataclass(frozen=True)
class Share:
    """What one balancing round decided for a recorder."""

    release: tuple[str, ...]
    take: tuple[str, ...]
    target: int


def share(
    wanted: Sequence[str],
    held: Iterable[str],
    free: Iterable[str],
    live_recorders: int,
    seed: str = "",
) -> Share:
    """Release what is no longer wanted and what is above the fair share, take free cameras
    up to it. Free cameras are tried in an order of this recorder's own (`seed`), so replicas
    starting together mostly reach for different ones."""
    target = math.ceil(len(wanted) / max(1, live_recorders))
    wanted_set = set(wanted)
    kept = sorted(c for c in held if c in wanted_set)
    unwanted = sorted(c for c in held if c not in wanted_set)
    extras = kept[target:] if len(kept) > target else []
    room = max(0, target - len(kept))
    candidates = sorted(c for c in free if c in wanted_set and c not in set(kept))
    random.Random(seed).shuffle(candidates)
    return Share(tuple(unwanted + extras), tuple(candidates[:room]), target)


class RecorderLeases:
    """One recorder's view of the leases in Redis."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        recorder_id: str,
        ttl_s: float,
        live_address: str = "",
    ) -> None:
        """`live_address`: where this recorder serves live view (`LiveAddress.encode`), kept
        beside its membership so the API can send viewers here; "" serves none."""
        self._redis = redis
        self._live_address = live_address
        self._keys = keys
        self.recorder_id = recorder_id
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._heartbeat = redis.register_script(_HEARTBEAT)

    async def heartbeat(self) -> list[str]:
        """Renew this recorder's membership; the live recorders (this one included)."""
        now = int(time.time() * 1000)
        members = await self._heartbeat(
            keys=[self._keys.recorders], args=[self.recorder_id, now + self.ttl_ms, now]
        )
        if self._live_address:
            await self._redis.set(
                self._keys.recorder_live_address(self.recorder_id),
                self._live_address,
                px=self.ttl_ms,
            )
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def leave(self) -> None:
        await self._redis.zrem(self._keys.recorders, self.recorder_id)
        await self._redis.delete(self._keys.recorder_live_address(self.recorder_id))

    async def acquire(self, camera_id: str) -> bool:
        taken = await self._redis.set(
            self._keys.recorder_lease(camera_id), self.recorder_id, nx=True, px=self.ttl_ms
        )
        return bool(taken)

    async def renew(self, camera_ids: Sequence[str]) -> set[str]:
        """Renew the leases; those still held (a lapsed or taken one is lost)."""
        if not camera_ids:
            return set()
        keys = [self._keys.recorder_lease(c) for c in camera_ids]
        held = await self._renew(keys=keys, args=[self.recorder_id, self.ttl_ms])
        return {camera_ids[int(i) - 1] for i in held}

    async def release(self, camera_id: str) -> None:
        await self._release(keys=[self._keys.recorder_lease(camera_id)], args=[self.recorder_id])

    async def holders(self, camera_ids: Sequence[str]) -> dict[str, str | None]:
        """Who holds each camera now (None: nobody)."""
        if not camera_ids:
            return {}
        values = await self._redis.mget([self._keys.recorder_lease(c) for c in camera_ids])
        return {
            c: (v.decode() if isinstance(v, bytes) else v)
            for c, v in zip(camera_ids, values, strict=True)
        }


@dataclass(frozen=True)
class LiveAddress:
    """Where a recorder serves live view, as viewers reach it."""

    grpc_target: str  # host:port of StreamCameraLive
    http_base_url: str  # the page, WebSocket and HLS

    def encode(self) -> str:
        return json.dumps({"grpc_target": self.grpc_target, "http_base_url": self.http_base_url})


async def read_live_address(
    redis: aioredis.Redis, keys: Keys, recorder_id: str
) -> LiveAddress | None:
    """The live address the recorder advertised with its last heartbeat; None when it serves
    no live view or its membership lapsed."""
    if not recorder_id:
        return None
    raw = await redis.get(keys.recorder_live_address(recorder_id))
    if raw is None:
        return None
    data = json.loads(raw)
    return LiveAddress(str(data["grpc_target"]), str(data["http_base_url"]))


async def live_opener(
    redis: aioredis.Redis, keys: Keys, camera_id: str
) -> tuple[str, LiveAddress | None]:
    """The recorder that should open a camera nobody holds for its viewers: of the live
    recorders serving live view, the one ranking first for this camera (rendezvous hashing, so
    every API replica sends a camera's viewers to the same recorder, and one recorder's
    departure moves only its own cameras). ("", None) when none serves live view."""
    now = int(time.time() * 1000)
    members = await redis.zrangebyscore(keys.recorders, now, "+inf")
    ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    def rank(recorder_id: str) -> bytes:
        return hashlib.sha256(f"{camera_id}\0{recorder_id}".encode()).digest()

    for recorder_id in sorted(ids, key=rank, reverse=True):
        address = await read_live_address(redis, keys, recorder_id)
        if address is not None:
            return recorder_id, address
    return "", None
