"""Grab still images (JPEG, PNG, WebP) or a sprite sheet at given times, each by a seek: cost
follows the number of frames, not the video's length.

The frames go through the filters of the operations before the thumbnail (scale, watermark)
on their way to the image, so a thumbnail shows the video as those operations make it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from sparc_video.core.errors import MediaError
from sparc_video.exports.models import ThumbnailOp
from sparc_video.exports.plan import compile_plan, sprite_grid
from sparc_video.media.safe_open import open_file, video_stream
from sparc_video.media.still import encode_jpeg
from workers.pipeline import progress as progress_module
from workers.pipeline.filters import FilterChain, Resize
from workers.pipeline.media import decode_video, frame_time_s, probe, start_time_s, undecodable
from workers.pipeline.planner import ThumbnailPass, build_passes
from workers.pipeline.progress import ProgressFn, ProgressReporter

# Pillow's JPEG and WebP quality (0-100) for sprite sheets and WebP images.
PILLOW_QUALITY = 85
# How far before the target to seek when the plain seek lands too late; the last one (the
# whole way back) always succeeds.
_SEEK_BACK_OFF_S = (0.0, 2.0, 10.0, 60.0, float("inf"))
_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


@dataclass(frozen=True)
class Thumbnail:
    path: Path
    width: int
    height: int
    timestamp_s: float  # media time of the frame actually used


@dataclass(frozen=True)
class SpriteSheet:
    path: Path
    width: int
    height: int
    columns: int
    rows: int
    tile_width: int
    tile_height: int
    tile_times_s: tuple[float, ...]


def thumbnails(src: Path, out_dir: Path, op: ThumbnailOp, progress: ProgressFn) -> list[Thumbnail]:
    """Write `out_dir/thumb_NNN.<ext>` for each of `op.timestamps`, in order (one sprite sheet
    `out_dir/sprite.<ext>` with `op.sprite`, reported as one Thumbnail).

    A time past the end (by more than half a frame) is MediaError(TIMESTAMP_OUT_OF_RANGE); a
    time at the very end gives the last frame. All times are checked before any work is done.
    """
    info = probe(src)
    (thumb_pass,) = build_passes(compile_plan([op]), src, info, out_dir, {})
    assert isinstance(thumb_pass, ThumbnailPass)
    result = run_thumbnail_pass(thumb_pass, progress, out_dir=out_dir)
    if isinstance(result, SpriteSheet):
        return [Thumbnail(result.path, result.width, result.height, result.tile_times_s[0])]
    return result


def run_thumbnail_pass(
    p: ThumbnailPass, progress: ProgressFn, *, out_dir: Path | None = None
) -> list[Thumbnail] | SpriteSheet:
    """The images of `p` (media times are those of the video the operation applies to).

    Each frame is an independent seek, so DECODERS decoders grab them side by side, in threads
    (PyAV lets go of the GIL while decoding): one frame-threaded decoder stalls on every seek
    while its threads refill. Progress and cancellation stay on the calling thread, and files
    are written only once every frame is there.
    """
    out_dir = out_dir or p.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    fmt = p.op.format
    count = len(p.times_s)
    length = max(1e-3, count * p.frame_s)
    reporter = ProgressReporter(progress, length)
    reporter.start()
    shared = _Shared()
    groups = [list(range(first, count, DECODERS)) for first in range(min(DECODERS, count))]
    grabbed: dict[int, _Grabbed] = {}
    with ThreadPoolExecutor(len(groups), thread_name_prefix="thumbnails") as pool:
        futures = [pool.submit(_grab_group, p, group, shared) for group in groups]
        try:
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=max(0.01, progress_module.REPORT_INTERVAL_S))
                reporter.tick(shared.done * length / count, frames=shared.take_frames())
            for future in futures:
                grabbed.update(future.result())
        except BaseException:
            shared.stop.set()  # the other decoders stop at their next frame
            raise
    reporter.tick(length, frames=shared.take_frames())
    ordered = [grabbed[index] for index in range(count)]
    if p.op.sprite:
        columns, rows = sprite_grid(count, p.op.sprite_columns)
        tile_w, tile_h = p.image_size
        sheet = np.zeros((rows * tile_h, columns * tile_w, 3), dtype=np.uint8)
        for index, item in enumerate(ordered):
            row, col = divmod(index, columns)
            sheet[row * tile_h : (row + 1) * tile_h, col * tile_w : (col + 1) * tile_w] = item.tile
        path = out_dir / f"sprite{_EXTENSIONS[fmt]}"
        path.write_bytes(_pillow(sheet, fmt))
        reporter.finish()
        times = tuple(item.media_s for item in ordered)
        return SpriteSheet(
            path, sheet.shape[1], sheet.shape[0], columns, rows, tile_w, tile_h, times
        )
    result: list[Thumbnail] = []
    for index, item in enumerate(ordered):
        path = out_dir / f"thumb_{index:03d}{_EXTENSIONS[fmt]}"
        path.write_bytes(item.data)
        result.append(Thumbnail(path, item.width, item.height, item.media_s))
    reporter.finish()
    return result


# Decoders grabbing a pass's frames side by side (see run_thumbnail_pass).
DECODERS = 2


class _Stopped(Exception):
    """Another decoder failed, or the pass was cancelled."""


class _Shared:
    """What the decoder threads tell the calling thread (ints: safe under the GIL)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.done = 0
        self._frames = 0
        self._taken = 0

    def frame(self) -> None:
        if self.stop.is_set():
            raise _Stopped()
        self._frames += 1

    def take_frames(self) -> int:
        frames = self._frames
        delta, self._taken = frames - self._taken, frames
        return delta


