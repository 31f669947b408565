"""Synthesise a sample clip with PyAV: moving colour bars, a tone, and each frame's index drawn as
a row of black/white blocks so whoever decodes a frame can tell which one it got.

Used by `sparc-video sample` to give a new install something to export.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BARCODE_BITS = 12


def make_sample_clip(
    path: Path,
    *,
    width: int = 1280,
    height: int = 720,
    duration_s: float = 10.0,
    fps: int = 30,
    audio: bool = True,
    gop: int | None = None,
) -> Path:
    """`gop`: a keyframe every `gop` frames exactly (no scene-cut keyframes); None leaves it
    to x264 (one keyframe at the start of a short clip)."""
    frames = max(1, round(duration_s * fps))
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_type = "AUTO"
        video.options = {"preset": "veryfast", "crf": "23"}
        if gop is not None:
            video.options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        sound = container.add_stream("aac", rate=48000) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        samples_per_frame = 1024
        audio_pts = 0
        base = _colour_bars(width, height)
        for index in range(frames):
            image = np.roll(base, shift=(index * 8) % width, axis=1)
            _draw_index(image, index)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
            while sound is not None and audio_pts < (index + 1) * 48000 / fps:
                t = (audio_pts + np.arange(samples_per_frame)) / 48000
                tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                chunk = av.AudioFrame.from_ndarray(
                    np.stack([tone, tone]), format="fltp", layout="stereo"
                )
                chunk.sample_rate = 48000
                chunk.pts = audio_pts
                chunk.time_base = Fraction(1, 48000)
                for packet in sound.encode(chunk):
                    container.mux(packet)
                audio_pts += samples_per_frame
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            for packet in sound.encode():
                container.mux(packet)
    return path


def _colour_bars(width: int, height: int) -> np.ndarray:
    colours = np.array(
        [
            [192, 192, 192],
            [192, 192, 0],
            [0, 192, 192],
            [0, 192, 0],
            [192, 0, 192],
            [192, 0, 0],
            [0, 0, 192],
        ],
        dtype=np.uint8,
    )
    columns = (np.arange(width) * len(colours) // width).astype(np.intp)
    return np.repeat(colours[columns][np.newaxis, :, :], height, axis=0).copy()


def _draw_index(image: np.ndarray, index: int) -> None:
    """Blocks across the top quarter: bit i of the index is block i (white = 1)."""
    height, width, _ = image.shape
    block = width // BARCODE_BITS
    band = image[: height // 4]
    for bit in range(BARCODE_BITS):
        value = 255 if index >> bit & 1 else 0
        band[:, bit * block : (bit + 1) * block] = value


def read_frame_index(rgb: np.ndarray) -> int:
    """The index drawn by make_sample_clip, read back from a decoded (possibly scaled) frame."""
    height, width, _ = rgb.shape
    block = width // BARCODE_BITS
    band = rgb[height // 16 : height // 5].astype(np.float32).mean(axis=2)
    index = 0
    for bit in range(BARCODE_BITS):
        middle = band[:, bit * block + block // 4 : (bit + 1) * block - block // 4]
        if middle.mean() > 127:
            index |= 1 << bit
    return index
