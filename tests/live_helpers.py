"""What the live-view tests share: decoding what a viewer received (an init segment and
fragments) with PyAV, and reading each picture's stamp from the test camera."""

from __future__ import annotations

import io
import itertools

import av

from sparc_video.simulator import NoStamp, read_stamp


def frame_indices(data: bytes) -> list[int]:
    """The test camera's frame index of each picture decoded from an fMP4 byte string (a
    picture without a readable stamp counts as -1)."""
    found = []
    with av.open(io.BytesIO(data), "r", format="mp4") as container:
        for frame in container.decode(video=0):
            try:
                found.append(read_stamp(frame).index)
            except NoStamp:
                found.append(-1)
    return found


def consecutive(indices: list[int]) -> bool:
    return bool(indices) and all(b == a + 1 for a, b in itertools.pairwise(indices))
