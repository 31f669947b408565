"""Synthesised test media: small real videos whose frames say which frame they are.

Every frame carries its own index as a row of `INDEX_BITS` black/white blocks (binary, most
significant bit first) across the top of the picture. The blocks are large (a twelfth of the
width, an eighth of the height), so the index survives H.264, downscaling to 160x120 and JPEG,
and `read_frame_index` reads it back from the RGB pixels of whatever frame a test ends up with.
The rest of the picture moves and carries noise, so that encoders have real work to do and a
bitrate option makes a visible difference in file size.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

INDEX_BITS = 12
# Fraction of the frame height taken by the index strip.
_STRIP_HEIGHT = 1 / 8
_AUDIO_RATE = 48_000
_AUDIO_FRAME = 1024
_TONE_HZ = 440.0


def make_clip(
    path: Path,
    *,
    width: int = 320,
    height: int = 240,
    duration_s: float = 2.0,
    fps: int = 30,
    audio: bool = True,
    codec: str = "libx264",
    gop: int | None = None,
    rotation: int = 0,
) -> Path:
    """Write a `duration_s` clip of `round(duration_s * fps)` frames to `path`.

    The container follows the file suffix (.mp4, .mkv, .ts, ...). With `audio`, a stereo 440 Hz
    AAC tone of the same length is muxed alongside. `gop` sets the keyframe interval (the
    encoder's default otherwise), which lets tests exercise seeking over long GOPs. `rotation`
    (degrees counter-clockwise, as phones record portrait video) is stored as display-matrix
    metadata; the pixels stay as drawn.
    """
    frame_count = round(duration_s * fps)
    if frame_count > 2**INDEX_BITS:
        raise ValueError(f"{frame_count} frames do not fit in {INDEX_BITS} index bits")
    texture = _texture(width, height)

    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        if not isinstance(vs, av.VideoStream):
            raise ValueError(f"{codec!r} is not a video encoder")
        vs.width = width
        vs.height = height
        vs.pix_fmt = "yuv420p"
        if rotation:
            vs.set_display_rotation(rotation)
        if gop is not None:
            vs.codec_context.gop_size = gop
        if codec == "libx264":
            # Generation speed matters more than quality here: the index blocks are huge. A
            # fixed GOP needs scene-cut detection off, or x264 adds keyframes of its own.
            options = {"preset": "ultrafast"}
            if gop is not None:
                options["x264-params"] = "scenecut=0"
            vs.codec_context.options = options
        elif codec.startswith("libvpx"):
            vs.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        as_ = None
        if audio:
            as_ = out.add_stream("aac", rate=_AUDIO_RATE, layout="stereo")
            as_.bit_rate = 96_000

        samples_total = round(duration_s * _AUDIO_RATE)
        samples_done = 0
        for index in range(frame_count):
            rgb = _picture(index, texture)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(vs.encode(frame))
            if as_ is not None:
                # Keep the audio about level with the video so the muxer interleaves cheaply.
                until = min(samples_total, round((index + 1) / fps * _AUDIO_RATE))
                while samples_done < until:
                    count = min(_AUDIO_FRAME, samples_total - samples_done)
                    out.mux(as_.encode(_tone(samples_done, count)))
                    samples_done += count
        out.mux(vs.encode(None))
        if as_ is not None:
            out.mux(as_.encode(None))
    return path


def make_audio_only(path: Path, *, duration_s: float = 1.0) -> Path:
    """An AAC tone with no video stream at all (e.g. `.m4a`)."""
    with av.open(str(path), "w") as out:
        as_ = out.add_stream("aac", rate=_AUDIO_RATE, layout="stereo")
        total = round(duration_s * _AUDIO_RATE)
        for start in range(0, total, _AUDIO_FRAME):
            out.mux(as_.encode(_tone(start, min(_AUDIO_FRAME, total - start))))
        out.mux(as_.encode(None))
    return path


def read_frame_index(rgb: npt.NDArray[Any]) -> int:
    """The frame index drawn by `make_clip`, read from an RGB (height, width, 3) picture."""
    height, width = rgb.shape[:2]
    luma = rgb.astype(np.float32).mean(axis=2)
    strip = max(1, round(height * _STRIP_HEIGHT))
    # Sample the middle half of each block in both directions, well away from edges that
    # scaling and JPEG ringing blur.
    top, bottom = strip // 4, max(strip // 4 + 1, 3 * strip // 4)
    value = 0
    for bit in range(INDEX_BITS):
        left = width * bit / INDEX_BITS
        right = width * (bit + 1) / INDEX_BITS
        x0 = round(left + (right - left) / 4)
        x1 = max(x0 + 1, round(right - (right - left) / 4))
        value = (value << 1) | int(luma[top:bottom, x0:x1].mean() > 127.5)
    return value


def _texture(width: int, height: int) -> npt.NDArray[np.uint8]:
    """Colour gradients with blocky noise: detail for the encoder, cheap to move around."""
    rng = np.random.default_rng(1234)
    ramp_x = np.linspace(0, 160, width, dtype=np.float32)[None, :]
    ramp_y = np.linspace(0, 160, height, dtype=np.float32)[:, None]
    red, green = np.broadcast_arrays(ramp_x, ramp_y)
    blue = (ramp_x + ramp_y) / 2
    base = np.stack([red, green, blue], axis=2)
    noise = rng.integers(0, 64, size=(height // 4 + 1, width // 4 + 1, 3)).astype(np.float32)
    base += np.kron(noise, np.ones((4, 4, 1), dtype=np.float32))[:height, :width]
    return base.astype(np.uint8)


def _picture(index: int, texture: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    height, width = texture.shape[:2]
    picture = np.roll(texture, (index * 3, index * 5), axis=(0, 1))
    strip = max(1, round(height * _STRIP_HEIGHT))
    for bit in range(INDEX_BITS):
        on = (index >> (INDEX_BITS - 1 - bit)) & 1
        x0 = round(width * bit / INDEX_BITS)
        x1 = round(width * (bit + 1) / INDEX_BITS)
        picture[:strip, x0:x1] = 255 if on else 0
    return picture


def _tone(start: int, count: int) -> av.AudioFrame:
    t = (np.arange(start, start + count, dtype=np.float64)) / _AUDIO_RATE
    wave = (0.3 * np.sin(2 * np.pi * _TONE_HZ * t)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
    frame.sample_rate = _AUDIO_RATE
    frame.pts = start
    frame.time_base = Fraction(1, _AUDIO_RATE)
    return frame
