"""Re-encode a video to H.264/AAC in MP4, streaming: one frame in, one frame out."""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.error
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

from sparc_video.errors import MediaError
from sparc_video.models import TranscodeOp
from workers.pipeline.media import (
    FrameConverter,
    MediaInfo,
    audio_stream,
    decode_audio,
    decode_video,
    fit_size,
    frame_duration_s,
    frame_time_s,
    open_input,
    probe,
    start_time_s,
    video_stream,
)
from workers.pipeline.progress import ProgressFn, ProgressReporter

# Output codec names of TranscodeOp, and the FFmpeg encoder for each.
ENCODERS: dict[str, Literal["libx264"]] = {"h264": "libx264"}
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)  # fmt: skip
AUDIO_BIT_RATE = 128_000
_PIX_FMT = "yuv420p"
_LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG
# Sample rates AAC can signal compactly; anything else is resampled to 48 kHz.
_AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000,
                        11025, 8000})  # fmt: skip


def transcode(src: Path, dst: Path, op: TranscodeOp, progress: ProgressFn) -> MediaInfo:
    """Encode `src` to `dst` (MP4) as `op` asks; returns the probe of the result.

    `progress` is called at least every REPORT_INTERVAL_S and once at 100%; whatever it raises
    stops the transcode, and `dst` is removed then, as after any failure.
    """
    encoder = ENCODERS.get(op.codec)
    if encoder is None:
        raise MediaError(
            f"output codec {op.codec!r} is not supported; available: {', '.join(ENCODERS)}",
            reason="UNSUPPORTED_CODEC",
        )
    if op.preset not in X264_PRESETS:
        raise MediaError(
            f"preset {op.preset!r} is not an x264 preset; use one of: {', '.join(X264_PRESETS)}",
            reason="UNSUPPORTED_PRESET",
        )
    info = probe(src)
    width, height = fit_size(info.width, info.height, op.width, op.height, even=True)
    reporter = ProgressReporter(progress, info.duration_s)
    reporter.start()
    try:
        with open_input(src) as inp:
            out = av.open(str(dst), "w", format="mp4", container_options={"movflags": "+faststart"})
            try:
                _Transcoder(inp, out, encoder, op, width, height, reporter).run()
            except BaseException:
                _close_after_failure(out)
                raise
            out.close()
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    reporter.finish()
    return probe(dst)


