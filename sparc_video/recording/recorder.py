"""A recorder: holds its share of the cameras to record and records them until stopped.

Membership and leases are renewed by one task of their own (`_keep_leases`, every third of
RECORDER_LEASE_TTL), never by the rounds: a round waits on PostgreSQL and camera starts, and a
slow one must not let leases lapse. Each round (every RECORDER_POLL_INTERVAL, at most a third of
the TTL apart) drops the cameras the keeper found lost, re-reads the policies, lets go of
cameras no longer wanted (policy OFF) or above its share, takes free ones up to it, and
rewrites the held cameras' statuses. A taken camera is fenced in PostgreSQL
(`fencing.take_over`) before its first segment; a lost one (the lease lapsed and another took
it, or it was deleted) is dropped by the round the keeper wakes, its unregistered segments
refused by the fence meanwhile. Stopping (SIGTERM) closes each open segment, uploads what
storage takes within the grace, releases the cameras with their reason and leaves the
membership.

On demand (`live_view`'s hubs ask through `want_live`): a camera whose recording is OFF is taken
live-only with the same lease and fence, so across replicas one connection still reads it; it
is let go LIVE_LINGER after its last viewer left, and becomes recorded in place (no second
connection) when its recording is turned on meanwhile. Live-only cameras are outside the share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from sparc_video.cameras.credentials import CredentialCipher
from sparc_video.cameras.records import CameraStore
from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings
from sparc_video.database.pool import Database
from sparc_video.live.hub import LiveHubs, NotRecordingHere
from sparc_video.observability import recorder_metrics as metrics
from sparc_video.recording import fencing, retention
from sparc_video.recording.buffer import SegmentBuffer
from sparc_video.recording.fencing import PendingGap
from sparc_video.recording.leases import RecorderLeases, share
from sparc_video.recording.policy import (
    RecordingMode,
    RecordingPolicy,
    cameras_to_record,
    get_policy,
)
from sparc_video.recording.reasons import GapReason
from sparc_video.recording.status import RecordingState, RecordingStatus, StatusBoard
from sparc_video.recording.supervisor import CameraSupervisor, RecorderParts
from sparc_video.recording.uploader import Uploader
from sparc_video.security.address_policy import AddressPolicy
from sparc_video.storage import ManagedStorage

log = logging.getLogger(__name__)
# How long a camera let go (shutdown, handover, policy OFF) may take to upload its last segments.
RELEASE_UPLOAD_S = 10.0


def new_recorder_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Recorder:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        redis: aioredis.Redis,
        storage: ManagedStorage,
        recorder_id: str | None = None,
        forget_object: Callable[[str], Awaitable[None]] | None = None,
        on_stored: Callable[[str, int], Awaitable[None]] | None = None,
        live: LiveHubs | None = None,
        live_address: str = "",
    ) -> None:
        """`live_address`: where this process serves its hubs' live view (`LiveAddress`,
        encoded), advertised with every heartbeat; "" when it serves none."""
        self.recorder_id = recorder_id or new_recorder_id()
        self._settings = settings
        self._database = database
        self._redis = redis
        self._storage = storage
        self._forget_object = forget_object
        keys = Keys(settings.redis_prefix)
        self._keys = keys
        self.leases = RecorderLeases(
            redis, keys, self.recorder_id, settings.recorder_lease_ttl_s, live_address
        )
        self._cameras = CameraStore(database, _NoDeletes())
        buffer = SegmentBuffer(settings.recorder_buffer_dir, settings.recorder_buffer_max)
        self._uploader = Uploader(storage, database, buffer, on_stored)
        self._parts = RecorderParts(
            self.recorder_id,
            settings,
            self._cameras,
            CredentialCipher.from_settings(settings),
            AddressPolicy.from_settings(settings),
            buffer,
            self._uploader,
            StatusBoard(redis, keys, 3 * settings.recorder_lease_ttl_s),
            live,
        )
        self.supervisors: dict[str, CameraSupervisor] = {}
        # The fence token of each camera held (its lease renewed), from its take to its release.
        self._tokens: dict[str, int] = {}
        # What the lease keeper last found: the live recorders (None: not renewed yet) and the
        # cameras lost since the last round, with the token they were held under.
        self._members: list[str] | None = None
        self._lost: dict[str, int] = {}
        self._live = live
        # Cameras held for their viewers only, and those viewers asked for since the last round.
        self.live_only: set[str] = set()
        self._live_requests: set[str] = set()
        self._wake = asyncio.Event()
        if live is not None:
            live.set_opener(self.recorder_id, self.want_live)

    def want_live(self, camera_id: str) -> None:
        """A viewer in this process asks for a camera nothing here records: the next round
        (started now) takes it live-only, or refuses through the hubs."""
        self._live_requests.add(camera_id)
        self._wake.set()

    @property
    def held(self) -> set[str]:
        return set(self.supervisors)

    async def run(self, stop: asyncio.Event, sweeper: CameraStore | None = None) -> None:
        """Record until `stop` is set, then let everything go. `sweeper`: the camera store
        (with the exports' deletion guard) to run the retention sweep with."""
        for segment in await asyncio.to_thread(self._parts.buffer.leftovers):
            self._uploader.put(segment)
        interval = min(
            self._settings.recorder_poll_interval_s, self._settings.recorder_lease_ttl_s / 3
        )
        sweeping = asyncio.create_task(self._sweep_forever(sweeper, stop)) if sweeper else None
        # The keeper outlives the rounds: while the cameras are let go (each may wait up to
        # RELEASE_UPLOAD_S for storage) their leases must not lapse, or another recorder takes
        # a camera and the fence refuses the segments this one is still uploading.
        released = asyncio.Event()
        keeping = asyncio.create_task(self._keep_leases(released), name=self.lease_keeper_name)
        try:
            while not stop.is_set():
                try:
                    await self.round()
                except Exception:  # Redis or PostgreSQL away: the next round tries again
                    log.warning("recorder %s: round failed", self.recorder_id, exc_info=True)
                await self._pause(stop, interval)
        finally:
            if sweeping is not None:
                sweeping.cancel()
                await asyncio.gather(sweeping, return_exceptions=True)
            try:
                await self.release_all()
            finally:
                released.set()
                await asyncio.gather(keeping, return_exceptions=True)
                await self.leave()

    @property
    def lease_keeper_name(self) -> str:
        """The name of the task that alone renews membership and leases."""
        return f"recorder {self.recorder_id} leases"

    async def _keep_leases(self, until: asyncio.Event) -> None:
        """The only renewer of membership and leases, every third of the TTL on a cadence of
        its own: a round waits on PostgreSQL and on camera starts, and on a loaded machine a
        slow round let a healthy recorder's leases lapse and another recorder took its cameras.
        Renewing in the rounds as well doubled the Redis traffic for nothing. It wakes the round
        after its first renewal (rounds wait for the membership) and on every loss."""
        interval = self._settings.recorder_lease_ttl_s / 3
        while not until.is_set():
            try:
                await self._renew()
            except Exception:  # Redis away: the next renewal tries again
                log.warning("recorder %s: lease renewal failed", self.recorder_id, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), interval)

    async def _renew(self) -> None:
        """Renew the membership and the leases of the cameras held now; record the live
        recorders and each lease lost with the fence token it was held under, so the round
        drops only that hold (not a later one of the same camera, taken while this ran)."""
        held = dict(self._tokens)
        first = self._members is None
        self._members = await self.leases.heartbeat()
        renewed = await self.leases.renew(sorted(held))
        lost = {c: token for c, token in held.items() if c not in renewed}
        self._lost.update(lost)
        if first or lost:
            self._wake.set()

    async def _pause(self, stop: asyncio.Event, interval: float) -> None:
        """Until the next round: `interval`, or sooner when stopped or a viewer asks."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        self._wake.clear()

    async def round(self) -> None:
        """Act on the lease keeper's last renewal; nothing before its first one."""
        live = self._members
        if live is None:
            return
        lost, self._lost = self._lost, {}
        for camera_id, token in sorted(lost.items()):
            if self._tokens.get(camera_id) == token:
                log.warning("recorder %s lost camera %s", self.recorder_id, camera_id)
                await self._drop(camera_id)
        wanted = {c.camera_id: c.policy for c in await cameras_to_record(self._database)}
        for camera_id in sorted(self.live_only & set(wanted)):
            # Turned on while watched: recorded from here on, on the same connection.
            self.live_only.discard(camera_id)
            turned_on = wanted[camera_id]
            if turned_on.segment_s == self.supervisors[camera_id].policy.segment_s:
                self.supervisors[camera_id].record(turned_on)
            else:  # a new segment length needs a new run: a brief handover, viewers' streams end
                await self.supervisors.pop(camera_id).stop()
                self._start(camera_id, turned_on, PendingGap(GapReason.POLICY_OFF, "was off"))
        held = set(self.supervisors) - self.live_only
        holders = await self.leases.holders(sorted(set(wanted) - held))
        free = [c for c, holder in holders.items() if holder is None]
        plan = share(sorted(wanted), held, free, len(live), seed=self.recorder_id)
        for camera_id in plan.release:
            reason = (
                GapReason.POLICY_OFF if camera_id not in wanted else GapReason.RECORDER_FAILOVER
            )
            await self._let_go(camera_id, reason)
        for camera_id in plan.take:
            await self._take(camera_id, wanted[camera_id])
        await self._serve_viewers()
        for camera_id, supervisor in list(self.supervisors.items()):
            if camera_id in self.live_only:
                continue
            policy = wanted.get(camera_id)
            if policy is not None and policy != supervisor.policy:
                await self._restart(camera_id, policy)
            else:
                await supervisor.refresh_status()
        self._count_states()

    async def _serve_viewers(self) -> None:
        """Take the cameras viewers asked for live-only; let go of those whose viewers left
        LIVE_LINGER ago or whose connection failed (its viewers were told why)."""
        linger = self._settings.live_linger_s
        for camera_id in sorted(self.live_only):
            supervisor = self.supervisors[camera_id]
            hub = supervisor.hub
            ended = supervisor.task is None or supervisor.task.done()
            if ended or hub is None or hub.idle_s >= linger:
                await self._let_go(camera_id, GapReason.POLICY_OFF)
        # After the let-goes: a viewer back for a camera whose connection failed tries anew.
        requests, self._live_requests = self._live_requests, set()
        for camera_id in sorted(requests - set(self.supervisors)):
            try:
                await self._take_live(camera_id)
            except Exception as exc:
                if self._live is not None:
                    self._live.refuse(camera_id, exc)

    async def _take_live(self, camera_id: str) -> None:
        policy = await get_policy(self._database, camera_id)
        if policy.mode is RecordingMode.OFF and await self._take(camera_id, policy, True):
            return
        holder = (await self.leases.holders([camera_id]))[camera_id]
        raise NotRecordingHere(
            f"camera {camera_id} is read by recorder {holder or '(none yet)'}, not by this "
            "process's recorder: live view is served by the process running the recorder "
            "holding the camera"
        )

    async def _take(self, camera_id: str, policy: RecordingPolicy, live_only: bool = False) -> bool:
        if not await self.leases.acquire(camera_id):
            return False
        try:
            takeover = await fencing.take_over(self._database, camera_id, self.recorder_id)
        except Exception:
            await self.leases.release(camera_id)
            raise
        log.info(
            "recorder %s took camera %s (fence %d)", self.recorder_id, camera_id, takeover.token
        )
        self._tokens[camera_id] = takeover.token
        self._uploader.hold(camera_id, takeover.token)
        gap = None
        if takeover.last_end_ns is not None:
            gap = PendingGap(takeover.gap_reason, f"taken by recorder {self.recorder_id}")
        if live_only:
            self.live_only.add(camera_id)
        self._start(camera_id, policy, gap, live_only)
        return True

    def _start(
        self,
        camera_id: str,
        policy: RecordingPolicy,
        gap: PendingGap | None,
        live_only: bool = False,
    ) -> None:
        supervisor = CameraSupervisor(
            camera_id, policy, self._parts, gap, self._tokens[camera_id], live_only
        )
        self.supervisors[camera_id] = supervisor
        supervisor.start()

    async def _restart(self, camera_id: str, policy: RecordingPolicy) -> None:
        """A new segment length: the open segment is closed, the next starts where it ended."""
        await self.supervisors.pop(camera_id).stop()
        self._start(camera_id, policy, None)

    async def _let_go(self, camera_id: str, reason: GapReason) -> None:
        if camera_id in self.live_only:
            reason = GapReason.POLICY_OFF  # never recorded here: the camera was off
        self.live_only.discard(camera_id)
        supervisor = self.supervisors.pop(camera_id, None)
        if supervisor is not None:
            await supervisor.stop()
        if not await self._uploader.drain(camera_id, RELEASE_UPLOAD_S):
            log.warning("camera %s let go with segments still buffered", camera_id)
        self._uploader.let_go(camera_id)
        token = self._tokens.pop(camera_id, None)
        if token is not None:
            await fencing.release(self._database, camera_id, token, reason)
        await self.leases.release(camera_id)
        state = RecordingState.OFF if reason is GapReason.POLICY_OFF else RecordingState.CONNECTING
        await self._parts.status.write(RecordingStatus(camera_id, state))
        self._parts.status.forget(camera_id)

    async def _drop(self, camera_id: str) -> None:
        """Lost: stop without releasing anything (another recorder holds it now)."""
        self.live_only.discard(camera_id)
        supervisor = self.supervisors.pop(camera_id, None)
        self._uploader.let_go(camera_id)
        self._tokens.pop(camera_id, None)
        if supervisor is not None:
            await supervisor.stop()
        self._parts.status.forget(camera_id)

    async def release_all(self) -> None:
        """Let every camera go at once: each finishes its open segment and has RELEASE_UPLOAD_S
        to upload what is buffered. One after another, a few cameras with storage slow to
        answer outlasted the pod's termination grace (30 s) and the rest were killed unreleased.
        """

        async def release(camera_id: str) -> None:
            try:
                await self._let_go(camera_id, GapReason.RECORDER_FAILOVER)
            except Exception:
                log.warning("camera %s not released cleanly", camera_id, exc_info=True)

        await asyncio.gather(*(release(camera_id) for camera_id in sorted(self.supervisors)))

    async def leave(self) -> None:
        """After `release_all` and with the lease keeper stopped (it would join again)."""
        await self._uploader.aclose()
        with contextlib.suppress(Exception):
            await self.leases.leave()
        self._count_states()

    def _count_states(self) -> None:
        for state in (RecordingState.RECORDING, RecordingState.CONNECTING, RecordingState.FAILING):
            metrics.CAMERAS_RECORDING.labels(state.value).set(
                sum(1 for s in self.supervisors.values() if s.state is state and not s.live_only)
            )

    async def _sweep_forever(self, cameras: CameraStore, stop: asyncio.Event) -> None:
        lock = self._keys.retention_lock
        while not stop.is_set():
            ttl_ms = int(self._settings.recorder_retention_interval_s * 1000)
            try:
                if await self._redis.set(lock, self.recorder_id, nx=True, px=ttl_ms):
                    await retention.sweep(
                        self._database,
                        cameras,
                        self._storage,
                        self._settings.recording_retention_days,
                        forget=self._forget_object,
                    )
            except Exception:
                log.warning("retention sweep failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.recorder_retention_interval_s)


class _NoDeletes:
    """The supervisors' camera store only reads cameras: it never deletes a recording."""

    async def begin_delete(self, recording_id: str, recording_name: str) -> None:
        raise AssertionError("the recorder's camera store deletes nothing")

    async def end_delete(self, recording_id: str, *, deleted: bool) -> None:
        raise AssertionError("the recorder's camera store deletes nothing")
