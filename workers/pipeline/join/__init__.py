"""Join a camera time range into one video: the recordings' spans cut exactly at their ends, in
order, with each gap either left out or shown as a "NO RECORDING" slate of its length.

Where every cut falls where the coded streams allow and the recordings share their codec
parameters, the packets are copied (`join_copy`, which lists the rules). Otherwise the whole
range is re-encoded here (H.264 at near-transparent quality, AAC), which makes every cut
frame-accurate and lets slates and segments of different sizes, rates or codecs meet in one
stream. Either way the result is a MP4 file the export's operations then apply to, as if it
were the uploaded source.

Timing: a span's frames keep their spacing; the frame captured at recording offset t lands at
`span.output_offset + (t - span.source_offset)` in the joined video, so a frame's position
says when it was captured. Audio is resampled to 48 kHz stereo and laid on a sample clock that
is brought level with the video at every segment boundary (silence where a segment has none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from av.audio.resampler import AudioResampler
from av.container import InputContainer, OutputContainer
from av.video.frame import PictureType, VideoFrame
from PIL import Image, ImageDraw, ImageFont

from sparc_video.core.errors import PermanentProcessingError
from sparc_video.media.safe_open import audio_stream, open_file, video_stream
from workers.pipeline.join.copy import NotCopyable, copy_join, plan_copy
from workers.pipeline.join.spec import (
    EPSILON_S,
    JoinMethod,
    JoinProgress,
    JoinResult,
    JoinSegment,
    JoinSpec,
    segment_times,
)
from workers.pipeline.media import FrameConverter, decode_audio, decode_video, probe

__all__ = ["JoinMethod", "JoinResult", "JoinSegment", "JoinSpec", "join_segments", "segment_times"]

log = logging.getLogger(__name__)

METHOD = "re-encode"
# (media seconds written, total media seconds) of the re-encode.
_Progress = Callable[[float, float], None]
AUDIO_RATE = 48_000
# Output time base of the video: fine enough for any frame rate's timestamps.
VIDEO_TIME_BASE = Fraction(1, 90_000)
DEFAULT_FPS = Fraction(25)
SLATE_GREY = (96, 96, 96)
# Audio this close (samples) to where the written audio ends continues it without a gap.
AUDIO_SNAP = AUDIO_RATE // 50


def join_segments(spec: JoinSpec, dst: Path, report: JoinProgress) -> JoinResult:
    """Join by stream copy where that is exact, else by re-encoding (see the module doc)."""
    try:
        plan = plan_copy(spec)
    except NotCopyable as exc:
        reason = str(exc)
        log.info("joining %d segments by re-encoding: %s", len(spec.segments), reason)
        return reencode_segments(spec, dst, report, reason)
    log.info("joining %d segments by stream copy", len(spec.segments))
    return copy_join(plan, spec, dst, report)


def reencode_segments(
    spec: JoinSpec, dst: Path, report: JoinProgress, reason: str = ""
) -> JoinResult:
    """Decode every span and encode the joined video, cutting at the exact frames."""
    method = JoinMethod(METHOD, reason)

    def progress(done_s: float, total_s: float) -> None:
        report(method, done_s, total_s)

    progress(0.0, spec.duration_s)
    spans = [s for s in spec.segments if s.path is not None]
    if not spans:
        raise ValueError("a join needs at least one recording span")
    infos = [probe(s.path) for s in spans if s.path is not None]
    first = infos[0]
    width, height = first.width - first.width % 2, first.height - first.height % 2
    fps = Fraction(first.fps).limit_denominator(1001) if first.fps > 0 else DEFAULT_FPS
    with_audio = any(i.has_audio for i in infos)
    total = spec.duration_s
    offsets: list[float] = []
    with av.open(str(dst), "w", format="mp4") as out:
        writer = _Writer(out, width, height, fps, with_audio)
        position = 0.0
        for segment in spec.segments:
            offsets.append(position)
            if segment.path is None:
                writer.slate(segment, position, progress, total)
            else:
                writer.span(segment, position, progress, total)
            position += segment.duration_s
            writer.level_audio(position)
            progress(position, total)
        writer.close()
    if writer.last_pts < 0:
        raise PermanentProcessingError(
            "the recordings hold no picture inside the range (the footage there is shorter "
            "than a frame)",
            reason="NO_FOOTAGE",
        )
    return JoinResult(dst, tuple(offsets), method)


class _Writer:
    def __init__(
        self, out: OutputContainer, width: int, height: int, fps: Fraction, with_audio: bool
    ) -> None:
        self.out = out
        self.width = width
        self.height = height
        self.fps = fps
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = VIDEO_TIME_BASE
        video.time_base = VIDEO_TIME_BASE
        video.codec_context.thread_type = "AUTO"
        video.codec_context.thread_count = 0
        # An intermediate the operations re-encode or copy: close to lossless, quick to write.
        video.codec_context.options = {"preset": "veryfast", "crf": "16"}
        # Keyframes every 2 s: later fast trims and thumbnails seek in the joined video.
        video.codec_context.gop_size = max(1, round(2 * fps))
        self.video = video
        self.convert = FrameConverter(width, height, "yuv420p")
        self.audio = None
        self.samples = 0
        if with_audio:
            audio = out.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
            audio.codec_context.time_base = Fraction(1, AUDIO_RATE)
            audio.time_base = Fraction(1, AUDIO_RATE)
            self.audio = audio
        self.last_pts = -1

    def _video(self, frame: VideoFrame, at_s: float) -> None:
        pts = round(at_s / VIDEO_TIME_BASE)
        if pts <= self.last_pts:
            return  # a duplicate timestamp (rounding at a cut): one frame per instant
        self.last_pts = pts
        if frame.time_base is None:  # generated pictures (slates) carry no timing
            frame.time_base = VIDEO_TIME_BASE
        frame = self.convert(frame)
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = PictureType.NONE
        self.out.mux(self.video.encode(frame))

    def _samples(self, data: npt.NDArray[np.float32]) -> None:
        """Append planar stereo float samples at the audio clock."""
        if self.audio is None or data.shape[1] == 0:
            return
        for start in range(0, data.shape[1], 1024):
            chunk = np.ascontiguousarray(data[:, start : start + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = AUDIO_RATE
            frame.pts = self.samples
            frame.time_base = Fraction(1, AUDIO_RATE)
            self.samples += chunk.shape[1]
            self.out.mux(self.audio.encode(frame))

    def level_audio(self, position_s: float) -> None:
        """Pad with silence (or drop the excess) so the audio ends where the video does."""
        if self.audio is None:
            return
        target = round(position_s * AUDIO_RATE)
        if target > self.samples:
            self._samples(np.zeros((2, target - self.samples), dtype=np.float32))
        # Excess is dropped at the next segment's start (see span()), never rewritten.

    def slate(self, gap: JoinSegment, at_s: float, report: _Progress, total: float) -> None:
        picture = slate_picture(self.width, self.height, gap)
        count = max(1, round(gap.duration_s * self.fps))
        for index in range(count):
            t = index / self.fps
            if t >= gap.duration_s - EPSILON_S:
                break
            frame = VideoFrame.from_ndarray(picture, format="rgb24")
            self._video(frame, at_s + float(t))
            if index % 25 == 0:
                report(at_s + float(t), total)

    def span(self, seg: JoinSegment, at_s: float, report: _Progress, total: float) -> None:
        assert seg.path is not None
        begin, end = seg.source_offset_s, seg.source_offset_s + seg.duration_s
        with open_file(seg.path) as container:
            vs = video_stream(container)
            origin = _origin(container)
            if begin > 1.0 and vs.time_base is not None:
                container.seek(round((origin + begin) / vs.time_base), stream=vs, backward=True)
            audio = audio_stream(container) if self.audio is not None else None
            resampler = AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
            streams = [vs] + ([audio] if audio is not None else [])
            video_done = False
            audio_done = audio is None
            count = 0
            for packet in container.demux(*streams):
                if packet.stream is vs:
                    if video_done:
                        continue
                    for frame in decode_video(vs, packet):
                        t = _time(frame, origin)
                        if t is None or t < begin - EPSILON_S:
                            continue
                        if t >= end - EPSILON_S:
                            video_done = True
                            break
                        self._video(frame, at_s + t - begin)
                        count += 1
                        if count % 25 == 0:
                            report(at_s + t - begin, total)
                elif audio is not None and not audio_done:
                    for aframe in decode_audio(audio, packet):
                        for resampled in resampler.resample(aframe):
                            t = _time(resampled, origin)
                            if t is None:
                                continue
                            if t >= end:
                                audio_done = True
                                break
                            data = resampled.to_ndarray().astype(np.float32)
                            self._place_audio(data, at_s + t - begin, at_s, end - begin)
                # Audio packets near the cut may come after the last picture's.
                if video_done and audio_done:
                    break

    def _place_audio(
        self, data: npt.NDArray[np.float32], at_s: float, segment_at_s: float, length_s: float
    ) -> None:
        """Write the samples that fall inside the segment and after what is written."""
        first = round(at_s * AUDIO_RATE)
        # Within a few milliseconds of where the last samples ended: contiguous audio whose
        # timestamps merely jitter (resampling, AAC priming). Keep it gapless.
        if abs(first - self.samples) <= AUDIO_SNAP:
            first = self.samples
        last = min(first + data.shape[1], round((segment_at_s + length_s) * AUDIO_RATE))
        start = max(first, round(segment_at_s * AUDIO_RATE), self.samples)
        if last <= start:
            return
        if start > self.samples:
            self._samples(np.zeros((2, start - self.samples), dtype=np.float32))
        self._samples(data[:, start - first : last - first])

    def close(self) -> None:
        self.out.mux(self.video.encode(None))
        if self.audio is not None:
            self.out.mux(self.audio.encode(None))


def _origin(container: InputContainer) -> float:
    """Time of the first video frame, which a recording's offsets count from (its
    registration measured the duration from the smallest video packet time)."""
    vs = video_stream(container)
    assert vs.time_base is not None
    smallest: int | None = None
    for count, packet in enumerate(container.demux(vs)):
        if packet.pts is not None:
            smallest = packet.pts if smallest is None else min(smallest, packet.pts)
        if count >= 64:
            break
    container.seek(0)
    return float((smallest or 0) * vs.time_base)


def _time(frame: VideoFrame | av.AudioFrame, origin_s: float) -> float | None:
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * frame.time_base) - origin_s


def slate_picture(width: int, height: int, gap: JoinSegment) -> npt.NDArray[np.uint8]:
    """Grey, with "NO RECORDING" and the gap's wall-clock bounds in the middle."""
    image = Image.new("RGB", (width, height), SLATE_GREY)
    draw = ImageDraw.Draw(image)
    end_ns = gap.start_ns + round(gap.duration_s * 1e9)
    lines = [
        ("NO RECORDING", max(8, height // 8)),
        (f"{_utc(gap.start_ns)} - {_utc(end_ns)} UTC", max(6, height // 24)),
    ]
    y = height // 2 - sum(size for _, size in lines) // 2
    for text, size in lines:
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text(
            ((width - (right - left)) // 2 - left, y - top), text, fill=(230, 230, 230), font=font
        )
        y += int(bottom - top) + size // 2
    return np.asarray(image, dtype=np.uint8)


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
