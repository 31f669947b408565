"""The video pass: one read of the source that makes the export's video, streaming.

Either decode → filter (upright, scale, watermarks) → encode, with exact trimming and frame
rate conversion on the way; or a stream copy (remux, fast trim) of the packets, audio copied or
re-encoded. One frame (or packet) in, one out: memory stays flat whatever the video's length.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import av
import av.error
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.bitstream import BitStreamFilterContext
from av.container import InputContainer, OutputContainer
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

from sparc_video.core.errors import MediaError
from sparc_video.media.codecs import Container
from workers.pipeline.encoders import (
    AudioEncoder,
    VideoEncoder,
    add_audio_stream,
    add_video_stream,
)
from workers.pipeline.filters import FilterChain, FilterStep
from workers.pipeline.media import (
    MediaInfo,
    audio_stream,
    decode_audio,
    decode_video,
    frame_duration_s,
    frame_time_s,
    open_input,
    probe,
    start_time_s,
    undecodable,
    video_stream,
)
from workers.pipeline.progress import ProgressFn, ProgressReporter

if TYPE_CHECKING:
    from workers.pipeline.media import AnyPacket

_LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG
# How far before the start to seek when a seek lands after it (MPEG-TS seeks by timestamp, and
# its first decodable frame can be later); the last one (from the beginning) always works.
_SEEK_BACK_OFF_S = (0.0, 2.0, 10.0, 60.0, float("inf"))


@dataclass(frozen=True)
class VideoEncode:
    """Re-encode the pictures: `size` is the displayed size going into the filters."""

    encoder: VideoEncoder
    size: tuple[int, int]
    steps: tuple[FilterStep, ...]
    fps: Fraction | None = None


@dataclass(frozen=True)
class VideoPass:
    """Make `dst` from [start_s, end_s) of `src` (source seconds; end None: to the end)."""

    src: Path
    dst: Path
    container: Container
    start_s: float
    end_s: float | None
    video: VideoEncode | None  # None: copy the video stream
    audio: AudioEncoder | Literal["copy"] | None  # None: no audio
    operations: tuple[int, ...]
    label: str
    weight: float


@dataclass(frozen=True)
class VideoResult:
    info: MediaInfo
    first_keyframe_s: float | None  # a stream copy's first source keyframe
    encoder: str  # "" when the video was copied


def run_video_pass(p: VideoPass, progress: ProgressFn, source: MediaInfo) -> VideoResult:
    """Run `p`; `progress` is called at least every REPORT_INTERVAL_S and once at 100%, and
    whatever it raises stops the pass. `dst` is removed after any failure."""
    end_s = source.duration_s if p.end_s is None else min(p.end_s, source.duration_s)
    reporter = ProgressReporter(progress, max(0.0, end_s - p.start_s))
    reporter.start()
    options = {"movflags": "+faststart"} if p.container.edit_lists else {}
    first_key: float | None = None
    try:
        with open_input(p.src) as inp:
            out = av.open(str(p.dst), "w", format=p.container.format, container_options=options)
            try:
                if p.video is None:
                    first_key = _Copy(inp, out, p, p.end_s, reporter).run()
                else:
                    _Encode(inp, out, p, p.video, p.end_s, reporter).run()
            except BaseException:
                _close_after_failure(out)
                raise
            out.close()
    except BaseException:
        p.dst.unlink(missing_ok=True)
        raise
    reporter.finish()
    return VideoResult(probe(p.dst), first_key, p.video.encoder.encoder if p.video else "")


class _Encode:
    def __init__(
        self,
        inp: InputContainer,
        out: OutputContainer,
        p: VideoPass,
        video: VideoEncode,
        end_s: float | None,
        reporter: ProgressReporter,
    ) -> None:
        self._inp, self._out, self._reporter = inp, out, reporter
        self._vs = video_stream(inp)
        self._audio = audio_stream(inp) if p.audio is not None else None
        self._origin_s = start_time_s(inp)
        self._start_s = p.start_s
        self._length_s = None if end_s is None else end_s - p.start_s
        src_rate = self._vs.average_rate or self._vs.guessed_rate
        rate = video.fps or src_rate
        self._clock = _Clock(
            rate,
            self._vs.time_base,
            subdivide=video.fps is None and video.encoder.subdivides_time,
        )
        self._src_frame_s = 1 / float(src_rate) if src_rate else self._clock.frame_s
        self._sar = self._vs.codec_context.sample_aspect_ratio
        self._filters = FilterChain(video.size, video.steps, video.encoder.pix_fmt)
        width, height = self._filters.size
        self._ovs = add_video_stream(out, video.encoder, width, height, rate, self._clock.time_base)
        # Tagged like the source, so players use the same colour matrix; the filters' output
        # is limited range.
        ctx, dec = self._ovs.codec_context, self._vs.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc = (
            dec.colorspace,
            dec.color_primaries,
            dec.color_trc,
        )
        ctx.color_range = _LIMITED_RANGE
        self._resampler = _FrameRate(video.fps, self._length_s) if video.fps else None
        self._frames = 0
        self._video_done = False
        self._oas: AudioStream | None = None
        self._audio_mux = _AudioMuxer(out, p.container)
        self._audio_done = True
        self._audio_next_s = 0.0
        if self._audio is not None and isinstance(p.audio, AudioEncoder):
            src = self._audio.codec_context
            self._oas = add_audio_stream(out, p.audio, src.sample_rate, src.layout.nb_channels)
            self._audio_done = False

    def run(self) -> None:
        streams: list[VideoStream | AudioStream] = [self._vs]
        if self._oas is not None and self._audio is not None:
            streams.append(self._audio)
        if self._start_s > 0:
            _seek(self._inp, self._vs, self._start_s + self._origin_s, self._src_frame_s)
        try:
            # Demuxing both streams together keeps memory flat: the muxer interleaves as we go.
            for packet in self._inp.demux(streams):
                if packet.stream is self._vs:
                    if not self._video_done:
                        for frame in decode_video(self._vs, packet):
                            self._video_frame(frame)
                elif self._audio is not None and not self._audio_done:
                    for aframe in decode_audio(self._audio, packet):
                        self._audio_frame(aframe)
                if self._video_done and self._audio_done:
                    break
        except av.error.InvalidDataError as exc:
            # Demuxing stops at damage it cannot resync from; encode what came before, like
            # the ffmpeg tool, unless that is nothing at all.
            if self._frames == 0:
                raise MediaError(
                    f"the source video cannot be decoded ({exc.strerror})", reason="UNDECODABLE"
                ) from exc
        if self._resampler is not None:
            for picture, at_s in self._resampler.flush():
                self._emit(picture, at_s, self._resampler.frame_s)
        if self._frames == 0:
            raise MediaError(
                "the source video cannot be decoded: no picture in it could be decoded",
                reason="UNDECODABLE",
            )
        self._out.mux(self._ovs.encode(None))
        if self._oas is not None:
            self._audio_mux(self._oas.encode(None))

    def _video_frame(self, frame: VideoFrame) -> None:
        start_s = frame_time_s(frame, self._origin_s)
        if start_s is None:
            # No timestamps (some AVI): the frame follows the previous one.
            start_s = self._clock.next_s + self._start_s
        duration_s = frame_duration_s(frame, self._src_frame_s)
        at_s = start_s - self._start_s
        # Frames keep their place when they are nearest to it: within half a frame.
        tolerance = self._src_frame_s / 2
        if at_s < -tolerance:
            return  # decoded from the keyframe before the start
        if self._length_s is not None and at_s >= self._length_s - tolerance:
            self._video_done = True
            return
        picture = self._filters(frame, self._sar, start_s)
        if self._resampler is None:
            self._emit(picture, at_s, duration_s)
        else:
            for held, held_at in self._resampler.push(picture, at_s, duration_s):
                self._emit(held, held_at, self._resampler.frame_s)

    def _emit(self, picture: VideoFrame, at_s: float, duration_s: float) -> None:
        placed = self._clock.place(at_s, duration_s)
        if placed is None:
            return
        picture.time_base = self._clock.time_base
        picture.pts, picture.duration = placed
        # Encoders obey the frame type a frame carries, and decoded frames carry the source's:
        # let the encoder choose its own I/P/B structure, as the ffmpeg tool does.
        picture.pict_type = PictureType.NONE
        self._out.mux(self._ovs.encode(picture))
        self._frames += 1
        self._reporter.tick(at_s + duration_s, frames=1)

    def _audio_frame(self, frame: AudioFrame) -> None:
        assert self._oas is not None
        rate = frame.sample_rate
        if frame.pts is None or frame.time_base is None:
            frame.time_base = Fraction(1, rate)
            frame.pts = round((self._audio_next_s + self._start_s + self._origin_s) * rate)
        at_s = float(frame.pts * frame.time_base) - self._origin_s - self._start_s
        cut = _cut_audio(frame, at_s, self._length_s)
        if cut is None:
            if self._length_s is not None and at_s >= self._length_s:
                self._audio_done = True
            return
        frame, at_s = cut
        # Overlapping or pre-start audio would break the muxer's monotonic timestamps.
        if at_s < self._audio_next_s - 0.5 / rate:
            return
        self._audio_next_s = at_s + frame.samples / rate
        frame.time_base = Fraction(1, rate)
        frame.pts = round(at_s * rate)
        self._audio_mux(self._oas.encode(frame))


class _Copy:
    """Stream copy from the keyframe at or before the start. MP4/MOV keep times relative to
    the requested start, so the frames before it get negative times and the muxer writes an
    edit list that hides them; other containers start at the keyframe."""

    def __init__(
        self,
        inp: InputContainer,
        out: OutputContainer,
        p: VideoPass,
        end_s: float | None,
        reporter: ProgressReporter,
    ) -> None:
        self._inp, self._out, self._p, self._reporter = inp, out, p, reporter
        self._vs = video_stream(inp)
        self._audio = audio_stream(inp) if p.audio is not None else None
        self._origin_s = start_time_s(inp)
        self._end_s = end_s
        rate = self._vs.average_rate or self._vs.guessed_rate
        self._frame_s = 1 / float(rate) if rate else 1 / 25
        self._ovs = out.add_stream_from_template(self._vs, opaque=True)
        self._bsf: BitStreamFilterContext | None = None
        self._frame_clock = p.container.format == "avi"
        self._last_dts = -(2**62)
        self._video_done = False
        self._audio_done = False
        self._frames = 0
        self._zero_s = self._audio_from_s = 0.0
        if p.container.format == "avi":
            # AVI has no timestamps of its own, only a frame rate, and wants H.264 in Annex B.
            if rate:
                self._ovs.time_base = 1 / rate
            if self._vs.codec_context.name == "h264":
                self._bsf = BitStreamFilterContext("h264_mp4toannexb", self._vs, self._ovs)
            # The source's codec tag (copied again by the bitstream filter) may mean nothing
            # in AVI (MPEG-TS's stream type, say): let the muxer choose its own.
            ctx = self._ovs.codec_context
            if ctx is not None:
                ctx.codec_tag = "\0\0\0\0"
        self._oas: AudioStream | None = None
        self._audio_mux = _AudioMuxer(out, p.container)
        self._audio_copy = False
        self._audio_encode: AudioEncoder | None = None
        if self._audio is not None:
            if p.audio == "copy":
                copied = out.add_stream_from_template(self._audio, opaque=True)
                assert isinstance(copied, AudioStream)
                self._oas, self._audio_copy = copied, True
            elif isinstance(p.audio, AudioEncoder):
                src = self._audio.codec_context
                self._oas = add_audio_stream(out, p.audio, src.sample_rate, src.layout.nb_channels)
                self._audio_encode = p.audio
        self._audio_done = self._oas is None
        self._audio_next_s = 0.0

    def run(self) -> float:
        """Copy; returns the source time of the first keyframe copied."""
        start_s = self._p.start_s
        if start_s > 0:
            _seek_keyframe(self._inp, self._vs, start_s, self._origin_s)
        streams: list[VideoStream | AudioStream] = [self._vs]
        if self._audio is not None and self._oas is not None:
            streams.append(self._audio)
        # Until the start, packets are held from the latest keyframe at or before it, wherever
        # the seek landed (MPEG-TS seeks by timestamp, and the back-off lands early).
        held: list[AnyPacket] = []
        first_key_s: float | None = None if start_s > 0 else 0.0
        flowing = start_s <= 0
        if flowing:
            self._begin(0.0)
        for packet in self._inp.demux(streams):
            if packet.dts is None or packet.time_base is None:
                continue  # flush packets
            if not flowing:
                video = packet.stream is self._vs
                ts = packet.pts if packet.pts is not None else packet.dts
                at_s = float(ts * packet.time_base) - self._origin_s
                dts_s = float(packet.dts * packet.time_base) - self._origin_s
                if video and packet.is_keyframe and at_s <= start_s + 1e-6:
                    held, first_key_s = [packet], at_s
                    continue
                reached = video and (dts_s >= start_s or (packet.is_keyframe and at_s > start_s))
                if not reached:
                    if first_key_s is not None:
                        held.append(packet)
                    continue
                if first_key_s is None:  # no keyframe before the start: begin at this one
                    if not packet.is_keyframe:
                        continue
                    first_key_s = at_s
                flowing = True
                self._begin(first_key_s)
                for earlier in held:
                    self._copy(earlier)
                held = []
            if self._copy(packet):
                break
        if not flowing and first_key_s is not None:  # the end came first
            self._begin(first_key_s)
            for earlier in held:
                self._copy(earlier)
        if self._frames == 0:
            raise MediaError(
                "the source video has no keyframe to start a copy from", reason="UNDECODABLE"
            )
        if self._bsf is not None:
            for extra in self._bsf.filter(None):
                self._mux_filtered(extra)
        if self._audio_encode is not None and self._oas is not None:
            self._audio_mux(self._oas.encode(None))
        return first_key_s or 0.0

    def _begin(self, first_key_s: float) -> None:
        """Output time 0 is the requested start (MP4/MOV: an edit list hides what is before it)
        or the first keyframe."""
        edit_lists = self._p.container.edit_lists
        self._zero_s = self._p.start_s if edit_lists else first_key_s
        self._audio_from_s = self._p.start_s if edit_lists else first_key_s

    def _copy(self, packet: AnyPacket) -> bool:
        """Copy (or for audio maybe re-encode) one packet; True once both streams are done."""
        assert packet.dts is not None and packet.time_base is not None
        at_s = float(packet.dts * packet.time_base) - self._origin_s
        if packet.stream is self._vs:
            if self._video_done:
                return self._audio_done
            # Cut in decode order: every frame shown before the end keeps what it needs.
            if self._end_s is not None and at_s >= self._end_s:
                self._video_done = True
                return self._audio_done
            self._shift(packet, self._zero_s)
            self._mux_video(packet)
            self._frames += 1
            self._reporter.tick(at_s - self._p.start_s, frames=1)
            return False
        if self._audio_done:
            return self._video_done
        if self._end_s is not None and at_s >= self._end_s:
            self._audio_done = True
            return self._video_done
        end_at_s = at_s + float((packet.duration or 0) * packet.time_base)
        if end_at_s <= self._audio_from_s:
            return False
        if self._audio_copy and self._oas is not None:
            self._shift(packet, self._zero_s)
            packet.stream = self._oas
            self._out.mux(packet)
        else:
            self._encode_audio(packet, self._zero_s, self._audio_from_s)
        return False

    def _shift(self, packet: AnyPacket, zero_s: float) -> None:
        assert packet.time_base is not None
        ticks = round((zero_s + self._origin_s) / packet.time_base)
        if packet.pts is not None:
            packet.pts -= ticks
        if packet.dts is not None:
            packet.dts -= ticks

    def _mux_video(self, packet: AnyPacket) -> None:
        if self._bsf is None:
            self._mux_filtered(packet)
            return
        for filtered in self._bsf.filter(packet):
            self._mux_filtered(filtered)

    def _mux_filtered(self, packet: AnyPacket) -> None:
        packet.stream = self._ovs
        if self._frame_clock and packet.dts is not None and packet.time_base is not None:
            # AVI counts frames: times on its frame grid, strictly increasing.
            out_base = self._ovs.time_base
            assert out_base is not None
            factor = packet.time_base / out_base
            delay = max(0, round((packet.pts - packet.dts) * factor)) if packet.pts else 0
            dts = max(self._last_dts + 1, round(packet.dts * factor))
            duration = max(1, round(packet.duration * factor)) if packet.duration else 0
            packet.time_base = out_base
            packet.dts, packet.pts, packet.duration = dts, dts + delay, duration
            self._last_dts = dts
        self._out.mux(packet)

    def _encode_audio(self, packet: AnyPacket, zero_s: float, from_s: float) -> None:
        assert self._audio is not None and self._oas is not None
        length = None if self._end_s is None else self._end_s - from_s
        for frame in decode_audio(self._audio, packet):
            if frame.pts is None or frame.time_base is None:
                continue
            at_s = float(frame.pts * frame.time_base) - self._origin_s - from_s
            cut = _cut_audio(frame, at_s, length)
            if cut is None:
                continue
            frame, at_s = cut
            rate = frame.sample_rate
            if at_s < self._audio_next_s - 0.5 / rate:
                continue
            self._audio_next_s = at_s + frame.samples / rate
            frame.time_base = Fraction(1, rate)
            frame.pts = round((at_s + from_s - zero_s) * rate)
            self._audio_mux(self._oas.encode(frame))


class _AudioMuxer:
    """Muxes encoded audio. AVI keeps no audio timestamps, only order, and refuses the negative
    ones of an encoder's priming samples: there the audio is shifted to start at 0."""

    def __init__(self, out: OutputContainer, container: Container) -> None:
        self._out = out
        self._shift: int | None = None if container.format == "avi" else 0

    def __call__(self, packets: list[AnyPacket]) -> None:
        for packet in packets:
            if self._shift is None:
                self._shift = max(0, -(packet.dts or 0))
            if self._shift:
                if packet.dts is not None:
                    packet.dts += self._shift
                if packet.pts is not None:
                    packet.pts += self._shift
            self._out.mux(packet)


