"""One hub per camera: the last fragments of its live stream, shared by every viewer.

The recorder holding the camera publishes into its hub (one camera connection however many
watch, as go2rtc does); viewers read the shared ring through cursors of their own, so a viewer
costs a cursor, not a queue. A viewer more than MAX_LAG fragments behind (a slow network, a
stalled client) skips to the newest keyframe instead of growing a backlog, and never holds up
the recorder or the other viewers.

Sequence numbers start at the hub's opening time in microseconds and count up by one per
fragment: a hub opened later (the camera taken over, the recorder restarted) numbers above any
earlier one, so `after_sequence` from an older hub never lands on an unrelated fragment.

On demand: a camera nobody records here gets a hub when a viewer asks (`LiveHubs.attach`): the
recorder of this process, registered as the hubs' opener, takes the camera live-only and lets
it go LIVE_LINGER after its hub's last viewer left (`idle_s`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from sparc_video.core.errors import FailedPrecondition, Unavailable
from sparc_video.live.fragments import Fragment, InitSegment

RING_SIZE = 256
MAX_LAG = 50
# How long a viewer of a camera opened on demand waits for its first picture: the ingest's own
# open and first-keyframe timeouts (10 s each) end a camera that never answers before this.
START_TIMEOUT_S = 30.0


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


class LiveUnavailable(Unavailable):
    """A camera opened on demand for live view could not be read (the message says why)."""

    reason = "CAMERA_UNAVAILABLE"


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
        # Why it closed, when a failure closed it: what its viewers are told.
        self.failure: Unavailable | None = None
        self.viewers = 0
        self._idle_since = time.monotonic()

    @property
    def idle_s(self) -> float:
        """Seconds since the last viewer left (or the hub opened); 0 while anyone watches."""
        return 0.0 if self.viewers else time.monotonic() - self._idle_since

    async def started(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait for the first init; the failure if the hub closes first, LiveUnavailable when
        none comes in time. The caller counts as a viewer meanwhile: a camera opened on demand
        is not let go under it, and its linger starts when this returns."""
        self._join()
        try:
            await self._until_started(timeout_s)
        finally:
            self._leave()

    async def _until_started(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.init is None:
            if self.closed:
                raise self._ended()
            left = deadline - time.monotonic()
            if left <= 0:
                raise LiveUnavailable(
                    f"camera {self.camera_id} sent no picture within {timeout_s:g} s"
                )
            arrived = self._arrived
            try:
                await asyncio.wait_for(arrived.wait(), left)
            except TimeoutError:
                continue

    def _ended(self) -> Unavailable:
        return self.failure or LiveEnded(f"the live stream of camera {self.camera_id} ended")

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

    def close(self, failure: Unavailable | None = None) -> None:
        self.failure = self.failure or failure
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
        self._join()
        try:
            epoch = -1
            position: int | None = None
            while True:
                if self.closed:
                    raise self._ended()
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
            self._leave()

    def _join(self) -> None:
        self.viewers += 1

    def _leave(self) -> None:
        self.viewers -= 1
        if not self.viewers:
            self._idle_since = time.monotonic()


class LiveHubs:
    """The hubs of one process, by camera: the recorder opens and closes them, the API's live
    endpoints (gRPC and WebSocket) read them. `dev` shares one between the two."""

    def __init__(self) -> None:
        self._hubs: dict[str, LiveHub] = {}
        # The recorder of this process, asked to open a camera for a viewer (None: no recorder
        # here, so no camera opens on demand), and its id.
        self._opener: Callable[[str], None] | None = None
        self.recorder_id = ""
        # Viewers waiting for a camera opened on demand: resolved by open() or refuse().
        self._waiting: dict[str, asyncio.Future[LiveHub]] = {}

    def set_opener(self, recorder_id: str, opener: Callable[[str], None]) -> None:
        self.recorder_id, self._opener = recorder_id, opener

    def open(self, camera_id: str) -> LiveHub:
        old = self._hubs.get(camera_id)
        if old is not None:
            old.close()
        hub = self._hubs[camera_id] = LiveHub(camera_id)
        waiting = self._waiting.pop(camera_id, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(hub)
        return hub

    def refuse(self, camera_id: str, error: Exception) -> None:
        """The recorder will not open the camera for its waiting viewers: why."""
        waiting = self._waiting.pop(camera_id, None)
        if waiting is not None and not waiting.done():
            waiting.set_exception(error)
            waiting.exception()  # its viewers may all have left: no "never retrieved" log

    async def attach(self, camera_id: str, timeout_s: float = START_TIMEOUT_S) -> LiveHub:
        """The camera's hub, opened on demand by this process's recorder when nothing records
        it here; NotRecordingHere without a recorder, the refusal or LiveUnavailable else."""
        hub = self._hubs.get(camera_id)
        if (hub is not None and not hub.closed) or self._opener is None:
            return self.get(camera_id)
        waiting = self._waiting.get(camera_id)
        if waiting is None:
            waiting = self._waiting[camera_id] = asyncio.get_running_loop().create_future()
            self._opener(camera_id)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout_s)
        except TimeoutError:
            if self._waiting.get(camera_id) is waiting:
                del self._waiting[camera_id]
            raise LiveUnavailable(
                f"camera {camera_id} was not opened for live view within {timeout_s:g} s"
            ) from None

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
                "running its recorder: `sparc-video dev`, or the `sparc-video recorder` with "
                "live ports that GetCameraLiveStream points to)"
            )
        return hub

    def __contains__(self, camera_id: str) -> bool:
        return camera_id in self._hubs
