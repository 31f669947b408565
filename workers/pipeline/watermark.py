"""Watermark pictures: an image from storage, a line of text or a running capture clock, as
RGBA ready to overlay.

Text is rendered with Pillow (this FFmpeg has no drawtext, and a filter description must never
carry user text anyway): whatever the text says, it only ever becomes pixels. Images are
untrusted uploads: only PNG, JPEG and WebP are decoded, and their size is checked before any
pixel is.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from sparc_video.core.errors import MediaError, PermanentProcessingError
from sparc_video.exports.operations import WatermarkOp
from sparc_video.media import capture_clock
from workers.pipeline.filters import LiveOverlay, Overlay

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_IMAGE_PIXELS = 8192 * 8192
# Text height as a fraction of the frame height when no scale is given.
TEXT_HEIGHT = 0.04
MARGIN = 0.02  # of the frame width, when no margin is given
_MIN_FONT_PX = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def watermark_overlay(
    op: WatermarkOp,
    frame_width: int,
    frame_height: int,
    assets: Mapping[str, Path],
    capture_time: CaptureTime | None = None,
) -> Overlay | LiveOverlay:
    """The overlay `op` draws on frames of the given size; with a clock, one whose picture
    follows each frame's source time (`capture_time`: when the source's frame at a time was
    captured, used when the op has no base time of its own)."""
    if op.clock is not None:
        return LiveOverlay(_ClockPictures(op, frame_width, frame_height, capture_time))
    if op.image_key:
        picture = _image(op, frame_width, frame_height, assets)
    else:
        picture = _TextPicture(op, op.text, frame_width, frame_height).draw(op.text)
    return _placed(op, picture, frame_width, frame_height)


def _placed(
    op: WatermarkOp, picture: npt.NDArray[np.uint8], frame_width: int, frame_height: int
) -> Overlay:
    if op.opacity < 1.0:
        alpha = picture[:, :, 3].astype(np.float32) * op.opacity
        picture[:, :, 3] = np.rint(alpha).astype(np.uint8)
    x, y = _position(op, frame_width, frame_height, picture.shape[1], picture.shape[0])
    # On even pixels: FFmpeg's overlay rounds 4:2:0 positions down to them anyway, and the
    # Overlay should say where the picture really is.
    return Overlay(picture, x - x % 2, y - y % 2)


# When the source's frame at a time (seconds) was captured; None outside the footage.
CaptureTime = Callable[[float], datetime | None]


def _ns(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


class _ClockPictures:
    """The clock's overlay for a frame's source time: base time + that time, or the source's
    own capture time of that frame (a camera range with closed gaps jumps over them), formatted.

    One picture per distinct text (per second, or per millisecond with %L), rendered once and
    cached, so a clock costs a Pillow render a second, not a frame. The canvas is sized for the
    widest digits, so the clock does not move as its digits change.
    """

    CACHE = 64

    def __init__(
        self,
        op: WatermarkOp,
        frame_width: int,
        frame_height: int,
        capture_time: CaptureTime | None,
    ) -> None:
        assert op.clock is not None
        clock = op.clock
        # An explicit base time wins; else the source's capture time of each frame.
        self._capture_time = capture_time if clock.base_time_ns is None else None
        start = self._capture_time(0.0) if self._capture_time is not None else None
        base_ns = clock.base_time_ns if start is None else _ns(start)
        if base_ns is None:
            raise PermanentProcessingError(
                "the watermark clock has no base_time and the source has no capture time",
                reason="NO_CAPTURE_TIME",
            )
        self._op = op
        self._base_ns = base_ns
        self._tokens = capture_clock.parse_format(clock.format)
        self._zone = capture_clock.time_zone(clock.time_zone)
        self._prefix = f"{op.text} " if op.text.strip() else ""
        self._size = (frame_width, frame_height)
        sample = self._text(0.0)
        font = _TextPicture.font_for(op, sample, frame_width, frame_height)
        widest = max("0123456789", key=font.getlength)
        template = self._prefix + re.sub(
            r"\d", widest, capture_clock.render(self._tokens, self._when(0.0))
        )
        self._picture = _TextPicture(op, template, frame_width, frame_height)
        self._cache: OrderedDict[str, Overlay] = OrderedDict()
        # Thumbnail decoders share the pass's filters across threads.
        self._lock = threading.Lock()

    def _when(self, at_s: float) -> datetime:
        captured = self._capture_time(at_s) if self._capture_time is not None else None
        if captured is None:  # a base time, or (rounding) just past the footage's end
            return capture_clock.at(self._base_ns, at_s, self._zone)
        return capture_clock.at(_ns(captured), 0.0, self._zone)

    def _text(self, at_s: float) -> str:
        return self._prefix + capture_clock.render(self._tokens, self._when(at_s))

    def __call__(self, at_s: float | None) -> tuple[str, Overlay]:
        text = self._text(max(0.0, at_s or 0.0))
        with self._lock:
            overlay = self._cache.get(text)
            if overlay is None:
                picture = self._picture.draw(text)
                overlay = _placed(self._op, picture, *self._size)
                self._cache[text] = overlay
                if len(self._cache) > self.CACHE:
                    self._cache.popitem(last=False)
            return text, overlay


def _image(
    op: WatermarkOp, frame_width: int, frame_height: int, assets: Mapping[str, Path]
) -> npt.NDArray[np.uint8]:
    path = assets.get(op.image_key)
    if path is None or not path.is_file():
        raise MediaError(
            f"the watermark image {op.image_key!r} was not downloaded", reason="WATERMARK_MISSING"
        )
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise MediaError(
                    f"the watermark image is {image.width}x{image.height}: more than "
                    f"{MAX_IMAGE_PIXELS:,} pixels",
                    reason="INVALID_WATERMARK",
                )
            rgba = image.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(
            f"the watermark image {op.image_key!r} is not a PNG, JPEG or WebP image Pillow can "
            f"read ({type(exc).__name__})",
            reason="INVALID_WATERMARK",
        ) from exc
    margin = _margin(op, frame_width)
    if op.scale > 0:
        width = max(1, round(frame_width * op.scale))
        height = max(1, round(rgba.height * width / rgba.width))
    else:
        # Natural size, shrunk (never enlarged) to fit inside the margins.
        room_w = max(1, frame_width - 2 * margin)
        room_h = max(1, frame_height - 2 * margin)
        factor = min(1.0, room_w / rgba.width, room_h / rgba.height)
        width = max(1, round(rgba.width * factor))
        height = max(1, round(rgba.height * factor))
    if (width, height) != rgba.size:
        rgba = rgba.resize((width, height), Image.Resampling.LANCZOS)
    return np.array(rgba, dtype=np.uint8)


class _TextPicture:
    """One line of text in the watermark's font, size and colours, on a canvas sized for
    `template` (the text itself, or a clock's widest reading)."""

    def __init__(self, op: WatermarkOp, template: str, frame_width: int, frame_height: int):
        self._font = self.font_for(op, template, frame_width, frame_height)
        self._stroke = max(1, round(self._font.size) // 12)
        left, top, right, bottom = ImageDraw.Draw(Image.new("RGBA", (1, 1))).textbbox(
            (0, 0), template, font=self._font, stroke_width=self._stroke
        )
        self._origin = (-round(left), -round(top))
        self._canvas = (max(1, round(right - left)), max(1, round(bottom - top)))
        self._colour = tuple(int(op.text_color[i : i + 2], 16) for i in (1, 3, 5))

    @staticmethod
    def font_for(
        op: WatermarkOp, template: str, frame_width: int, frame_height: int
    ) -> ImageFont.FreeTypeFont:
        size = max(_MIN_FONT_PX, round(frame_height * TEXT_HEIGHT))
        if op.scale > 0:
            # Fit the text's width to the fraction of the frame asked for.
            natural = _text_box(template, 100)[0]
            size = max(_MIN_FONT_PX, round(100 * frame_width * op.scale / max(1, natural)))
        font = ImageFont.load_default(size=size)
        assert isinstance(font, ImageFont.FreeTypeFont)
        return font

    def draw(self, text: str) -> npt.NDArray[np.uint8]:
        picture = Image.new("RGBA", self._canvas, (0, 0, 0, 0))
        ImageDraw.Draw(picture).text(
            self._origin,
            text,
            font=self._font,
            fill=(*self._colour, 255),
            stroke_width=self._stroke,
            stroke_fill=(0, 0, 0, 255),
        )
        return np.array(picture, dtype=np.uint8)


def _text_box(text: str, size: int) -> tuple[int, int]:
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGBA", (1, 1))).textbbox(
        (0, 0), text, font=font
    )
    return round(right - left), round(bottom - top)


def _margin(op: WatermarkOp, frame_width: int) -> int:
    return op.margin if op.margin is not None else round(frame_width * MARGIN)


def _position(
    op: WatermarkOp, frame_width: int, frame_height: int, width: int, height: int
) -> tuple[int, int]:
    margin = _margin(op, frame_width)
    if op.position == "center":
        x, y = (frame_width - width) // 2, (frame_height - height) // 2
    else:
        vertical, horizontal = op.position.split("_")
        x = margin if horizontal == "left" else frame_width - width - margin
        y = margin if vertical == "top" else frame_height - height - margin
    return x + op.offset_x, y + op.offset_y