def _seek(inp: InputContainer, vs: VideoStream, target_s: float, frame_s: float) -> None:
    """Seek so that decoding starts at or before `target_s` (container time)."""
    time_base = vs.time_base or Fraction(1, av.time_base)
    for back_s in _SEEK_BACK_OFF_S:
        seek_s = max(0.0, target_s - back_s)
        _seek_to(inp, vs, seek_s, time_base)
        first = _first_frame_time(inp, vs)
        if seek_s == 0.0 or (first is not None and first <= target_s + frame_s / 2):
            _seek_to(inp, vs, seek_s, time_base)
            return


def _seek_keyframe(inp: InputContainer, vs: VideoStream, start_s: float, origin_s: float) -> float:
    """Seek to the keyframe at or before `start_s` (media time); returns its media time."""
    time_base = vs.time_base or Fraction(1, av.time_base)
    target_s = start_s + origin_s
    found = 0.0
    for back_s in _SEEK_BACK_OFF_S:
        seek_s = max(0.0, target_s - back_s)
        _seek_to(inp, vs, seek_s, time_base)
        key = _first_keyframe_time(inp, vs)
        if seek_s == 0.0 or (key is not None and key <= target_s + 1e-6):
            found = key - origin_s if key is not None else 0.0
            _seek_to(inp, vs, seek_s, time_base)
            break
    return max(0.0, found)