class _Transcoder:
    def __init__(
        self,
        inp: InputContainer,
        out: OutputContainer,
        encoder: Literal["libx264"],
        op: TranscodeOp,
        width: int,
        height: int,
        reporter: ProgressReporter,
    ) -> None:
        self._inp = inp
        self._out = out
        self._reporter = reporter
        self._vs = video_stream(inp)
        self._audio = audio_stream(inp)
        self._origin_s = start_time_s(inp)
        rate = self._vs.average_rate or self._vs.guessed_rate
        self._clock = _Clock(rate, self._vs.time_base)
        self._sar = self._vs.codec_context.sample_aspect_ratio
        self._convert = FrameConverter(width, height, _PIX_FMT)

        self._ovs = out.add_stream(encoder, rate=rate) if rate else out.add_stream(encoder)
        ctx = self._ovs.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = width, height, _PIX_FMT
        ctx.time_base = self._clock.time_base
        self._ovs.time_base = self._clock.time_base
        # Tagged like the source, so players use the same colour matrix; FrameConverter's
        # output is limited range.
        dec = self._vs.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc = (
            dec.colorspace,
            dec.color_primaries,
            dec.color_trc,
        )
        ctx.color_range = _LIMITED_RANGE
        # libx264 defaults to slice threads here, which is much slower than frame threads.
        ctx.thread_type = "AUTO"
        ctx.thread_count = 0
        ctx.options = {"preset": op.preset}
        if op.bitrate_bps is not None:
            ctx.bit_rate = op.bitrate_bps
        # Without a bitrate libx264 uses its default CRF 23.
        self._frames = 0

        self._oas: AudioStream | None = None
        self._audio_next_s = 0.0
        if self._audio is not None:
            self._oas = self._add_audio_stream(self._audio)

    def _add_audio_stream(self, audio: AudioStream) -> AudioStream:
        src = audio.codec_context
        rate = src.sample_rate if src.sample_rate in _AAC_RATES else 48_000
        # Mono stays mono; anything else becomes stereo, which every player can play.
        layout = "mono" if src.layout.nb_channels == 1 else "stereo"
        oas = self._out.add_stream("aac", rate=rate, layout=layout)
        oas.bit_rate = AUDIO_BIT_RATE
        oas.codec_context.time_base = Fraction(1, rate)
        oas.time_base = Fraction(1, rate)
        return oas

    def run(self) -> None:
        streams: list[VideoStream | AudioStream] = [self._vs]
        if self._audio is not None:
            streams.append(self._audio)
        try:
            # Demuxing both streams together keeps memory flat: the muxer interleaves as we go.
            for packet in self._inp.demux(streams):
                if packet.stream is self._vs:
                    for frame in decode_video(self._vs, packet):
                        self._video_frame(frame)
                elif self._audio is not None and packet.stream is self._audio:
                    for aframe in decode_audio(self._audio, packet):
                        self._audio_frame(aframe)
        except av.error.InvalidDataError as exc:
            # Demuxing stops at damage it cannot resync from; encode what came before, like
            # the ffmpeg tool, unless that is nothing at all.
            if self._frames == 0:
                raise MediaError(
                    f"the source video cannot be decoded ({exc.strerror})", reason="UNDECODABLE"
                ) from exc
        if self._frames == 0:
            raise MediaError(
                "the source video cannot be decoded: no picture in it could be decoded",
                reason="UNDECODABLE",
            )
        self._out.mux(self._ovs.encode(None))
        if self._oas is not None:
            self._out.mux(self._oas.encode(None))

    def _video_frame(self, frame: VideoFrame) -> None:
        start_s = frame_time_s(frame, self._origin_s)
        if start_s is None:
            # No timestamps (some AVI): the frame follows the previous one.
            start_s = self._clock.next_s
        duration_s = frame_duration_s(frame, self._clock.frame_s)
        placed = self._clock.place(start_s, duration_s)
        if placed is None:
            return
        out = self._convert(frame, self._sar)
        out.time_base = self._clock.time_base
        out.pts, out.duration = placed
        # libx264 obeys the frame type a frame carries, and decoded frames carry the source's:
        # let the encoder choose its own I/P/B structure, as the ffmpeg tool does.
        out.pict_type = PictureType.NONE
        self._out.mux(self._ovs.encode(out))
        self._frames += 1
        self._reporter.tick(start_s + duration_s, frames=1)

    def _audio_frame(self, frame: AudioFrame) -> None:
        assert self._oas is not None
        rate = frame.sample_rate
        if frame.pts is None or frame.time_base is None:
            frame.time_base = Fraction(1, rate)
            frame.pts = round((self._audio_next_s + self._origin_s) * rate)
        pts = frame.pts
        assert pts is not None and frame.time_base is not None
        start_s = float(pts * frame.time_base) - self._origin_s
        # Overlapping or pre-start audio would break the muxer's monotonic timestamps.
        if start_s < self._audio_next_s - 0.5 / rate:
            return
        self._audio_next_s = start_s + frame.samples / rate
        frame.pts = pts - round(self._origin_s / frame.time_base)
        self._out.mux(self._oas.encode(frame))


class _Clock:
    """Maps source frame times to output timestamps.

    Times are kept (variable frame rates survive), except that a time within the source's
    rounding of the nominal frame grid is put exactly on it: Matroska and WebM store
    milliseconds, and frames at 33, 67, 100 ms would otherwise turn 30 fps into 29.99x fps.
    """

    # Output ticks per nominal frame: resolution for frames off the grid.
    SUBDIVISIONS = 100

    def __init__(self, rate: Fraction | None, src_time_base: Fraction | None) -> None:
        self._rate = rate if rate is not None and 1 <= rate <= 240 else None
        self.time_base = (
            1 / (self._rate * self.SUBDIVISIONS)
            if self._rate is not None
            else src_time_base or Fraction(1, 90_000)
        )
        self.frame_s = 1 / float(self._rate) if self._rate is not None else 1 / 25
        self._tolerance_s = max(float(src_time_base or 0), 0.001)
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
                pts = index * self.SUBDIVISIONS
        # x264 and the muxer need strictly increasing times; the ffmpeg tool drops such frames
        # too.
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
