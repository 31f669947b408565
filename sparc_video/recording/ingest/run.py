"""Reading one camera by stream copy and cutting it into segments: the blocking loop.

PyAV blocks in C while it waits for the camera (releasing the GIL), so the loop runs in a
thread of its own, never on the event loop. Every wait is bounded: opening by PyAV's open
timeout and FFmpeg's socket timeouts, each packet read by PyAV's read timeout (its interrupt
callback ends any blocking FFmpeg call, however the camera misbehaves), and the time since the
last video packet is checked here as well, for a camera that keeps sending everything but
pictures. `stop` is looked at between packets, which a live camera sends many times a second;
a camera that has gone silent keeps a stop waiting until the read timeout (`stall_timeout_s`).

Not covered here (unlike the media child, which exits on FFmpeg's "Redirecting to" log line): an
RTSP redirect is followed by FFmpeg to a host the address policy never saw.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import av
import av.error
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream

from sparc_video.media.safe_open import (
    HostNotFound,
    ffmpeg_message,
    live_stream_options,
    main_audio,
    pin_stream_url,
)
from sparc_video.recording.ingest.models import (
    IngestFailure,
    IngestSource,
    IngestStats,
    PacketTap,
    SegmentFile,
    SegmentPolicy,
)
from sparc_video.recording.ingest.segmenter import Segmenter
from sparc_video.recording.ingest.writer import audio_refusal
from sparc_video.recording.reasons import GapReason
from sparc_video.security.address_policy import AddressRefused
from sparc_video.security.stream_urls import redact_text

_UNREACHABLE_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ETIMEDOUT}
)
STATS_INTERVAL_S = 1.0


def run_ingest(
    source: IngestSource,
    policy: SegmentPolicy,
    buffer_dir: Path,
    on_segment: Callable[[SegmentFile], None],
    on_stats: Callable[[IngestStats], None],
    stop: threading.Event,
    tap: PacketTap | None = None,
) -> None:
    """Blocking; run it in a thread. Returns after `stop` is set (the open segment is closed
    and handed to on_segment first). Raises IngestFailure for everything else (the open
    segment, if any, is closed and handed over before raising). Never leaves partial files
    behind except the ones handed over."""
    container = _open(source, policy)
    with container:
        video = next(iter(container.streams.video), None)
        if video is None:
            raise IngestFailure(GapReason.NO_KEYFRAME, f"{source.display_url} sends no video")
        audio = main_audio(container)
        audio_note = audio_refusal(audio) if audio is not None else None
        segmenter = Segmenter(
            source, policy, buffer_dir, video, None if audio_note else audio, audio_note, on_segment
        )
        if tap is not None:
            tap.begin(video)
        try:
            _pump(container, segmenter, policy, on_stats, stop, tap)
        except BaseException:
            try:
                segmenter.finish()
            except Exception:
                # The failure may be the segment's own (a full disk): drop what cannot close.
                segmenter.abort()
            raise
        finally:
            if tap is not None:
                tap.end()
        segmenter.finish()


def _open(source: IngestSource, policy: SegmentPolicy) -> InputContainer:
    try:
        url, pinned = pin_stream_url(source.url, source.policy)
    except (AddressRefused, HostNotFound) as exc:
        raise IngestFailure(
            GapReason.CAMERA_UNREACHABLE, f"{source.display_url} is not opened: {exc}"
        ) from None
    options = {**pinned, **live_stream_options(urlsplit(url).scheme, policy.open_timeout_s)}
    started = time.monotonic()
    try:
        return av.open(
            url,
            "r",
            options=options,
            timeout=(policy.open_timeout_s, policy.stall_timeout_s),
        )
    except (av.error.FFmpegError, OSError) as exc:
        timed_out = time.monotonic() - started >= policy.open_timeout_s * 0.95
        raise _open_failure(source, exc, timed_out) from None


def _open_failure(source: IngestSource, exc: BaseException, timed_out: bool) -> IngestFailure:
    shown = source.display_url
    detail = ffmpeg_message(exc) if isinstance(exc, av.error.FFmpegError) else type(exc).__name__
    detail = redact_text(detail)
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return IngestFailure(GapReason.AUTHENTICATION_FAILED, f"{shown} refused the log-in")
    if timed_out or isinstance(exc, av.error.ExitError | TimeoutError):
        return IngestFailure(GapReason.CAMERA_UNREACHABLE, f"{shown} did not answer in time")
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS
    ):
        return IngestFailure(GapReason.CAMERA_UNREACHABLE, f"{shown} is unreachable ({detail})")
    if isinstance(exc, av.error.EOFError):
        return IngestFailure(GapReason.STREAM_ENDED, f"{shown} closed the connection")
    return IngestFailure(GapReason.CAMERA_UNREACHABLE, f"{shown} cannot be opened ({detail})")


def _pump(
    container: InputContainer,
    segmenter: Segmenter,
    policy: SegmentPolicy,
    on_stats: Callable[[IngestStats], None],
    stop: threading.Event,
    tap: PacketTap | None,
) -> None:
    shown = segmenter.source.display_url
    streams = [segmenter.video_in] + ([segmenter.audio_in] if segmenter.audio_in else [])
    opened = time.monotonic()
    last_video = opened
    window_start, window_bytes, window_frames = opened, 0, 0
    packets = container.demux(streams)
    while not stop.is_set():
        try:
            packet: Packet[Stream] = next(packets)
        except StopIteration:
            raise IngestFailure(GapReason.STREAM_ENDED, f"{shown} ended the stream") from None
        except (av.error.ExitError, TimeoutError):
            raise IngestFailure(
                GapReason.STREAM_STALLED,
                f"{shown} sent nothing for {policy.stall_timeout_s:g} s",
            ) from None
        except av.error.EOFError:
            raise IngestFailure(GapReason.STREAM_ENDED, f"{shown} ended the stream") from None
        except av.error.FFmpegError as exc:
            raise IngestFailure(
                GapReason.STREAM_ENDED, f"{shown} broke off ({redact_text(ffmpeg_message(exc))})"
            ) from None
        now = time.monotonic()
        if packet.stream is segmenter.video_in and packet.size:
            last_video = now
            window_frames += 1
        elif now - last_video > policy.stall_timeout_s:
            raise IngestFailure(
                GapReason.STREAM_STALLED,
                f"{shown} sent no picture for {policy.stall_timeout_s:g} s",
            )
        if packet.size == 0 or (packet.pts is None and packet.dts is None):
            continue
        window_bytes += packet.size
        realtime = container.start_time_realtime
        received_ns = time.time_ns()
        if tap is not None and packet.stream is segmenter.video_in:
            # Before the segmenter, which rewrites the packet as it muxes it.
            clock = segmenter.clock
            pts = packet.pts
            tap.packet(packet, clock.at(pts) if clock and pts is not None else received_ns)
        segmenter.feed(packet, received_ns, realtime)
        if not segmenter.started and now - opened > policy.keyframe_timeout_s:
            raise IngestFailure(
                GapReason.NO_KEYFRAME,
                f"{shown} sent no keyframe within {policy.keyframe_timeout_s:g} s",
            )
        if now - window_start >= STATS_INTERVAL_S:
            elapsed = now - window_start
            on_stats(
                IngestStats(time.time_ns(), window_bytes * 8 / elapsed, window_frames / elapsed)
            )
            window_start, window_bytes, window_frames = now, 0, 0