def _seek_to(inp: InputContainer, vs: VideoStream, seek_s: float, time_base: Fraction) -> None:
    try:
        # Lands on the keyframe at or before the time; PyAV flushes the decoders.
        inp.seek(int(seek_s / time_base), stream=vs, backward=True)
    except av.error.FFmpegError:
        # No index to seek by: rewind and decode forward instead.
        try:
            inp.seek(0)
        except av.error.FFmpegError as exc:
            raise undecodable(exc) from exc


def _first_frame_time(inp: InputContainer, vs: VideoStream) -> float | None:
    with contextlib.suppress(av.error.InvalidDataError):
        for packet in inp.demux(vs):
            for frame in decode_video(vs, packet):
                if frame.pts is not None and frame.time_base is not None and not frame.is_corrupt:
                    return float(frame.pts * frame.time_base)
    return None


def _first_keyframe_time(inp: InputContainer, vs: VideoStream) -> float | None:
    with contextlib.suppress(av.error.InvalidDataError):
        for packet in inp.demux(vs):
            if packet.is_keyframe and packet.pts is not None and packet.time_base is not None:
                return float(packet.pts * packet.time_base)
    return None


def _cut_audio(
    frame: AudioFrame, at_s: float, length_s: float | None
) -> tuple[AudioFrame, float] | None:
    """The part of `frame` (starting at `at_s`) inside [0, length_s), or None."""
    rate = frame.sample_rate
    samples = frame.samples
    head = max(0, round(-at_s * rate))
    tail = samples if length_s is None else min(samples, round((length_s - at_s) * rate))
    if tail <= head:
        return None
    if head == 0 and tail == samples:
        return frame, at_s
    data: Any = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if frame.format.is_planar:
        part = data[:, head:tail]
    else:
        part = data[:, head * channels : tail * channels]
    cut = AudioFrame.from_ndarray(np.ascontiguousarray(part), frame.format.name, frame.layout)
    cut.sample_rate = rate
    return cut, at_s + head / rate


