"""ISO BMFF boxes read without PyAV (the API process never imports it): the box walk the
fragmenter cuts its muxer's output with, and the few fields HLS needs from live view's fMP4:
the track's timescale from the init segment, a fragment's duration.

Only what FFmpeg's mp4 muxer writes for one video track is read: the first trak's mdhd, the
trex default, and per fragment the tfhd default or the trun sample durations.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

_CONTAINERS = {b"moov", b"trak", b"mdia", b"mvex", b"moof", b"traf"}
_TFHD_BASE_OFFSET, _TFHD_DESCRIPTION, _TFHD_DURATION = 0x01, 0x02, 0x08
_TRUN_OFFSET, _TRUN_FIRST_FLAGS, _TRUN_DURATION = 0x01, 0x04, 0x100
_HEADER, _LARGE = struct.Struct(">I4s"), struct.Struct(">Q")


class BadBoxes(ValueError):
    """The bytes are not the fMP4 the fragmenter writes."""


def boxes(
    data: bytes | bytearray, start: int = 0, end: int | None = None, *, growing: bool = False
) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, start, payload start, end) of each box in `data[start:end]`, at that level only.

    The header is a 32-bit size and the type; size 1 puts a 64-bit size after the type, size 0
    runs the box to `end`. `growing`: the data is a stream still being written (the
    fragmenter's muxer output), so a box not complete yet ends the walk (a size-0 box completes
    only with the stream) instead of raising BadBoxes.
    """
    end = len(data) if end is None else end
    position = start
    while position + 8 <= end:
        size, kind = _HEADER.unpack_from(data, position)
        header = 8
        if size == 1:
            if position + 16 > end:
                if growing:
                    return
                raise BadBoxes(f"a {kind!r} box's 64-bit size is cut off")
            (size,) = _LARGE.unpack_from(data, position + 8)
            header = 16
        elif size == 0:
            if growing:
                return
            size = end - position
        if size < header or position + size > end:
            if growing:
                return
            raise BadBoxes(f"a {kind!r} box of {size} bytes overruns its parent")
        yield kind, position, position + header, position + size
        position += size


def _walk(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of every box, depth first, into the containers HLS reads."""
    for kind, _, payload, box_end in boxes(data, start, end):
        yield kind, payload, box_end
        if kind in _CONTAINERS:
            yield from _walk(data, payload, box_end)


def _first(data: bytes, kind: bytes) -> tuple[int, int]:
    for found, start, end in _walk(data):
        if found == kind:
            return start, end
    raise BadBoxes(f"no {kind!r} box")


def timescale(init: bytes) -> int:
    """The video track's ticks per second (its mdhd)."""
    start, _ = _first(init, b"mdhd")
    version = init[start]
    return int(struct.unpack_from(">I", init, start + (20 if version == 1 else 12))[0])


def default_duration(init: bytes) -> int:
    """The trex default sample duration in ticks (0 when the init has none)."""
    try:
        start, _ = _first(init, b"trex")
    except BadBoxes:
        return 0
    return int(struct.unpack_from(">I", init, start + 12)[0])


def fragment_duration(fragment: bytes, fallback: int) -> int:
    """A moof+mdat's duration in ticks: its trun sample durations, else tfhd's default, else
    `fallback` (the init's trex default) per sample."""
    default, total = fallback, 0
    for kind, start, _ in _walk(fragment):
        flags = int.from_bytes(fragment[start + 1 : start + 4], "big")
        if kind == b"tfhd":
            at = start + 8 + (8 if flags & _TFHD_BASE_OFFSET else 0)
            at += 4 if flags & _TFHD_DESCRIPTION else 0
            if flags & _TFHD_DURATION:
                default = int(struct.unpack_from(">I", fragment, at)[0])
        elif kind == b"trun":
            count = int(struct.unpack_from(">I", fragment, start + 4)[0])
            if not flags & _TRUN_DURATION:
                total += count * default
                continue
            at = start + 8 + (4 if flags & _TRUN_OFFSET else 0)
            at += 4 if flags & _TRUN_FIRST_FLAGS else 0
            stride = 4 * bin(flags & 0xF00).count("1")
            for index in range(count):
                total += int(struct.unpack_from(">I", fragment, at + index * stride)[0])
    return total
