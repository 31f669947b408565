"""Watermark pictures: an image from storage or a line of text, as RGBA ready to overlay.

Text is rendered with Pillow (this FFmpeg has no drawtext, and a filter description must never
carry user text anyway): whatever the text says, it only ever becomes pixels. Images are
untrusted uploads: only PNG, JPEG and WebP are decoded, and their size is checked before any
pixel is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from sparc_video.errors import MediaError
from sparc_video.models import WatermarkOp
from workers.pipeline.filters import Overlay

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_IMAGE_PIXELS = 8192 * 8192
# Text height as a fraction of the frame height when no scale is given.
TEXT_HEIGHT = 0.04
MARGIN = 0.02  # of the frame width, when no margin is given
_MIN_FONT_PX = 8


def watermark_overlay(
    op: WatermarkOp, frame_width: int, frame_height: int, assets: Mapping[str, Path]
) -> Overlay:
    """The overlay `op` draws on frames of the given size."""
    if op.image_key:
        picture = _image(op, frame_width, frame_height, assets)
    else:
        picture = _text(op, frame_width, frame_height)
    if op.opacity < 1.0:
        alpha = picture[:, :, 3].astype(np.float32) * op.opacity
        picture[:, :, 3] = np.rint(alpha).astype(np.uint8)
    x, y = _position(op, frame_width, frame_height, picture.shape[1], picture.shape[0])
    return Overlay(picture, x, y)


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


def _text(op: WatermarkOp, frame_width: int, frame_height: int) -> npt.NDArray[np.uint8]:
    size = max(_MIN_FONT_PX, round(frame_height * TEXT_HEIGHT))
    if op.scale > 0:
        # Fit the text's width to the fraction of the frame asked for.
        natural = _text_box(op.text, 100)[0]
        size = max(_MIN_FONT_PX, round(100 * frame_width * op.scale / max(1, natural)))
    font = ImageFont.load_default(size=size)
    stroke = max(1, size // 12)
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGBA", (1, 1))).textbbox(
        (0, 0), op.text, font=font, stroke_width=stroke
    )
    width, height = max(1, round(right - left)), max(1, round(bottom - top))
    picture = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    colour = tuple(int(op.text_color[i : i + 2], 16) for i in (1, 3, 5))
    ImageDraw.Draw(picture).text(
        (-round(left), -round(top)),
        op.text,
        font=font,
        fill=(*colour, 255),
        stroke_width=stroke,
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
