"""Redactions in pixels: normalised regions mapped onto the frame they are drawn on.

Edges are rounded outwards to even pixels, so a region covers at least what was asked for and
its corners fall on 4:2:0 chroma samples (a crop or overlay at an odd offset would shift the
chroma by one pixel relative to the luma).
"""

from __future__ import annotations

import math

from sparc_video.exports.plan import Redaction
from workers.pipeline.filters import Redact

# Of the frame height, at strength 1: the blur's sigma, and a pixelation block's side.
BLUR_SIGMA = 0.05
PIXEL_BLOCK = 0.10
_MIN_AMOUNT_PX = 2


def redaction(step: Redaction, frame_width: int, frame_height: int) -> Redact:
    """The filter `step` draws on frames of the given size."""
    op = step.op
    regions = tuple(
        _pixels(r.x, r.y, r.width, r.height, frame_width, frame_height) for r in op.regions
    )
    share = BLUR_SIGMA if op.mode == "blur" else PIXEL_BLOCK
    amount = max(_MIN_AMOUNT_PX, round(op.strength * share * frame_height))
    return Redact(regions, op.mode, amount, step.span.start_s, step.span.end_s)


def _pixels(
    x: float, y: float, width: float, height: float, frame_width: int, frame_height: int
) -> tuple[int, int, int, int]:
    left = _even_floor(x * frame_width)
    top = _even_floor(y * frame_height)
    # Even edges around a non-empty region: at least 2 pixels each way (inside the frame).
    right = min(frame_width, max(left + 2, _even_ceil((x + width) * frame_width)))
    bottom = min(frame_height, max(top + 2, _even_ceil((y + height) * frame_height)))
    return left, top, right - left, bottom - top


def _even_floor(value: float) -> int:
    # A hair of tolerance: 0.25 * 320 computed as 79.99999 must not lose a pixel pair.
    return 2 * math.floor(value / 2 + 1e-9)


def _even_ceil(value: float) -> int:
    return 2 * math.ceil(value / 2 - 1e-9)
