"""The re-encoding video pass: decode → filter (upright, scale, watermarks) → encode, with exact
trimming and frame-rate conversion on the way; one frame in, one out.

The three overlap (see `stages`): decoding, with all the timing decisions (trim, frame rate,
output timestamps), filtering, then encoding and muxing in the caller's thread, which reports
progress. The encoder and muxer see the same calls in the same order whether the stages run in
threads or not, so the file is the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

from sparc_video.core.errors import MediaError
from sparc_video.media.safe_open import audio_stream, video_stream
from workers.pipeline.cores import ThreadBudget
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
from workers.pipeline.render.spec import VideoEncode, VideoPass
from workers.pipeline.render.stages import Pipeline
from workers.pipeline.render.streams import (
    LIMITED_RANGE,
    AudioMuxer,
    Clock,
    FrameRate,
    cut_audio,
    seek,
)


@dataclass
class _Picture:
    """A decoded frame (filtered, once through the filter stage) and where it goes in the
    output: (pts, duration, media time done) per output frame; a frame rate conversion may
    show it several times."""

    frame: VideoFrame
    start_s: float  # source time, for timed filters
    placements: list[tuple[int, int, float]]


_Item = _Picture | AudioFrame


class EncodePass:
    def __init__(
        self,
        inp: InputContainer,
        out: OutputContainer,
        p: VideoPass,
        video: VideoEncode,
        end_s: float | None,
        reporter: ProgressReporter,
        budget: ThreadBudget,
    ) -> None:
        self._inp, self._out, self._reporter, self._budget = inp, out, reporter, budget
        self._vs = video_stream(inp)
        self._vs.codec_context.thread_count = budget.codec_threads
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
        self._filters = FilterChain(
            video.size, video.steps, video.encoder.pix_fmt, threads=budget.codec_threads
        )
        width, height = self._filters.size
        self._ovs = add_video_stream(
            out, video.encoder, width, height, rate, self._clock.time_base, budget
        )
        # Tagged like the source, so players use the same colour matrix; the filters' output
        # is limited range.
        ctx, dec = self._ovs.codec_context, self._vs.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc = (
            dec.colorspace,
            dec.color_primaries,
            dec.color_trc,
        )
        ctx.color_range = LIMITED_RANGE
        self._resampler: FrameRate[_Picture] | None = (
            FrameRate(video.fps, self._length_s) if video.fps else None
        )
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
        with Pipeline(threaded=self._budget.pipelined) as pipe:
            decoded = pipe.source("decode", self._decoded())
            pipe.drain("encode", pipe.map("filter", decoded, self._filter), self._encode)
        self._out.mux(self._ovs.encode(None))
        if self._oas is not None:
            self._audio_mux(self._oas.encode(None))

    def _decoded(self) -> Iterator[_Item]:
        """Demux and decode, deciding which frames go where: the first stage."""
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
                            yield from self._video_frame(frame)
                elif self._audio is not None and not self._audio_done:
                    for aframe in decode_audio(self._audio, packet):
                        cut = self._audio_frame(aframe)
                        if cut is not None:
                            yield cut
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
            held = self._resampler.flush()
            yield from self._placed(held, self._resampler.frame_s)
        if self._frames == 0:
            raise MediaError(
                "the source video cannot be decoded: no picture in it could be decoded",
                reason="UNDECODABLE",
            )

    def _video_frame(self, frame: VideoFrame) -> Iterator[_Picture]:
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
        picture = _Picture(frame, start_s, [])
        if self._resampler is None:
            yield from self._placed(iter([(picture, at_s)]), duration_s)
        else:
            # The resampler holds each frame until the next one says how long it shows: what
            # it gives back are earlier frames.
            held = self._resampler.push(picture, at_s, duration_s)
            yield from self._placed(held, self._resampler.frame_s)

    def _placed(
        self, pictures: Iterator[tuple[_Picture, float]], duration_s: float
    ) -> Iterator[_Picture]:
        """`pictures` (each at an output time) with their output timestamps, each picture
        once, whatever the number of times it shows; one never placed is left out."""
        current: _Picture | None = None
        for picture, at_s in pictures:
            placed = self._clock.place(at_s, duration_s)
            if placed is None:
                continue
            if current is not None and current is not picture:
                yield current
            current = picture
            current.placements.append((*placed, at_s + duration_s))
            self._frames += 1
        if current is not None:
            yield current

    def _filter(self, item: _Item) -> _Item:
        """The second stage: the filters, for the pictures that are shown."""
        if isinstance(item, _Picture):
            item.frame = self._filters(item.frame, self._sar, item.start_s)
        return item

    def _encode(self, item: _Item) -> None:
        """The last stage: encode and mux, report progress (the cancellation point)."""
        if not isinstance(item, _Picture):
            assert self._oas is not None
            self._audio_mux(self._oas.encode(item))
            return
        picture = item.frame
        for pts, duration, done_s in item.placements:
            picture.time_base = self._clock.time_base
            picture.pts, picture.duration = pts, duration
            # Encoders obey the frame type a frame carries, and decoded frames carry the
            # source's: let the encoder choose its own I/P/B structure, as the ffmpeg tool does.
            picture.pict_type = PictureType.NONE
            self._out.mux(self._ovs.encode(picture))
            self._reporter.tick(done_s, frames=1)

    def _audio_frame(self, frame: AudioFrame) -> AudioFrame | None:
        """The part of an audio frame to encode, timed for the output, or None."""
        rate = frame.sample_rate
        if frame.pts is None or frame.time_base is None:
            frame.time_base = Fraction(1, rate)
            frame.pts = round((self._audio_next_s + self._start_s + self._origin_s) * rate)
        at_s = float(frame.pts * frame.time_base) - self._origin_s - self._start_s
        cut = cut_audio(frame, at_s, self._length_s)
        if cut is None:
            if self._length_s is not None and at_s >= self._length_s:
                self._audio_done = True
            return None
        frame, at_s = cut
        # Overlapping or pre-start audio would break the muxer's monotonic timestamps.
        if at_s < self._audio_next_s - 0.5 / rate:
            return None
        self._audio_next_s = at_s + frame.samples / rate
        frame.time_base = Fraction(1, rate)
        frame.pts = round(at_s * rate)
        return frame
