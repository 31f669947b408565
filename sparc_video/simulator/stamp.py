"""Each frame's index and capture time drawn as big black and white blocks, so a decoder at the
far end (a test, a latency probe filming a screen) can tell exactly which frame it got and when
the camera took it, after H.264 compression and scaling.

The blocks are a grid over the top two thirds of the picture, relative to its size: 16 columns
by 8 rows, 128 bits (index 32, capture time 64, CRC-32 of both 32), most significant first. A
CRC mismatch means the frame carries no readable stamp. The bottom third may hold the same in
text, for people.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLUMNS, ROWS = 16, 8
# The grid's share of the height: ROWS of 1/12 each.
_ROW_SHARE = 12
_PAYLOAD = struct.Struct(">IQ")


@dataclass(frozen=True)
class FrameStamp:
    index: int
    capture_time_us: int


class NoStamp(ValueError):
    """The frame carries no readable stamp (its CRC does not match)."""


def _bits(stamp: FrameStamp) -> np.ndarray:
    payload = _PAYLOAD.pack(stamp.index & 0xFFFFFFFF, stamp.capture_time_us)
    data = payload + struct.pack(">I", zlib.crc32(payload))
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


def _cells(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of each cell, row by row, as shares of the picture so that
    a scaled picture has its cells at the same places."""
    rows = [round(r * height / _ROW_SHARE) for r in range(ROWS + 1)]
    columns = [round(c * width / COLUMNS) for c in range(COLUMNS + 1)]
    return [
        (rows[r], rows[r + 1], columns[c], columns[c + 1])
        for r in range(ROWS)
        for c in range(COLUMNS)
    ]


def draw_stamp(luma: np.ndarray, stamp: FrameStamp, *, text: bool = True) -> None:
    """Draw `stamp` on a luma plane (height x width, uint8) in place."""
    height, width = luma.shape
    for bit, (top, bottom, left, right) in zip(_bits(stamp), _cells(width, height), strict=True):
        luma[top:bottom, left:right] = 235 if bit else 16
    if text:
        label = _label(stamp)
        rendered = _render(label, max(8, height // 14))
        top = height * ROWS // _ROW_SHARE + height // 24
        h, w = rendered.shape
        h, w = min(h, height - top), min(w, width - 4)
        luma[top : top + h, 4 : 4 + w] = np.maximum(
            luma[top : top + h, 4 : 4 + w], rendered[:h, :w]
        )


def read_stamp(frame: av.VideoFrame) -> FrameStamp:
    """The stamp of a decoded frame (any size the encoder scaled it to); NoStamp when it has
    none."""
    luma = frame.reformat(format="gray").to_ndarray()
    height, width = luma.shape[:2]
    values = []
    for top, bottom, left, right in _cells(width, height):
        dy, dx = (bottom - top) // 4, (right - left) // 4
        values.append(luma[top + dy : bottom - dy, left + dx : right - dx].mean() > 128)
    data = np.packbits(np.array(values, dtype=np.uint8)).tobytes()
    payload, (crc,) = data[:12], struct.unpack(">I", data[12:])
    if zlib.crc32(payload) != crc:
        raise NoStamp("no stamp in this frame (CRC mismatch)")
    index, capture_time_us = _PAYLOAD.unpack(payload)
    return FrameStamp(index, capture_time_us)


def _label(stamp: FrameStamp) -> str:
    when = datetime.fromtimestamp(stamp.capture_time_us / 1e6, UTC)
    return f"#{stamp.index} {when:%Y-%m-%d %H:%M:%S}.{stamp.capture_time_us % 1_000_000:06d}"


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _render(label: str, size: int) -> np.ndarray:
    font = _font(size)
    _, _, right, bottom = font.getbbox(label)
    image = Image.new("L", (int(right) + 2, int(bottom) + 2), 0)
    ImageDraw.Draw(image).text((1, 1), label, fill=235, font=font)
    return np.asarray(image)