@dataclass(frozen=True)
class _Grabbed:
    media_s: float
    width: int
    height: int
    data: bytes = b""
    tile: Any = None  # an RGB array


def _grab_group(p: ThumbnailPass, indexes: list[int], shared: _Shared) -> dict[int, _Grabbed]:
    """One decoder's share of the frames: encoded images (or sprite tiles) by index."""
    jpeg_frames = p.op.format == "jpeg" and not p.op.sprite
    convert = FilterChain(
        p.source_size,
        (*p.steps, Resize(*p.image_size)),
        "yuv420p" if jpeg_frames else "rgb24",
        full_range=True,
    )
    grabbed: dict[int, _Grabbed] = {}
    try:
        with open_file(p.src) as container:
            vs = video_stream(container)
            grabber = _Grabber(container, vs, p.frame_s, shared.frame)
            sar = vs.codec_context.sample_aspect_ratio
            for index in indexes:
                frame, time_s = grabber.frame_at(p.times_s[index])
                picture = convert(frame, sar, time_s)
                media_s = max(0.0, time_s - p.segment_start_s)
                size = (picture.width, picture.height)
                if p.op.sprite:
                    grabbed[index] = _Grabbed(media_s, *size, tile=picture.to_ndarray())
                elif jpeg_frames:
                    grabbed[index] = _Grabbed(media_s, *size, data=encode_jpeg(picture))
                else:
                    data = _pillow(picture.to_ndarray(), p.op.format)
                    grabbed[index] = _Grabbed(media_s, *size, data=data)
                shared.done += 1
    except BaseException:
        shared.stop.set()
        raise
    return grabbed


def _pillow(rgb: np.ndarray, fmt: str) -> bytes:
    image = Image.fromarray(rgb, "RGB")
    buffer = io.BytesIO()
    save: dict[str, Callable[[], None]] = {
        "jpeg": lambda: image.save(buffer, "JPEG", quality=PILLOW_QUALITY),
        "png": lambda: image.save(buffer, "PNG", optimize=False, compress_level=6),
        "webp": lambda: image.save(buffer, "WEBP", quality=PILLOW_QUALITY, method=4),
    }
    save[fmt]()
    return buffer.getvalue()


class _Grabber:
    def __init__(
        self,
        container: InputContainer,
        vs: VideoStream,
        frame_s: float,
        on_frame: Callable[[], None],
    ) -> None:
        self._container = container
        self._vs = vs
        self._frame_s = frame_s
        self._on_frame = on_frame
        self._origin_s = start_time_s(container)
        self._time_base = vs.time_base or Fraction(1, av.time_base)

    def frame_at(self, target_s: float) -> tuple[VideoFrame, float]:
        """The first frame shown at or after `target_s` (within half a frame), or the last one."""
        for back_s in _SEEK_BACK_OFF_S:
            seek_s = max(0.0, target_s - back_s)
            self._seek(seek_s)
            found = self._decode_until(target_s)
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

    def _decode_until(self, target_s: float) -> tuple[VideoFrame, float] | None:
        last: tuple[VideoFrame, float] | None = None
        threshold = target_s - self._frame_s / 2
        # Frames shown well before the target that no other frame refers to (most B-frames)
        # need not be decoded at all: with B-frames, that is about half the work of a seek.
        skip_before = threshold - 2 * self._frame_s
        ctx = self._vs.codec_context
        try:
            for packet in self._container.demux(self._vs):
                early = (
                    packet.pts is not None
                    and packet.time_base is not None
                    and float(packet.pts * packet.time_base) - self._origin_s < skip_before
                )
                ctx.skip_frame = "NONREF" if early else "DEFAULT"
                for frame in decode_video(self._vs, packet):
                    time_s = frame_time_s(frame, self._origin_s)
                    # Concealed garbage, from a seek that landed between keyframes.
                    if time_s is None or frame.is_corrupt:
                        continue
                    last = (frame, time_s)
                    self._on_frame()
                    if time_s >= threshold:
                        return last
        except av.error.InvalidDataError as exc:
            if last is None:
                raise undecodable(exc) from exc
        finally:
            ctx.skip_frame = "DEFAULT"
        return last
