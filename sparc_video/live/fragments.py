"""What live view carries: a run's init segment and its per-frame fragments (fMP4 bytes).
Apart from the fragmenter so that the API, which never imports PyAV, can name them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InitSegment:
    data: bytes  # ftyp + moov
    codecs: str  # the RFC 6381 codecs string MSE needs, e.g. avc1.42C01E ("" when unknown)


@dataclass(frozen=True)
class Fragment:
    data: bytes  # moof + mdat of one frame
    keyframe: bool
    capture_ns: int  # wall-clock ns of the frame
