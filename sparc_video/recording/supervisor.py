"""One held camera: its ingest run again and again, each failure a gap with its reason.

The ingest (`ingest/`) delivers finished segments; each goes into the buffer with the gap it
closes (the reason of the failure, takeover or dropped segment before it) and on to the
uploader. A failure ends the recorded span; the next run starts after a capped exponential
backoff (reset by a delivered segment), so a camera that keeps failing costs little and one
that comes back is recorded again within RECONNECT_CAP_S.

Live-only (a camera whose recording is OFF, opened for its viewers): the same ingest, publishing
to the hub, but each segment is deleted as it closes, no status is written, and a failure ends
the run (its message closes the hub for the viewers) instead of retrying. `record` turns it into
a recording one in place, on the same connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparc_video.cameras.credentials import CredentialCipher
from sparc_video.cameras.records import CameraStore
from sparc_video.cameras.streams import open_stream
from sparc_video.core.errors import SparcVideoError
from sparc_video.live.hub import LiveHub, LiveHubs, LiveUnavailable
from sparc_video.observability import recorder_metrics as metrics
from sparc_video.recording.buffer import BufferedSegment, SegmentBuffer
from sparc_video.recording.fencing import PendingGap
from sparc_video.recording.ingest import (
    IngestFailure,
    IngestSource,
    IngestStats,
    SegmentFile,
    SegmentPolicy,
    ingest,
)
from sparc_video.recording.live_view import LiveTap
from sparc_video.recording.policy import RecordingPolicy
from sparc_video.recording.reasons import GapReason
from sparc_video.recording.status import RecordingState, RecordingStatus, StatusBoard
from sparc_video.recording.uploader import Uploader
from sparc_video.security.address_policy import AddressPolicy

if TYPE_CHECKING:
    from sparc_video.core.settings import Settings

log = logging.getLogger(__name__)
RECONNECT_FIRST_S = 1.0
RECONNECT_CAP_S = 30.0


@dataclass(frozen=True)
class RecorderParts:
    """What every supervisor of one recorder shares."""

    recorder_id: str
    settings: Settings
    cameras: CameraStore
    cipher: CredentialCipher
    address_policy: AddressPolicy
    buffer: SegmentBuffer
    uploader: Uploader
    status: StatusBoard
    # Where each held camera's live view is published (None: no live view from this recorder).
    live: LiveHubs | None = None


class CameraSupervisor:
    def __init__(
        self,
        camera_id: str,
        policy: RecordingPolicy,
        parts: RecorderParts,
        first_gap: PendingGap | None,
        token: int,
        live_only: bool = False,
    ) -> None:
        self.camera_id = camera_id
        self.token = token
        self.policy = policy
        self.live_only = live_only
        self._parts = parts
        self._pending = first_gap
        self._stop = asyncio.Event()
        self._state = RecordingStatus(camera_id, RecordingState.CONNECTING, parts.recorder_id)
        self.task: asyncio.Task[None] | None = None
        self._hub: LiveHub | None = None
        # Whether the current run delivered a segment: the backoff starts over if it did.
        self._delivered_any = False
        # Whether the current run received packets (statistics came).
        self._packets_this_run = False

    def start(self) -> None:
        if self._parts.live is not None:
            self._hub = self._parts.live.open(self.camera_id)
        self.task = asyncio.create_task(self._run(), name=f"record {self.camera_id}")

    @property
    def hub(self) -> LiveHub | None:
        return self._hub

    def record(self, policy: RecordingPolicy) -> None:
        """Recording turned on while live-only: keep the connection, keep segments from the one
        in progress on; the footage before it was not wanted (a POLICY_OFF gap)."""
        self.policy, self.live_only = policy, False
        self._pending = PendingGap(GapReason.POLICY_OFF, "recording was off")

    async def stop(self) -> None:
        """Close the open segment (handed over first) and stop; the buffer keeps it."""
        self._stop.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        if self._hub is not None and self._parts.live is not None:
            self._parts.live.close(self.camera_id, self._hub)

    async def _run(self) -> None:
        delay = RECONNECT_FIRST_S
        while not self._stop.is_set():
            self._packets_this_run = False
            await self._publish(RecordingState.CONNECTING)
            failure: IngestFailure | None
            try:
                stream = await open_stream(self._parts.cameras, self._parts.cipher, self.camera_id)
            except SparcVideoError as exc:
                failure = IngestFailure(GapReason.CAMERA_UNREACHABLE, exc.message)
            else:
                source = IngestSource(
                    stream.url,
                    stream.display_url,
                    stream_id=self.camera_id,
                    policy=self._parts.address_policy,
                )
                failure = await self._ingest(source)
                if failure is not None:
                    failure = IngestFailure(failure.reason, stream.scrub(failure.message))
            if failure is None:
                return
            if self.live_only:
                # Nobody asked for it to be recorded: its viewers are told why, and it is let go.
                if self._hub is not None:
                    self._hub.close(LiveUnavailable(failure.message))
                return
            self._pending = PendingGap(failure.reason, failure.message)
            metrics.RECONNECTS.labels(failure.reason.value).inc()
            log.info("camera %s: %s; again in %g s", self.camera_id, failure.message, delay)
            await self._publish(RecordingState.FAILING, failure)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = RECONNECT_FIRST_S if self._delivered_any else min(delay * 2, RECONNECT_CAP_S)
            self._delivered_any = False

    async def _ingest(self, source: IngestSource) -> IngestFailure | None:
        policy = SegmentPolicy(target_s=self.policy.segment_s)
        folder = self._parts.buffer.incoming_dir(self.camera_id)
        tap = LiveTap(self._hub, asyncio.get_running_loop()) if self._hub else None
        try:
            await ingest(source, policy, folder, self._on_segment, self._on_stats, self._stop, tap)
        except IngestFailure as failure:
            return failure
        except Exception as exc:  # a bug must not leave a held camera unrecorded: retry
            log.exception("camera %s: ingest failed unexpectedly", self.camera_id)
            return IngestFailure(GapReason.CAMERA_UNREACHABLE, f"recorder error: {exc}")
        return None

    async def _on_segment(self, segment: SegmentFile) -> None:
        self._delivered_any = True
        if self.live_only:
            await asyncio.to_thread(segment.path.unlink, True)
            return
        buffered = BufferedSegment(
            camera_id=self.camera_id,
            path=segment.path,
            start_ns=segment.start_ns,
            end_ns=segment.end_ns,
            clock_source=segment.clock_source.value,
            size_bytes=segment.size_bytes,
            video_codec=segment.video_codec,
            width=segment.width,
            height=segment.height,
            fps=segment.fps,
            audio_codec=segment.audio_codec or "",
            audio_note=segment.audio_note or "",
            frames=segment.frames,
            recorder_id=self._parts.recorder_id,
            gap=self._pending,
            token=self.token,
        )
        placed = await asyncio.to_thread(self._parts.buffer.accept, buffered, segment.path)
        if placed is None:
            metrics.BUFFER_DROPPED.inc()
            log.warning("camera %s: buffer full, segment dropped", self.camera_id)
            # The dropped footage's time joins the gap before the next segment that is kept.
            if self._pending is None:
                self._pending = PendingGap(
                    GapReason.STORAGE_UNAVAILABLE, "RECORDER_BUFFER_MAX reached"
                )
            return
        self._pending = None
        self._parts.uploader.put(placed)
        metrics.BUFFER_BYTES.set(self._parts.buffer.used_bytes)
        if self._state.state is not RecordingState.RECORDING:
            await self._publish(RecordingState.RECORDING)

    def _on_stats(self, stats: IngestStats) -> None:
        self._packets_this_run = True
        self._state = RecordingStatus(
            self.camera_id,
            self._state.state,
            self._parts.recorder_id,
            self._state.last_error,
            self._state.last_error_reason,
            stats.last_packet_ns,
            stats.bitrate_bps,
            stats.fps,
        )

    async def _publish(self, state: RecordingState, failure: IngestFailure | None = None) -> None:
        if self.live_only:
            return  # not recorded: its status stays OFF
        current = self._state
        self._state = RecordingStatus(
            self.camera_id,
            state,
            self._parts.recorder_id,
            failure.message if failure else current.last_error,
            failure.reason.value if failure else current.last_error_reason,
            current.last_packet_ns,
            current.bitrate_bps if state is RecordingState.RECORDING else 0.0,
            current.fps if state is RecordingState.RECORDING else 0.0,
        )
        try:
            await self._parts.status.write(self._state)
        except Exception:  # Redis away: the status is advisory, recording goes on
            log.debug("status of camera %s not written", self.camera_id, exc_info=True)

    async def refresh_status(self) -> None:
        """Rewrite the status with the latest statistics (the recorder's round calls it): a
        connecting camera whose packets flow is recording before its first segment ends."""
        state = self._state.state
        if state is RecordingState.CONNECTING and self._packets_this_run:
            state = RecordingState.RECORDING
        await self._publish(state)

    @property
    def state(self) -> RecordingState:
        return self._state.state
