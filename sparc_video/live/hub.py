"""One hub per camera: the last fragments of its live stream, shared by every viewer.

The recorder holding the camera publishes into its hub (one camera connection however many
watch, as go2rtc does); viewers read the shared ring through cursors of their own, so a viewer
costs a cursor, not a queue. A viewer more than MAX_LAG fragments behind (a slow network, a
stalled client) skips to the newest keyframe instead of growing a backlog, and never holds up
the recorder or the other viewers.

Sequence numbers start at the hub's opening time in microseconds and count up by one per
fragment: a hub opened later (the camera taken over, the recorder restarted) numbers above any
earlier one, so `after_sequence` from an older hub never lands on an unrelated fragment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from sparc_video.core.errors import FailedPrecondition, Unavailable
from sparc_video.live.fragments import Fragment, InitSegment

RING_SIZE = 256
MAX_LAG = 50


@dataclass(frozen=True)
class SequencedFragment:
    sequence: int
    fragment: Fragment


class LiveEnded(Unavailable):
    """The hub closed under a viewer: the camera was let go or the recorder is stopping."""

    reason = "LIVE_STREAM_ENDED"


class NotRecordingHere(FailedPrecondition):
    """No hub for the camera in this process: nothing records it here."""

    reason = "CAMERA_NOT_RECORDING"


class LiveHub:
    def __init__(self, camera_id: str, ring_size: int = RING_SIZE, max_lag: int = MAX_LAG) -> None:
        self.camera_id = camera_id
        self.first_sequence = time.time_ns() // 1000
        self._next = self.first_sequence
        # A ring by sequence (slot = sequence % size): any fragment is found in O(1).
        self._slots: list[SequencedFragment | None] = [None] * ring_size
        self._oldest = self._next  # the oldest sequence still in the ring
        self._keyframe: int | None = None  # the newest keyframe's sequence
        self._max_lag = max_lag
        self.init: InitSegment | None = None
        # Bumped with each new init (a new run): viewers send the new init and start over.
        self.epoch = 0
        self._arrived = asyncio.Event()
        self.closed = False
        self.viewers = 0

    def publish_init(self, init: InitSegment) -> None:
        """A new run of the camera: fragments of the old init no longer decode after it."""
        self.init = init
        self.epoch += 1
        self._oldest, self._keyframe = self._next, None
        self._wake()

    def publish(self, fragment: Fragment) -> None:
        if self.init is None:
            return
        sequence = self._next
        self._slots[sequence % len(self._slots)] = SequencedFragment(sequence, fragment)
        self._next += 1
        self._oldest = max(self._oldest, self._next - len(self._slots))
        if fragment.keyframe:
            self._keyframe = sequence
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()

    @property
    def newest_sequence(self) -> int:
        return self._next - 1

    @property
    def oldest_sequence(self) -> int:
        """The oldest sequence the ring still holds (newest_sequence + 1 when it holds none)."""
        return self._oldest

    def fragment(self, sequence: int) -> SequencedFragment | None:
        """A fragment by sequence while the ring holds it (HLS reads segments this way)."""
        if not self._oldest <= sequence < self._next:
            return None
        return self._slots[sequence % len(self._slots)]

    async def changed(self) -> None:
        """Returns at the next fragment, init or close (a waiter adds its own deadline)."""
        await self._arrived.wait()

    def _newest_keyframe(self) -> int | None:
        keyframe = self._keyframe
        return keyframe if keyframe is not None and keyframe >= self._oldest else None

    def _start(self, after_sequence: int) -> int | None:
        """Where a viewer begins: just after `after_sequence` while the ring still holds it,
        else at the newest keyframe (None: no keyframe yet, wait for one)."""
        if self._oldest <= after_sequence + 1 <= self._next and self._oldest < self._next:
            return after_sequence + 1
        return self._newest_keyframe()

    def _catch_up(self, position: int | None) -> int | None:
        """A viewer's next position: skipped ahead to the newest keyframe when it fell out of
        the ring or more than max_lag behind."""
        if position is None:
            return self._newest_keyframe()
        keyframe = self._newest_keyframe()
        if position < self._oldest:
            return keyframe
        if self._next - position > self._max_lag and keyframe is not None and keyframe > position:
            return keyframe
        return position

    async def watch(
        self, after_sequence: int = 0
    ) -> AsyncGenerator[InitSegment | SequencedFragment, None]:
        """The init, then fragments from where `after_sequence` says (see `_start`); the init
        again whenever the camera's run changes. LiveEnded when the hub closes."""
        self.viewers += 1
        try:
            epoch = -1
            position: int | None = None
            while True:
                if self.closed:
                    raise LiveEnded(f"the live stream of camera {self.camera_id} ended")
                arrived = self._arrived
                if self.init is not None and epoch != self.epoch:
                    epoch = self.epoch
                    yield self.init
                    position, after_sequence = self._start(after_sequence), 0
                    continue
                if self.init is not None:
                    position = self._catch_up(position)
                if position is not None and position < self._next:
                    item = self._slots[position % len(self._slots)]
                    assert item is not None and item.sequence == position
                    position += 1
                    yield item
                    continue
                await arrived.wait()
        finally:
            self.viewers -= 1


class LiveHubs:
    """The hubs of one process, by camera: the recorder opens and closes them, the API's live
    endpoints (gRPC and WebSocket) read them. `dev` shares one between the two."""

    def __init__(self) -> None:
        self._hubs: dict[str, LiveHub] = {}

    def open(self, camera_id: str) -> LiveHub:
        old = self._hubs.get(camera_id)
        if old is not None:
            old.close()
        hub = self._hubs[camera_id] = LiveHub(camera_id)
        return hub

    def close(self, camera_id: str, hub: LiveHub) -> None:
        hub.close()
        if self._hubs.get(camera_id) is hub:
            del self._hubs[camera_id]

    def get(self, camera_id: str) -> LiveHub:
        """The camera's hub; NotRecordingHere when this process records no such camera."""
        hub = self._hubs.get(camera_id)
        if hub is None or hub.closed:
            raise NotRecordingHere(
                f"camera {camera_id} is not being recorded in this process, so it has no live "
                "stream here: turn its recording on (UpdateCamera recording_policy) and wait "
                "for its recording status to be RECORDING (live view is served by the process "
                "running its recorder: `sparc-video dev`)"
            )
        return hub

    def __contains__(self, camera_id: str) -> bool:
        return camera_id in self._hubs
