"""A camera's stream-copied video packets as fragmented MP4 for live viewers: one init segment
(ftyp+moov) per run, then one fragment (moof+mdat) per frame.

FFmpeg's mp4 muxer does the boxes (`frag_every_frame`, `empty_moov`, `default_base_moof`, as
MSE and PyAV both read them); its output goes to a sink instead of a file and is cut at box
boundaries. The muxer closes a frame's fragment when the next frame arrives, so each fragment
leaves one frame interval after its frame came in: the price of not writing the boxes by hand.
Blocking (PyAV): runs in the recorder's ingest thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import io
from collections import deque
from collections.abc import Callable
from typing import Any

import av
import av.error
from av.container import OutputContainer
from av.packet import Packet
from av.stream import Stream

from sparc_video.live.boxes import boxes
from sparc_video.live.fragments import Fragment, InitSegment

MOVFLAGS = "frag_every_frame+empty_moov+default_base_moof"


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


class Fragmenter:
    """Feed it a run's video packets in order; it calls `on_init` once, then `on_fragment` per
    frame. Packets are copied, so the caller's packets stay theirs (the recorder muxes them
    into its segments after)."""

    def __init__(
        self,
        template: Stream,
        on_init: Callable[[InitSegment], None],
        on_fragment: Callable[[Fragment], None],
    ) -> None:
        assert template.time_base is not None
        self._time_base = template.time_base
        self._on_init, self._on_fragment = on_init, on_fragment
        self._sink = _Sink()
        self._out: OutputContainer = av.open(
            self._sink, "w", format="mp4", options={"movflags": MOVFLAGS, "flush_packets": "1"}
        )
        self._stream = self._out.add_stream_from_template(template)
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self._init = bytearray()
        self._init_sent = False
        # What the fragments still inside the muxer are: (keyframe, capture time).
        self._waiting: deque[tuple[bool, int]] = deque()

    def feed(self, packet: Packet[Any], capture_ns: int) -> None:
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None or packet.size == 0:
            return
        if self._first_pts is None:
            if not packet.is_keyframe:
                return  # a viewer's decoder needs a keyframe first
            self._first_pts = pts
        if self._last_pts is not None and pts <= self._last_pts:
            return  # out of order or repeated: the muxer would refuse it
        self._last_pts = pts
        copy = Packet(bytes(packet))
        copy.pts = copy.dts = pts - self._first_pts
        copy.is_keyframe = packet.is_keyframe
        copy.time_base = self._time_base
        copy.stream = self._stream
        self._waiting.append((packet.is_keyframe, capture_ns))
        self._out.mux(copy)
        self._emit()

    def close(self) -> None:
        """Flush the last frame's fragment and close the muxer."""
        with contextlib.suppress(av.error.FFmpegError):
            self._out.close()
        self._emit()

    def _emit(self) -> None:
        data, position = self._sink.data, 0
        init = self._init
        moof_start: int | None = None
        for kind, start, _, end in boxes(data, growing=True):
            position = end
            if kind in (b"ftyp", b"moov"):
                init += data[start:end]
            elif kind == b"moof":
                moof_start = start
            elif kind == b"mdat" and moof_start is not None:
                if self._waiting:
                    keyframe, capture_ns = self._waiting.popleft()
                    self._on_fragment(Fragment(bytes(data[moof_start:end]), keyframe, capture_ns))
                moof_start = None
        if init and not self._init_sent and init.find(b"moov") >= 0:
            self._init_sent = True
            self._on_init(InitSegment(bytes(init), codecs_of(bytes(init))))
        if moof_start is not None:
            position = moof_start  # a moof whose mdat is still to come
        del data[:position]


def codecs_of(init: bytes) -> str:
    """The codecs string of an init's H.264 track (`avc1.PPCCLL` from its avcC); "" for other
    codecs, which the page then names by type alone."""
    at = init.find(b"avcC")
    if at < 0 or at + 8 > len(init):
        return ""
    profile, compatibility, level = init[at + 5], init[at + 6], init[at + 7]
    return f"avc1.{profile:02X}{compatibility:02X}{level:02X}"
