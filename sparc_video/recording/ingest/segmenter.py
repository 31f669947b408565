"""Cutting the packet flow into segments: where each begins and ends, and when it is.

A segment begins at a keyframe and ends where the next begins: at the first keyframe at or after
`target_s`, or at a keyframe whose parameter sets (SPS) differ from the segment's, which is how
a camera changes resolution (the new segment gets an init describing the new pictures). Times
come from a `WallClock`; until it is known (the camera's first RTCP sender report, or
`rtcp_wait_s` without one) packets wait in memory. At each segment start the clock moves onto
the camera's latest sender report (`clock.py` says why): the segment that ends there ends where
the next begins, at the report's time, so consecutive segments stay contiguous.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.codec.context import CodecContext
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame

from sparc_video.media.safe_open import DECODER_WHITELIST, MAX_PIXELS
from sparc_video.recording.ingest.clock import NS_PER_S, Unwrapper, WallClock, sender_time_us
from sparc_video.recording.ingest.models import IngestSource, SegmentFile, SegmentPolicy
from sparc_video.recording.ingest.writer import (
    META_CLOCK,
    META_SEQUENCE,
    META_START_NS,
    META_STREAM,
    SegmentWriter,
)

# NAL unit types of a sequence parameter set (H.264: 7, H.265: 33).
_SPS_TYPES = {"h264": (0x1F, 7, 0), "hevc": (0x7E, 33, 1)}


@dataclass
class _Open:
    writer: SegmentWriter
    sequence: int
    start_pts: int
    start_ns: int
    audio_offset: int
    sps: bytes | None
    size: tuple[int, int]


class Segmenter:
    def __init__(
        self,
        source: IngestSource,
        policy: SegmentPolicy,
        buffer_dir: Path,
        video_in: Stream,
        audio_in: Stream | None,
        audio_note: str | None,
        on_segment: Callable[[SegmentFile], None],
    ) -> None:
        self.source, self.policy, self.buffer_dir = source, policy, buffer_dir
        self.video_in, self.audio_in, self.audio_note = video_in, audio_in, audio_note
        self.on_segment = on_segment
        self.started = False
        self.clock: WallClock | None = None
        assert video_in.time_base is not None
        self._tb = Fraction(video_in.time_base)
        self._codec = video_in.codec_context.name if video_in.codec_context else "unknown"
        ctx = video_in.codec_context
        self._size = (ctx.width, ctx.height) if isinstance(ctx, VideoCodecContext) else (0, 0)
        self._pending: list[tuple[Packet[Stream], int]] = []
        self._first_received_ns = 0
        self._first_pts = 0
        self._unwrap = Unwrapper()
        self._last_pts: int | None = None
        self._last_audio: int | None = None
        self._interval = 0
        self._segment: _Open | None = None
        self._sequence = 0

    def feed(self, packet: Packet[Stream], received_ns: int, realtime_us: int | None) -> None:
        is_video = packet.stream is self.video_in
        if not self.started:
            if not (is_video and packet.is_keyframe):
                return
            self.started = True
            self._first_received_ns = received_ns
            self._first_pts = self._pts(packet)
        if self.clock is None:
            self._pending.append((packet, received_ns))
            if realtime_us is not None:
                self.clock = WallClock.from_rtcp(realtime_us, self._tb)
            elif received_ns - self._first_received_ns >= self.policy.rtcp_wait_s * NS_PER_S:
                self._receive_clock()
            if self.clock is not None:
                self._drain()
            return
        self._route(packet)

    def finish(self) -> None:
        """Close the open segment (the packets waiting for a clock included) and hand it over."""
        if self.clock is None and self._pending:
            self._receive_clock()
            self._drain()
        if self._segment is not None and self._last_pts is not None:
            self._close(self._last_pts + self._interval)

    def _receive_clock(self) -> None:
        self.clock = WallClock.from_receive(self._first_received_ns, self._first_pts, self._tb)

    def _drain(self) -> None:
        pending, self._pending = self._pending, []
        for packet, _ in pending:
            self._route(packet)

    def _pts(self, packet: Packet[Stream]) -> int:
        raw = packet.pts if packet.pts is not None else packet.dts
        assert raw is not None
        return self._unwrap(raw)

    def _route(self, packet: Packet[Stream]) -> None:
        if packet.stream is not self.video_in:
            self._audio(packet)
            return
        pts = self._pts(packet)
        if self._last_pts is not None:
            if pts <= self._last_pts:
                return  # out of order or repeated: the muxer would refuse it
            self._interval = packet.duration or pts - self._last_pts
        segment = self._segment
        if packet.is_keyframe:
            sps = self._sps(packet)
            if segment is None:
                self._reanchor(packet, pts)
                self._begin(pts, sps, self._size)
            elif sps is not None and segment.sps is not None and sps != segment.sps:
                size = self._picture_size(packet) or segment.size
                self._reanchor(packet, pts)
                self._close(pts)
                self._begin(pts, sps, size)
            elif (pts - segment.start_pts) * self._tb >= Fraction(self.policy.target_s):
                self._reanchor(packet, pts)
                self._close(pts)
                self._begin(pts, sps or segment.sps, segment.size)
            elif segment.sps is None:
                segment.sps = sps
        segment = self._segment
        if segment is None:
            return
        self._last_pts = pts
        # Written timestamps start at 0 in each segment (the unwrapped PTS less its start).
        offset = segment.start_pts - (pts - self._pts_raw(packet))
        segment.writer.write(packet, segment.writer.video, offset)

    def _reanchor(self, packet: Packet[Stream], pts: int) -> None:
        """Follow the camera's latest sender report from the segment starting at `pts` on;
        a report that would put this start at or before the open segment's is ignored (a
        camera clock set back mid-run), so segment times only run forward."""
        assert self.clock is not None
        moved = self.clock.reanchored(sender_time_us(packet), pts)
        segment = self._segment
        if segment is None or moved.at(pts) > segment.start_ns:
            self.clock = moved

    def _pts_raw(self, packet: Packet[Stream]) -> int:
        raw = packet.pts if packet.pts is not None else packet.dts
        assert raw is not None
        return raw

    def _audio(self, packet: Packet[Stream]) -> None:
        segment = self._segment
        if segment is None or segment.writer.audio is None or packet.pts is None:
            return
        if packet.pts < segment.audio_offset:
            return  # belongs before this segment's first picture
        if self._last_audio is not None and packet.pts <= self._last_audio:
            return  # out of order or repeated: the muxer would refuse it
        self._last_audio = packet.pts
        segment.writer.write(packet, segment.writer.audio, segment.audio_offset)

    def _begin(self, pts: int, sps: bytes | None, size: tuple[int, int]) -> None:
        assert self.clock is not None
        start_ns = self.clock.at(pts)
        sequence = self._sequence
        self._sequence += 1
        audio_offset = 0
        if self.audio_in is not None and self.audio_in.time_base is not None:
            audio_offset = self.clock.pts_at(start_ns, Fraction(self.audio_in.time_base))
        writer = SegmentWriter(
            self.buffer_dir / f"seg-{start_ns}-{sequence:06d}.mp4",
            self.video_in,
            self.audio_in,
            {
                META_STREAM: self.source.stream_id,
                META_SEQUENCE: str(sequence),
                META_START_NS: str(start_ns),
                META_CLOCK: self.clock.source.value,
            },
            self.policy.part_s,
            size if size != self._size else None,
        )
        self._segment = _Open(writer, sequence, pts, start_ns, audio_offset, sps, size)

    def _close(self, end_pts: int) -> None:
        segment, self._segment = self._segment, None
        assert segment is not None and self.clock is not None
        end_ns = self.clock.at(end_pts)
        duration_ns = end_ns - segment.start_ns
        size_bytes = segment.writer.close(duration_ns)
        frames = segment.writer.frames
        audio = segment.writer.audio
        self.on_segment(
            SegmentFile(
                path=segment.writer.path,
                sequence=segment.sequence,
                start_ns=segment.start_ns,
                end_ns=end_ns,
                clock_source=self.clock.source,
                size_bytes=size_bytes,
                video_codec=self._codec,
                width=segment.size[0],
                height=segment.size[1],
                fps=frames * NS_PER_S / duration_ns if duration_ns > 0 else 0.0,
                audio_codec=audio.codec_context.name if audio and audio.codec_context else None,
                audio_note=self.audio_note,
                frames=frames,
            )
        )

    def abort(self) -> None:
        if self._segment is not None:
            self._segment.writer.abort()
            self._segment = None

    def _sps(self, packet: Packet[Stream]) -> bytes | None:
        """The packet's in-band SPS (Annex B, as FFmpeg's RTP depacketisers deliver it)."""
        spec = _SPS_TYPES.get(self._codec)
        if spec is None:
            return None
        mask, kind, shift = spec
        data = bytes(packet)
        for nal in data.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01"):
            if nal and (nal[0] & mask) >> shift == kind:
                return nal
        return None

    def _picture_size(self, packet: Packet[Stream]) -> tuple[int, int] | None:
        """Decode one keyframe for its size; the decoder guarded as every decoder here is."""
        ctx = CodecContext.create(self._codec, "r")
        assert isinstance(ctx, VideoCodecContext)
        ctx.options = {"codec_whitelist": DECODER_WHITELIST, "max_pixels": str(MAX_PIXELS)}
        try:
            frames = list(ctx.decode(packet)) + list(ctx.decode(None))
        except av.error.FFmpegError:
            return None
        frame = next((f for f in frames if isinstance(f, VideoFrame)), None)
        return (frame.width, frame.height) if frame is not None else None