class _FrameRate:
    """Frame rate conversion as FFmpeg's `fps` filter does it: output frame k shows the source
    frame on screen at k / rate (so frames are dropped or repeated)."""

    def __init__(self, rate: Fraction, length_s: float | None) -> None:
        self._rate = rate
        self.frame_s = 1 / float(rate)
        self._length_s = length_s
        self._held: tuple[VideoFrame, float, float] | None = None
        self._next = 0

    def push(
        self, picture: VideoFrame, at_s: float, duration_s: float
    ) -> Iterator[tuple[VideoFrame, float]]:
        if self._held is not None:
            yield from self._emit_until(at_s)
        self._held = (picture, at_s, duration_s)

    def flush(self) -> Iterator[tuple[VideoFrame, float]]:
        """The last frame, for as long as it is shown."""
        if self._held is not None:
            yield from self._emit_until(self._held[1] + self._held[2])
            self._held = None

    def _emit_until(self, until_s: float) -> Iterator[tuple[VideoFrame, float]]:
        assert self._held is not None
        picture = self._held[0]
        while True:
            at_s = float(self._next / self._rate)
            if at_s >= until_s - 1e-9:
                return
            if self._length_s is not None and at_s >= self._length_s - 1e-9:
                return
            self._next += 1
            yield picture, at_s


