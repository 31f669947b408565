"""The one ISO BMFF box walk (`live.boxes.boxes`) that both the fragmenter (cutting its muxer's
growing output) and HLS (reading fragments' durations) use: 32-bit, 64-bit and to-the-end
sizes, and a stream still being written."""

from __future__ import annotations

import struct

import pytest

from sparc_video.live import boxes


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _large(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload


def test_sizes_of_32_and_64_bits_and_to_the_end() -> None:
    data = _box(b"moof", b"m" * 5) + _large(b"mdat", b"d" * 7) + struct.pack(">I4s", 0, b"free")
    data += b"tail"
    assert list(boxes.boxes(data)) == [
        (b"moof", 0, 8, 13),
        (b"mdat", 13, 29, 36),
        (b"free", 36, 44, len(data)),
    ]
    # Inside a container, a size-0 box ends with its parent.
    trun = _large(b"trun", struct.pack(">IIiII", 0x101, 2, 0, 3000, 4200))
    assert boxes.fragment_duration(_box(b"moof", _box(b"traf", trun)), fallback=0) == 7200


def test_a_growing_stream_yields_only_complete_boxes() -> None:
    stream = _box(b"ftyp", b"isom") + _box(b"moof", b"m" * 9) + _large(b"mdat", b"d" * 20)
    complete = list(boxes.boxes(stream))
    for cut in range(len(stream) + 1):
        found = list(boxes.boxes(stream[:cut], growing=True))
        assert found == [box for box in complete if box[3] <= cut], cut
    # To the end of a stream still being written: not complete until the stream ends.
    assert list(boxes.boxes(struct.pack(">I4s", 0, b"mdat") + b"xx", growing=True)) == []


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x40moof",  # overruns the data
        b"\x00\x00\x00\x04moof",  # smaller than its own header
        struct.pack(">I4s", 1, b"mdat") + b"\x00\x00",  # a 64-bit size cut off
        struct.pack(">I4sQ", 1, b"mdat", 8),  # a 64-bit size smaller than its header
    ],
)
def test_malformed_boxes_are_refused_unless_the_stream_is_growing(data: bytes) -> None:
    with pytest.raises(boxes.BadBoxes):
        list(boxes.boxes(data))
    assert list(boxes.boxes(data, growing=True)) == []
