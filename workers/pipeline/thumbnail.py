"""Grab still images (JPEG) at given times, each by a seek: cost follows the thumbnail count,
not the video's length."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.container import InputContainer
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

from sparc_video.errors import MediaError
from sparc_video.models import ThumbnailOp, Timestamp
from workers.pipeline.media import (
    FrameConverter,
    decode_video,
    fit_size,
    frame_time_s,
    open_input,
    probe,
    start_time_s,
    undecodable,
    video_stream,
)
from workers.pipeline.progress import ProgressFn, ProgressReporter

# mjpeg quantiser scale, 2 (best) to 31: 3 is visually lossless at a fraction of 2's size.
JPEG_QUALITY = 3
_FF_QP2LAMBDA = 118
# How far before the target to seek when the plain seek lands too late; the last one (the
# whole way back) always succeeds.
_SEEK_BACK_OFF_S = (0.0, 2.0, 10.0, 60.0, float("inf"))


@dataclass(frozen=True)
class Thumbnail:
    path: Path
    width: int
    height: int
    timestamp_s: float  # media time of the frame actually used


def thumbnails(src: Path, out_dir: Path, op: ThumbnailOp, progress: ProgressFn) -> list[Thumbnail]:
    """Write `out_dir/thumb_NNN.jpg` for each of `op.timestamps`, in order.

    A time past the end (by more than half a frame) is MediaError(TIMESTAMP_OUT_OF_RANGE); a
    time at the very end gives the last frame. All times are checked before any work is done.
    """
    info = probe(src)
    frame_s = 1 / info.fps if info.fps > 0 else 1 / 25
    targets = [_resolve(ts, info.duration_s, frame_s) for ts in op.timestamps]
    width, height = fit_size(info.width, info.height, op.width, op.height, even=False)
    convert = FrameConverter(width, height, "yuv420p", jpeg=True)
    reporter = ProgressReporter(progress, info.duration_s)
    reporter.start()
    step_s = info.duration_s / max(1, len(targets))
    result: list[Thumbnail] = []
    with open_input(src) as container:
        vs = video_stream(container)
        grabber = _Grabber(container, vs, frame_s, reporter)
        for index, target_s in enumerate(targets):
            frame, time_s = grabber.frame_at(target_s, done_s=index * step_s, step_s=step_s)
            path = out_dir / f"thumb_{index:03d}.jpg"
            picture = convert(frame, vs.codec_context.sample_aspect_ratio)
            path.write_bytes(_jpeg(picture))
            result.append(Thumbnail(path, picture.width, picture.height, time_s))
            reporter.tick((index + 1) * step_s)
    reporter.finish()
    return result


def _resolve(ts: Timestamp, duration_s: float, frame_s: float) -> float:
    target = ts.resolve(duration_s)
    if target < 0 or target > duration_s + frame_s / 2:
        raise MediaError(
            f"thumbnail timestamp {ts} ({target:.3f} s) is outside the video, which is "
            f"{duration_s:.3f} s long",
            reason="TIMESTAMP_OUT_OF_RANGE",
        )
    return min(target, duration_s)


class _Grabber:
    def __init__(
        self, container: InputContainer, vs: VideoStream, frame_s: float, reporter: ProgressReporter
    ) -> None:
        self._container = container
        self._vs = vs
        self._frame_s = frame_s
        self._reporter = reporter
        self._origin_s = start_time_s(container)
        self._time_base = vs.time_base or Fraction(1, av.time_base)

    def frame_at(
        self, target_s: float, *, done_s: float, step_s: float
    ) -> tuple[VideoFrame, float]:
        """The first frame shown at or after `target_s` (within half a frame), or the last one."""
        for back_s in _SEEK_BACK_OFF_S:
            seek_s = max(0.0, target_s - back_s)
            self._seek(seek_s)
            found = self._decode_until(target_s, done_s, step_s)
            if seek_s == 0.0 or (found is not None and found[1] <= target_s + self._frame_s / 2):
                break
            # The seek overshot: a sparse index, or a container such as MPEG-TS that seeks by
            # timestamp to a frame that cannot be decoded without the ones before it.
        if found is None:
            raise MediaError(
                f"the source video cannot be decoded near {target_s:.3f} s", reason="UNDECODABLE"
            )
        return found

    def _seek(self, target_s: float) -> None:
        pts = int((target_s + self._origin_s) / self._time_base)
        try:
            # Lands on the keyframe at or before the time; PyAV flushes the decoder.
            self._container.seek(pts, stream=self._vs, backward=True)
        except av.error.FFmpegError:
            # No index to seek by: rewind and decode forward instead.
            try:
                self._container.seek(0)
            except av.error.FFmpegError as exc:
                raise undecodable(exc) from exc

    def _decode_until(
        self, target_s: float, done_s: float, step_s: float
    ) -> tuple[VideoFrame, float] | None:
        last: tuple[VideoFrame, float] | None = None
        threshold = target_s - self._frame_s / 2
        try:
            for packet in self._container.demux(self._vs):
                for frame in decode_video(self._vs, packet):
                    time_s = frame_time_s(frame, self._origin_s)
                    # Concealed garbage, from a seek that landed between keyframes.
                    if time_s is None or frame.is_corrupt:
                        continue
                    last = (frame, time_s)
                    reached = min(1.0, max(0.0, time_s / target_s)) if target_s > 0 else 0.0
                    self._reporter.tick(done_s + step_s * reached, frames=1)
                    if time_s >= threshold:
                        return last
        except av.error.InvalidDataError as exc:
            if last is None:
                raise undecodable(exc) from exc
        return last


def _jpeg(frame: VideoFrame) -> bytes:
    ctx = av.CodecContext.create("mjpeg", "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = frame.width, frame.height, frame.format.name
    ctx.time_base = Fraction(1, 25)
    # JPEG is full range; the converter made it so, and the encoder must say so.
    ctx.color_range = frame.color_range
    # A square pixel aspect makes the encoder write a JFIF header, which some viewers want.
    ctx.sample_aspect_ratio = Fraction(1, 1)
    ctx.qscale = True
    ctx.global_quality = JPEG_QUALITY * _FF_QP2LAMBDA
    frame.pts = 0
    frame.time_base = ctx.time_base
    frame.pict_type = PictureType.NONE
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)
