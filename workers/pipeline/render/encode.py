"""The re-encoding video pass: decode → filter (upright, scale, watermarks) → encode, with exact
trimming and frame-rate conversion on the way; one frame in, one out."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

import av
import av.error
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

from sparc_video.core.errors import MediaError
from sparc_video.media.safe_open import audio_stream, video_stream
from workers.pipeline.encoders import (
    AudioEncoder,
    add_audio_stream,
    add_video_stream,
)
from workers.pipeline.filters import FilterChain
from workers.pipeline.media import (
    decode_audio,
    decode_video,
    frame_duration_s,
    frame_time_s,
    start_time_s,
)
from workers.pipeline.progress import ProgressReporter

if TYPE_CHECKING:
    pass
from workers.pipeline.render.spec import VideoEncode, VideoPass
from workers.pipeline.render.streams import (
    LIMITED_RANGE,
    AudioMuxer,
    Clock,
    FrameRate,
    cut_audio,
    seek,
)


class EncodePass:
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
        self._clock = Clock(
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
        ctx.color_range = LIMITED_RANGE
        self._resampler = FrameRate(video.fps, self._length_s) if video.fps else None
        self._frames = 0
        self._video_done = False
        self._oas: AudioStream | None = None
        self._audio_mux = AudioMuxer(out, p.container)
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
            seek(self._inp, self._vs, self._start_s + self._origin_s, self._src_frame_s)
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
        cut = cut_audio(frame, at_s, self._length_s)
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
