"""A camera's live view as fMP4 HLS with Low-Latency HLS parts, cut from its hub's fragments:
the same one camera connection and stream copy as the browser and gRPC viewers, no re-encode.

A segment is a run of the hub's per-frame fragments (moof+mdat each, concatenated as they
are): it starts at a keyframe once the open one lasts SEGMENT_MIN_S, or anywhere when the next
frame would take it past TARGET_DURATION_S (a camera with long keyframe intervals; such a
segment is not independent). Parts of about PART_TARGET_S group the fragments of a segment;
a part holding a keyframe says INDEPENDENT=YES. Segments stay listed only while the hub's ring
holds their fragments, so memory is the ring's and nothing more.

Media sequence numbers start at the hub sequence of the first fragment packaged and count one
per segment: stable for the hub's life, and above any earlier hub's (hub sequences start at the
hub's opening time in µs). A new run of the camera (a new init) or fragments missed while nobody
asked (the packager reads the ring lazily) start a segment with EXT-X-DISCONTINUITY.

Pure logic on the event loop: reading the ring, durations from the boxes, the playlist text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sparc_video.live import boxes
from sparc_video.live.hub import LiveHub

TARGET_DURATION_S = 2
SEGMENT_MIN_S = 1.0
PART_TARGET_S = 0.34
# A part closes once it reaches this; a frame that would take it past PART_TARGET_S closes it
# before. The gap keeps parts (but a segment's last) above 85% of PART_TARGET_S as RFC 8216bis
# asks, for cameras of 10 fps and faster.
PART_CLOSE_S = 0.3
PART_HOLD_BACK_S = round(3 * PART_TARGET_S, 3)
# Segments listing their parts: the open one and the newest complete ones (RFC 8216bis wants
# parts only within three target durations of the live edge).
SEGMENTS_WITH_PARTS = 2
# A request for a segment this far past the newest is refused at once (RFC 8216bis 6.2.5.2).
MAX_MSN_AHEAD = 2
BLOCK_TIMEOUT_S = 3.0 * TARGET_DURATION_S

log = logging.getLogger(__name__)
_EPSILON_S = 1e-6  # durations are sums of floats
_PART_MAX_S = PART_TARGET_S + _EPSILON_S


class HlsRequestError(ValueError):
    """A blocking reload or part request the playlist cannot satisfy (HTTP 400)."""


@dataclass
class Part:
    first: int  # hub sequence of its first fragment
    last: int  # hub sequence of its last fragment (inclusive)
    duration_s: float
    independent: bool


@dataclass
class Segment:
    msn: int
    capture_ns: int  # capture time of its first frame
    discontinuity: bool
    parts: list[Part] = field(default_factory=list)
    complete: bool = False

    @property
    def first(self) -> int:
        return self.parts[0].first

    @property
    def last(self) -> int:
        return self.parts[-1].last

    @property
    def duration_s(self) -> float:
        return sum(part.duration_s for part in self.parts)

    @property
    def independent(self) -> bool:
        return self.parts[0].independent


@dataclass
class _Open:
    """The part being filled: not listed until closed."""

    first: int
    last: int
    duration_s: float
    independent: bool


class HlsPackager:
    """The HLS view of one hub. `sync` reads the fragments published since the last call."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.segments: list[Segment] = []
        self.discontinuity_sequence = 0
        self._epoch = 0
        self._timescale = 1
        self._fallback_ticks = 0
        self._next = 0  # the next hub sequence to package
        self._next_msn: int | None = None
        self._open: _Open | None = None
        self._pending_discontinuity = False
        self._rendered: tuple[tuple[int, int, str], str] | None = None

    @property
    def ready(self) -> bool:
        """A playlist is worth sending: it lists a complete segment (players without parts
        have nothing to play before)."""
        return any(segment.complete for segment in self.segments)

    @property
    def epoch(self) -> int:
        return self._epoch

    def sync(self) -> None:
        hub = self.hub
        if hub.init is None:
            return
        if hub.epoch != self._epoch:
            self._new_run()
        if self._next < hub.oldest_sequence:  # missed while nobody asked: start over there
            self._open = None
            self._close_segment()
            self._pending_discontinuity = self._next_msn is not None
            self._next = hub.oldest_sequence
        self._trim()
        while self._next <= hub.newest_sequence:
            item = hub.fragment(self._next)
            assert item is not None
            self._add(
                item.sequence, item.fragment.data, item.fragment.keyframe, item.fragment.capture_ns
            )
            self._next += 1

    def _new_run(self) -> None:
        init = self.hub.init
        assert init is not None
        self._epoch = self.hub.epoch
        self._timescale = boxes.timescale(init.data)
        self._fallback_ticks = boxes.default_duration(init.data)
        self._open = None
        self._close_segment()
        self._pending_discontinuity = self._next_msn is not None
        self._next = self.hub.oldest_sequence

    def _trim(self) -> None:
        """Drop segments whose first fragment left the ring."""
        oldest = self.hub.oldest_sequence
        while self.segments and self.segments[0].parts and self.segments[0].first < oldest:
            if self.segments[0].discontinuity:
                self.discontinuity_sequence += 1
            self.segments.pop(0)

    def _add(self, sequence: int, data: bytes, keyframe: bool, capture_ns: int) -> None:
        try:
            duration = boxes.fragment_duration(data, self._fallback_ticks) / self._timescale
        except boxes.BadBoxes:  # not the fragmenter's boxes: leave it out, the rest plays
            log.warning("camera %s: HLS skips fragment %d", self.hub.camera_id, sequence)
            self._close_part()  # parts are runs of sequences: end this one before it
            return
        current = self.segments[-1] if self.segments and not self.segments[-1].complete else None
        if current is None:
            if not keyframe:
                return  # after a start, a new run or a gap: a decoder needs a keyframe first
            self._start_segment(capture_ns)
        elif self._cut_before(current, duration, keyframe):
            self._close_segment()
            self._start_segment(capture_ns)
        elif self._open is not None and self._open.duration_s + duration > _PART_MAX_S:
            self._close_part()
        if self._open is None:
            self._open = _Open(sequence, sequence, duration, keyframe)
        else:
            self._open.last, self._open.duration_s = sequence, self._open.duration_s + duration
            self._open.independent |= keyframe
        if self._open.duration_s >= PART_CLOSE_S - _EPSILON_S:
            self._close_part()

    def _cut_before(self, current: Segment, duration: float, keyframe: bool) -> bool:
        """Whether a frame starts a new segment: a keyframe once the open one is long enough,
        any frame that would take it past the target duration."""
        so_far = current.duration_s + (self._open.duration_s if self._open else 0.0)
        if keyframe and so_far >= SEGMENT_MIN_S:
            return True
        return so_far + duration > TARGET_DURATION_S + _EPSILON_S

    def _start_segment(self, capture_ns: int) -> None:
        if self._next_msn is None:
            self._next_msn = self._next  # the hub sequence of the first fragment packaged
        self.segments.append(Segment(self._next_msn, capture_ns, self._pending_discontinuity))
        self._next_msn += 1
        self._pending_discontinuity = False

    def _close_part(self) -> None:
        if self._open is None or not self.segments or self.segments[-1].complete:
            return
        part = self._open
        self.segments[-1].parts.append(
            Part(part.first, part.last, part.duration_s, part.independent)
        )
        self._open = None

    def _close_segment(self) -> None:
        self._close_part()
        if self.segments and not self.segments[-1].complete:
            if self.segments[-1].parts:
                self.segments[-1].complete = True
            else:
                self.segments.pop()
                assert self._next_msn is not None
                self._next_msn -= 1

    # What a request asks for.

    def satisfied(self, msn: int, part: int | None) -> bool:
        """Whether the playlist holds segment `msn` complete (or its part `part`)."""
        for segment in reversed(self.segments):
            if segment.msn == msn:
                return segment.complete or (part is not None and part < len(segment.parts))
            if segment.msn < msn:
                return False
        return bool(self.segments) and msn < self.segments[0].msn

    def check_request(self, msn: int, part: int | None) -> None:
        newest = self.segments[-1].msn if self.segments else None
        if newest is not None and msn > newest + MAX_MSN_AHEAD:
            raise HlsRequestError(
                f"_HLS_msn={msn} is more than {MAX_MSN_AHEAD} segments past the newest ({newest})"
            )
        if part is not None and part < 0:
            raise HlsRequestError("_HLS_part must not be negative")

    def segment(self, msn: int) -> Segment | None:
        for segment in self.segments:
            if segment.msn == msn:
                return segment
        return None

    def data(self, first: int, last: int) -> bytes | None:
        """The fragments first..last concatenated; None once the ring no longer holds them."""
        pieces = []
        for sequence in range(first, last + 1):
            item = self.hub.fragment(sequence)
            if item is None:
                return None
            pieces.append(item.fragment.data)
        return b"".join(pieces)

    def playlist(self, uri: UriMaker) -> str:
        """The playlist text; made once per change of the packager and link, since every
        viewer of a camera asks for the same one after each part (blocking reloads)."""
        key = (self._epoch, self._next, uri.suffix)
        if self._rendered is None or self._rendered[0] != key:
            self._rendered = (key, self._render(uri))
        return self._rendered[1]

    def _render(self, uri: UriMaker) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            f"#EXT-X-TARGETDURATION:{TARGET_DURATION_S}",
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={PART_HOLD_BACK_S}",
            f"#EXT-X-PART-INF:PART-TARGET={PART_TARGET_S}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.segments[0].msn if self.segments else 0}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}",
            f'#EXT-X-MAP:URI="{uri.init(self._epoch)}"',
        ]
        with_parts = {s.msn for s in self.segments if s.complete}
        with_parts = set(sorted(with_parts)[-SEGMENTS_WITH_PARTS:])
        for index, segment in enumerate(self.segments):
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if index == 0 or segment.discontinuity:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(segment.capture_ns)}")
            if segment.msn in with_parts or not segment.complete:
                for number, part in enumerate(segment.parts):
                    independent = ",INDEPENDENT=YES" if part.independent else ""
                    lines.append(
                        f"#EXT-X-PART:DURATION={part.duration_s:.5f},"
                        f'URI="{uri.part(segment.msn, number)}"{independent}'
                    )
            if segment.complete:
                lines += [f"#EXTINF:{segment.duration_s:.5f},", uri.segment(segment.msn)]
        hint = self._next_part()
        if hint is not None:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{uri.part(*hint)}"')
        return "\n".join(lines) + "\n"

    def _next_part(self) -> tuple[int, int] | None:
        """(msn, part) of the part to come: the open segment's next, or a next segment's 0."""
        if not self.segments:
            return None
        newest = self.segments[-1]
        if newest.complete:
            return newest.msn + 1, 0
        return newest.msn, len(newest.parts)

    def normalize(self, msn: int, part: int) -> tuple[int, int]:
        """A part past a complete segment's last is part 0 of the next (RFC 8216bis 6.2.5.2)."""
        segment = self.segment(msn)
        if segment is not None and segment.complete and part >= len(segment.parts):
            return msn + 1, 0
        return msn, part

    async def wait_for(self, msn: int, part: int | None, timeout_s: float) -> bool:
        """Blocking reload: True once the playlist holds what was asked, False at the deadline
        or when the hub closes. HlsRequestError for a request too far ahead."""
        self.sync()
        self.check_request(msn, part)

        def holds() -> bool:
            if part is None:
                return self.satisfied(msn, None)
            return self.satisfied(*self.normalize(msn, part))

        return await self.wait_until(holds, timeout_s)

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Syncs at each change of the hub until `condition` holds (True) or the deadline or
        the hub's end (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self.sync()
        while not condition():
            remaining = deadline - loop.time()
            if self.hub.closed or remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self.hub.changed(), remaining)
            except TimeoutError:
                return False
            self.sync()
        return True


class UriMaker:
    """The URIs a playlist names, relative to it, each with the link's signed query (a player
    resolving a relative URI drops the playlist's query)."""

    def __init__(self, query: str) -> None:
        self.suffix = f"?{query}" if query else ""

    def init(self, epoch: int) -> str:
        return f"hls/init-{epoch}.mp4{self.suffix}"

    def segment(self, msn: int) -> str:
        return f"hls/{msn}.m4s{self.suffix}"

    def part(self, msn: int, part: int) -> str:
        return f"hls/{msn}.{part}.m4s{self.suffix}"


def _date_time(capture_ns: int) -> str:
    when = datetime.fromtimestamp(capture_ns / 1e9, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