class _Clock:
    """Maps frame times (seconds from the output's start) to output timestamps.

    Times are kept (variable frame rates survive), except that a time within the source's
    rounding of the nominal frame grid is put exactly on it: Matroska and WebM store
    milliseconds, and frames at 33, 67, 100 ms would otherwise turn 30 fps into 29.99x fps.
    Without `subdivide` every frame goes on the grid.
    """

    # Output ticks per nominal frame: resolution for frames off the grid.
    SUBDIVISIONS = 100

    def __init__(
        self, rate: Fraction | None, src_time_base: Fraction | None, *, subdivide: bool = True
    ) -> None:
        self._rate = rate if rate is not None and 1 <= rate <= 240 else None
        self._ticks = self.SUBDIVISIONS if subdivide else 1
        self.time_base = (
            1 / (self._rate * self._ticks)
            if self._rate is not None
            else src_time_base or Fraction(1, 90_000)
        )
        self.frame_s = 1 / float(self._rate) if self._rate is not None else 1 / 25
        self._tolerance_s = max(float(src_time_base or 0), 0.001)
        if not subdivide:
            self._tolerance_s = self.frame_s / 2
        self._last_pts: int | None = None
        self.next_s = 0.0

    def place(self, start_s: float, duration_s: float) -> tuple[int, int] | None:
        """(pts, duration) in `time_base`, or None for a frame to drop."""
        # Before the presentation start: an edit list cuts it.
        if start_s < -self.frame_s / 2:
            return None
        pts = round(max(0.0, start_s) / self.time_base)
        if self._rate is not None:
            index = round(start_s * self._rate)
            if abs(index / self._rate - start_s) <= self._tolerance_s:
                pts = index * self._ticks
        # Encoders and muxers need strictly increasing times; the ffmpeg tool drops such
        # frames too.
        if self._last_pts is not None and pts <= self._last_pts:
            return None
        self._last_pts = pts
        self.next_s = start_s + duration_s
        return pts, max(1, round(duration_s / self.time_base))


def _close_after_failure(out: OutputContainer) -> None:
    # Closing writes the trailer of a half-written file, which can fail too; the error that
    # stopped us is the one to report, and the file is deleted anyway.
    with contextlib.suppress(av.error.FFmpegError):
        out.close()
