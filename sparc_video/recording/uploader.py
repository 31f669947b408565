"""Buffered segments to storage and the catalogue, in order per camera.

A camera's segments go one after another: upload (a deterministic key, so a retry after a
crash overwrites the same object), register with the recorder's fence (`fencing.py`), then
remove the local files. Storage or PostgreSQL failing is retried with capped backoff for as
long as it takes: the buffer holds the segments meanwhile. A segment is registered only while
the recorder holds its camera; a fenced one (the camera was taken over) is discarded, since the
new holder's failover gap already covers its time. So is one recorded under an earlier hold of
the camera (left in the buffer by a restart, or kept when the lease was lost) once footage
registered since covers its time (`fencing.superseded`): checked before it is uploaded.

The bytes stored must be the bytes recorded. The storage hashes what it stores (one read); a
segment stored right away needs nothing more. One that has to wait (its first attempt failed,
or it was queued behind another) is hashed as it starts waiting, into its description
(`SegmentBuffer.pin_hash`: a second read, only for segments that wait). When it goes up, a
stored hash that differs (the file changed on disk while it waited) is refused: the object is
deleted, the segment not catalogued, the refusal logged as an error and counted, and its span
stored as a segment_changed gap (`fencing.register_refused`, retried like a registration while
PostgreSQL is away) before the file is moved aside for inspection: a restart before that finds
the segment still buffered and refuses it again, so neither the gap nor the file is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from sparc_video.cameras.records import RecordingRecord
from sparc_video.core.ids import new_id
from sparc_video.database.pool import Database
from sparc_video.media.probe import StreamInfo
from sparc_video.observability import recorder_metrics as metrics
from sparc_video.recording.buffer import BufferedSegment, SegmentBuffer
from sparc_video.recording.fencing import (
    Fenced,
    PendingGap,
    register_refused,
    register_segment,
    superseded,
)
from sparc_video.recording.reasons import GapReason
from sparc_video.storage import ManagedStorage

log = logging.getLogger(__name__)
RETRY_FIRST_S = 0.5
RETRY_CAP_S = 10.0
PRINCIPAL = "system:recorder"


def object_key(camera_id: str, start_ns: int) -> str:
    """Where a recorded segment is stored: under its camera (deleted with it), named by its
    start so a retried upload overwrites itself."""
    return f"cameras/{camera_id}/recorder/{start_ns}.mp4"


class SegmentChanged(Exception):
    """The bytes stored are not those hashed when the segment was finished."""


class Uploader:
    def __init__(
        self,
        storage: ManagedStorage,
        database: Database,
        buffer: SegmentBuffer,
        on_stored: Callable[[str, int], Awaitable[None]] | None = None,
    ) -> None:
        self._storage = storage
        self._database = database
        self._buffer = buffer
        self._on_stored = on_stored
        self._queues: dict[str, deque[BufferedSegment]] = {}
        self._tokens: dict[str, int] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._idle: dict[str, asyncio.Event] = {}
        # The hashes of waiting segments taken as they started waiting (`_pin`), by file.
        self._hashes: dict[Path, str] = {}
        self._pinning: set[asyncio.Task[None]] = set()

    def put(self, segment: BufferedSegment) -> None:
        queue = self._queues.setdefault(segment.camera_id, deque())
        if queue and not segment.sha256:  # it waits behind another: hashed now, not later
            pinning = asyncio.create_task(self._pin(segment))
            self._pinning.add(pinning)
            pinning.add_done_callback(self._pinning.discard)
        queue.append(segment)
        self._idle.setdefault(segment.camera_id, asyncio.Event()).clear()
        self._kick(segment.camera_id)

    def hold(self, camera_id: str, token: int) -> None:
        """Register the camera's segments with this fence token from now on."""
        self._tokens[camera_id] = token
        self._kick(camera_id)

    def pending(self, camera_id: str) -> int:
        return len(self._queues.get(camera_id, ()))

    async def drain(self, camera_id: str, timeout_s: float) -> bool:
        """Wait until the camera's queue is empty (False if it is not within `timeout_s`)."""
        if not self._queues.get(camera_id):
            return True
        idle = self._idle.setdefault(camera_id, asyncio.Event())
        try:
            await asyncio.wait_for(idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def let_go(self, camera_id: str) -> None:
        """Stop registering the camera's segments (they stay buffered for a later hold)."""
        self._tokens.pop(camera_id, None)
        task = self._tasks.pop(camera_id, None)
        if task is not None:
            task.cancel()

    async def aclose(self) -> None:
        tasks = [*self._tasks.values(), *self._pinning]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _kick(self, camera_id: str) -> None:
        if camera_id not in self._tokens or not self._queues.get(camera_id):
            return
        task = self._tasks.get(camera_id)
        if task is None or task.done():
            self._tasks[camera_id] = asyncio.create_task(self._run(camera_id))

    async def _run(self, camera_id: str) -> None:
        queue = self._queues[camera_id]
        while queue and camera_id in self._tokens:
            segment = queue[0]
            delay = RETRY_FIRST_S
            set_aside = False
            # Set when storage refused the segment's bytes: its gap is stored next.
            refused: SegmentChanged | None = None
            while True:
                token = self._tokens[camera_id]
                try:
                    if refused is None:
                        if segment.token != token and await superseded(
                            self._database, camera_id, segment.start_ns
                        ):
                            log.warning(
                                "segment %s of camera %s, recorded under fence %d, is older "
                                "than footage registered since; discarding it",
                                segment.start_ns,
                                camera_id,
                                segment.token,
                            )
                            metrics.FENCED_SEGMENTS.inc()
                            break
                        try:
                            await self._store(segment, token)
                            break
                        except SegmentChanged as changed:
                            log.error("%s; not catalogued, the file is kept aside", changed)
                            metrics.CHANGED_SEGMENTS.inc()
                            refused = changed
                    await self._explain_refused(segment, token)
                    folder = await asyncio.to_thread(self._buffer.set_aside, segment)
                    log.error(
                        "segment %s of camera %s kept in %s", segment.start_ns, camera_id, folder
                    )
                    set_aside = True
                    break
                except Fenced:
                    log.warning(
                        "camera %s was taken over; discarding its buffered segments", camera_id
                    )
                    self._tokens.pop(camera_id, None)
                    if refused is not None:  # never deleted: kept for inspection, unexplained
                        await asyncio.to_thread(self._buffer.set_aside, queue.popleft())
                        self._hashes.pop(segment.path, None)
                        set_aside = True
                    while queue:
                        self._hashes.pop(queue[0].path, None)
                        self._buffer.remove(queue.popleft())
                    metrics.FENCED_SEGMENTS.inc()
                    break
                except Exception as exc:  # storage or PostgreSQL away: wait for them
                    log.warning(
                        "segment %s of camera %s not stored yet (%s); retrying in %g s",
                        segment.start_ns,
                        camera_id,
                        exc,
                        delay,
                    )
                    metrics.UPLOAD_RETRIES.inc()
                    await self._pin(segment)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_CAP_S)
            if queue and queue[0] is segment:
                self._hashes.pop(segment.path, None)
                queue.popleft()
                if not set_aside:
                    self._buffer.remove(segment)
            metrics.BUFFER_BYTES.set(self._buffer.used_bytes)
        if not queue:
            self._idle.setdefault(camera_id, asyncio.Event()).set()

    async def _explain_refused(self, segment: BufferedSegment, token: int) -> None:
        """Store the refused segment's span as a segment_changed gap, after the gap it would
        have closed."""
        kept = self._buffer.changed_dir(segment.camera_id) / segment.path.name
        reason = PendingGap(
            GapReason.SEGMENT_CHANGED,
            f"the segment's file changed on disk before upload; kept as {kept} on recorder "
            f"{segment.recorder_id}",
        )
        gap_ns = await register_refused(
            self._database,
            segment.camera_id,
            segment.start_ns,
            segment.end_ns,
            token,
            segment.gap,
            reason,
            segment.recorder_id,
        )
        if gap_ns is None:
            return
        _count_gap(segment.gap, gap_ns)
        _count_gap(reason, segment.end_ns - segment.start_ns)

    async def _pin(self, segment: BufferedSegment) -> None:
        """Hash a segment about to wait, unless it was already, so what goes up later must be
        the bytes as they were recorded."""
        if segment.sha256 or segment.path in self._hashes:
            return
        try:
            digest = await asyncio.to_thread(self._buffer.pin_hash, segment)
        except OSError:  # gone meanwhile (uploaded, or removed by hand): nothing to pin
            log.info("segment %s not hashed while waiting", segment.path, exc_info=True)
            return
        if any(waiting is segment for waiting in self._queues.get(segment.camera_id, ())):
            self._hashes[segment.path] = digest

    async def _store(self, segment: BufferedSegment, token: int) -> None:
        key = object_key(segment.camera_id, segment.start_ns)
        # The storage hashes the bytes as it stores them (one read of the segment), compared
        # with the hash taken when the segment started waiting, if it did, rather than handed
        # over as `sha256`: S3 would record a given hash without checking it. The buffer only
        # deletes the file after this, so local storage links it instead of writing it again.
        stored = await self._storage.upload_file(segment.path, key, "video/mp4", give_up=True)
        recorded = segment.sha256 or self._hashes.get(segment.path, "")
        if recorded and stored.sha256 != recorded:
            await self._storage.delete(key)  # not the footage recorded: nothing may serve it
            raise SegmentChanged(
                f"segment {segment.start_ns} of camera {segment.camera_id} changed on disk "
                f"while buffered: sha256 {stored.sha256} stored, {recorded} recorded"
            )
        if self._on_stored is not None:
            try:
                await self._on_stored(key, segment.size_bytes)
            except Exception:  # the storage-used gauge is advisory; the segment is not
                log.warning("storage use of %s not counted", key, exc_info=True)
        record = RecordingRecord(
            id=new_id(),
            camera_id=segment.camera_id,
            object_key=key,
            start_ns=segment.start_ns,
            duration_ns=segment.end_ns - segment.start_ns,
            stream=StreamInfo(
                "mp4",
                segment.video_codec,
                segment.width,
                segment.height,
                segment.fps,
                segment.audio_codec,
            ),
            frame_count=segment.frames,
            size_bytes=segment.size_bytes,
            sha256=stored.sha256,
            recorder_id=segment.recorder_id,
            clock_source=segment.clock_source,
        )
        try:
            gap_ns = await register_segment(self._database, record, token, segment.gap, PRINCIPAL)
            _count_gap(segment.gap, gap_ns)
        except asyncpg.UniqueViolationError:
            # Registered by an earlier run that died before removing the local files.
            log.info("segment %s was registered already", key)
        metrics.SEGMENTS_WRITTEN.inc()
        metrics.BYTES_WRITTEN.inc(segment.size_bytes)
        metrics.UPLOAD_LATENCY.observe(max(0.0, time.time() - segment.end_ns / 1e9))


def _count_gap(gap: PendingGap | None, gap_ns: int) -> None:
    if gap is not None and gap_ns:
        metrics.GAP_SECONDS.labels(gap.reason.value).inc(gap_ns / 1e9)
