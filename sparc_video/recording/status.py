"""Each camera's live recording status in Redis: the value now (read by GetCamera) and a
capped stream of its changes (for WatchCamera), written by the recorder holding the camera.

The value expires unless rewritten (three lease TTLs): a dead recorder's cameras stop showing
"recording". A stream entry is added on every change of state or error, and at most every
STATS_EVENT_S while only the statistics move, so watchers see movement without a flood.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis.asyncio as aioredis

from sparc_video.core.keys import Keys

EVENTS_KEPT = 200
STATS_EVENT_S = 5.0


class RecordingState(enum.StrEnum):
    OFF = "off"
    CONNECTING = "connecting"
    RECORDING = "recording"
    FAILING = "failing"


@dataclass(frozen=True)
class RecordingStatus:
    camera_id: str
    state: RecordingState
    recorder_id: str = ""
    # The last failure, safe to show (no credentials), and its gap reason.
    last_error: str = ""
    last_error_reason: str = ""
    last_packet_ns: int | None = None
    bitrate_bps: float = 0.0
    fps: float = 0.0
    update_time: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> RecordingStatus:
        data: dict[str, Any] = json.loads(raw)
        data["state"] = RecordingState(data["state"])
        return cls(**data)


class StatusBoard:
    """Writes the statuses of the cameras one recorder holds."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_s: float) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = max(1000, int(ttl_s * 1000))
        self._last: dict[str, tuple[RecordingStatus, float]] = {}

    async def write(self, status: RecordingStatus) -> None:
        status = replace(status, update_time=time.time())
        previous = self._last.get(status.camera_id)
        changed = previous is None or (
            (previous[0].state, previous[0].last_error, previous[0].recorder_id)
            != (status.state, status.last_error, status.recorder_id)
        )
        publish = changed or previous is None or time.time() - previous[1] >= STATS_EVENT_S
        raw = status.to_json()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.recording_status(status.camera_id), raw, px=self._ttl_ms)
            if publish:
                pipe.xadd(
                    self._keys.recording_events(status.camera_id),
                    {"status": raw},
                    maxlen=EVENTS_KEPT,
                    approximate=True,
                )
            await pipe.execute()
        if publish:
            self._last[status.camera_id] = (status, time.time())
        else:
            self._last[status.camera_id] = (status, previous[1] if previous else time.time())

    def forget(self, camera_id: str) -> None:
        self._last.pop(camera_id, None)


async def read_status(redis: aioredis.Redis, keys: Keys, camera_id: str) -> RecordingStatus | None:
    """The camera's live status; None when no recorder wrote one recently (no recorder holds
    it: the caller says "off" or "connecting" from the camera's policy)."""
    raw = await redis.get(keys.recording_status(camera_id))
    return None if raw is None else RecordingStatus.from_json(raw)


async def watch_status(
    redis: aioredis.Redis, keys: Keys, camera_id: str, after_id: str = "$", block_ms: int = 5000
) -> AsyncIterator[tuple[str, RecordingStatus]]:
    """The camera's status changes after stream id `after_id` ("$": from now, "0": all kept),
    each with its id (to resume from); runs until the caller stops iterating."""
    key = keys.recording_events(camera_id)
    last = after_id
    if last == "$":
        newest = await redis.xrevrange(key, count=1)
        last = newest[0][0].decode() if newest else "0"
    while True:
        found = await redis.xread({key: last}, block=block_ms, count=100)
        for _, entries in found:
            for entry_id, fields in entries:
                last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                yield last, RecordingStatus.from_json(fields[b"status"])
