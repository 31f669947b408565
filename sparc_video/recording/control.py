"""What the API reads and changes of a camera's continuous recording: its policy with the live
status beside it, a change to part of the policy, and the timeline. One object per service,
holding the database and Redis the recorders write to."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import redis.asyncio as aioredis

from sparc_video.core.keys import Keys
from sparc_video.database.pool import Database
from sparc_video.recording.fencing import PendingGap, newest_end
from sparc_video.recording.leases import LiveAddress, live_opener, read_live_address
from sparc_video.recording.policy import (
    RecordingMode,
    RecordingPolicy,
    get_policies,
    get_policy,
    set_policy,
)
from sparc_video.recording.reasons import GapReason
from sparc_video.recording.status import (
    RecordingState,
    RecordingStatus,
    read_status,
    watch_status,
)
from sparc_video.recording.timeline import Timeline, timeline

# The longest range one timeline request may cover.
MAX_TIMELINE_S = 31 * 24 * 3600


@dataclass(frozen=True)
class RecordingView:
    policy: RecordingPolicy
    status: RecordingStatus


@dataclass(frozen=True)
class PolicyChange:
    """The parts of a policy an update names; None: keep the stored value."""

    mode: RecordingMode | None = None
    segment_s: float | None = None
    # 0: back to the service default.
    retention_days: int | None = None

    def apply(self, policy: RecordingPolicy) -> RecordingPolicy:
        if self.mode is not None:
            policy = replace(policy, mode=self.mode)
        if self.segment_s is not None:
            policy = replace(policy, segment_s=self.segment_s)
        if self.retention_days is not None:
            policy = replace(policy, retention_days=self.retention_days or None)
        return policy


class RecordingControl:
    def __init__(self, database: Database, redis: aioredis.Redis, keys: Keys) -> None:
        self._database = database
        self._redis = redis
        self._keys = keys

    async def view(self, camera_id: str) -> RecordingView:
        policy = await get_policy(self._database, camera_id)
        return RecordingView(policy, await self._status(camera_id, policy))

    async def views(self, camera_ids: list[str]) -> dict[str, RecordingView]:
        """Each existing camera's view; cameras deleted meanwhile are left out."""
        policies = await get_policies(self._database, camera_ids)
        statuses = await asyncio.gather(
            *(self._status(camera_id, policy) for camera_id, policy in policies.items())
        )
        return {
            camera_id: RecordingView(policy, status)
            for (camera_id, policy), status in zip(policies.items(), statuses, strict=True)
        }

    async def update(self, camera_id: str, change: PolicyChange, principal: str) -> RecordingView:
        """The stored policy with `change` applied, checked and saved (audited)."""
        policy = change.apply(await get_policy(self._database, camera_id))
        policy = await set_policy(self._database, camera_id, policy, principal)
        return RecordingView(policy, await self._status(camera_id, policy))

    async def timeline(self, camera_id: str, start_ns: int, end_ns: int) -> Timeline:
        """The stored timeline, and while the camera's recorder is failing to record it, the
        gap still open: from its last recorded second to now, with the failure's reason. While
        it records, the timeline ends at its newest registered second."""
        await get_policy(self._database, camera_id)  # NOT_FOUND for an unknown camera
        status = await read_status(self._redis, self._keys, camera_id)
        ongoing = None
        # CONNECTING keeps the last error while it tries again after one.
        down = (RecordingState.FAILING, RecordingState.CONNECTING)
        if status is not None and status.state in down and status.last_error_reason:
            ongoing = PendingGap(GapReason(status.last_error_reason), status.last_error)
        if status is not None and status.state is RecordingState.RECORDING:
            # The time after the newest registered segment is in the segment being recorded (or
            # waiting in the buffer), not a gap: the timeline stops where the catalogue does.
            newest = await newest_end(self._database, camera_id)
            if newest is not None and newest < end_ns:
                end_ns = max(start_ns, newest)
        return await timeline(self._database, camera_id, start_ns, end_ns, ongoing, time.time_ns())

    async def watch(
        self, camera_id: str, after_event_id: str = ""
    ) -> AsyncIterator[tuple[str, RecordingStatus]]:
        """("", the status now) unless resuming, then (event id, status) for every change
        after `after_event_id` (empty: from now on) until the caller stops iterating."""
        after = after_event_id
        if not after:
            # The newest change before the status is read: none is lost between the two.
            newest = await self._redis.xrevrange(self._keys.recording_events(camera_id), count=1)
            after = newest[0][0].decode() if newest else "0"
            yield "", (await self.view(camera_id)).status
        else:
            await get_policy(self._database, camera_id)  # NOT_FOUND for an unknown camera
        async for event_id, status in watch_status(self._redis, self._keys, camera_id, after):
            yield event_id, status

    async def live_holder(self, camera_id: str) -> tuple[str, LiveAddress | None]:
        """The recorder holding the camera's lease (recording or live only) and where it serves
        live view (None: nowhere, or it is gone); for a camera nobody holds, the recorder to
        open it on demand (`live_opener`; "" when no recorder serves live view)."""
        holder = await self._redis.get(self._keys.recorder_lease(camera_id))
        recorder_id = holder.decode() if isinstance(holder, bytes) else (holder or "")
        if not recorder_id:
            # Nobody reads it (recording OFF): the recorder that will open it on demand when
            # the first viewer reaches its live port.
            return await live_opener(self._redis, self._keys, camera_id)
        return recorder_id, await read_live_address(self._redis, self._keys, recorder_id)

    async def _status(self, camera_id: str, policy: RecordingPolicy) -> RecordingStatus:
        status = await read_status(self._redis, self._keys, camera_id)
        if status is not None:
            return status
        # No recorder reported lately: off by policy, or waiting for one to take it.
        off = policy.mode == RecordingMode.OFF
        state = RecordingState.OFF if off else RecordingState.CONNECTING
        return RecordingStatus(camera_id, state)
