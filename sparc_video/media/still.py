"""The one still-picture encoder: a video frame to a JPEG with FFmpeg's mjpeg encoder, for the
worker's thumbnails and the media child's camera snapshots alike. Imports PyAV: the server
process never imports this module, only its media child does."""

from __future__ import annotations

from fractions import Fraction

import av
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType, VideoFrame

# mjpeg quantiser scale, 2 (best) to 31: 3 is visually lossless at a fraction of 2's size.
JPEG_QUALITY = 3
_FF_QP2LAMBDA = 118
# AVCOL_RANGE_JPEG: full-range ("pc") video, what JPEG means.
FULL_RANGE = 2
# What the mjpeg encoder takes as it is: full-range 4:2:0 (yuvj420p says so by its name).
_JPEG_READY = ("yuvj420p", "yuv420p")


def encode_jpeg(frame: VideoFrame) -> bytes:
    """The frame as a JPEG (baseline, JFIF header). A full-range 4:2:0 frame (what the worker's
    converter makes) is encoded as it is; anything else is converted to yuvj420p first."""
    if frame.format.name not in _JPEG_READY or (
        frame.format.name == "yuv420p" and frame.color_range != FULL_RANGE
    ):
        frame = frame.reformat(format="yuvj420p")
    ctx = av.CodecContext.create("mjpeg", "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = frame.width, frame.height, frame.format.name
    ctx.time_base = Fraction(1, 25)
    # JPEG is full range, and the encoder must say so.
    ctx.color_range = FULL_RANGE
    # A square pixel aspect makes the encoder write a JFIF header, which some viewers want.
    ctx.sample_aspect_ratio = Fraction(1, 1)
    ctx.qscale = True
    ctx.global_quality = JPEG_QUALITY * _FF_QP2LAMBDA
    frame.pts = 0
    frame.time_base = ctx.time_base
    frame.pict_type = PictureType.NONE
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)
