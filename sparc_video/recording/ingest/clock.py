"""Packet timestamps to wall-clock nanoseconds, exactly.

A segment's times must stay within one frame interval of the camera's clock over days, so they
are never built by adding up float durations: the clock is anchored once per run (a wall time
for one presentation timestamp) and every later time is that anchor plus the PTS difference,
computed in integers. FFmpeg's RTP demuxer already unwraps the 32-bit RTP timestamp (it keeps a
64-bit running sum of signed 32-bit differences, `rtpdec.c` `finalize_packet`), so PTS keep
growing across the wrap every 13.25 h at 90 kHz; `Unwrapper` guards against a demuxer that
does not (a backwards jump of more than half the 32-bit range is taken as a wrap).

The RTCP anchor is FFmpeg's `start_time_realtime`: the camera's NTP time of PTS 0, derived from
its first sender report (`rtsp.c`), in microseconds since the Unix epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from sparc_video.recording.ingest.models import ClockSource

NS_PER_S = 1_000_000_000
_RTP_WRAP = 1 << 32


@dataclass(frozen=True)
class WallClock:
    anchor_ns: int  # wall time of `anchor_pts`
    anchor_pts: int
    time_base: Fraction
    source: ClockSource

    @classmethod
    def from_rtcp(cls, start_time_realtime_us: int, time_base: Fraction) -> WallClock:
        return cls(start_time_realtime_us * 1000, 0, time_base, ClockSource.RTCP)

    @classmethod
    def from_receive(cls, received_ns: int, pts: int, time_base: Fraction) -> WallClock:
        return cls(received_ns, pts, time_base, ClockSource.RECEIVE)

    def at(self, pts: int) -> int:
        """Wall-clock ns of `pts` (in `time_base`), rounded down."""
        ticks = (pts - self.anchor_pts) * self.time_base.numerator * NS_PER_S
        return self.anchor_ns + ticks // self.time_base.denominator

    def pts_at(self, wall_ns: int, time_base: Fraction) -> int:
        """The PTS in another stream's `time_base` (audio) of a wall time, rounded down."""
        offset = Fraction(wall_ns - self.anchor_ns, NS_PER_S) / time_base
        anchor = self.anchor_pts * self.time_base / time_base
        return int((anchor + offset) // 1)


class Unwrapper:
    """Keeps a stream's timestamps monotonic should 32-bit RTP timestamps reach us wrapped."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._offset = 0

    def __call__(self, ts: int) -> int:
        if self._last is not None and self._last - ts > _RTP_WRAP // 2:
            self._offset += _RTP_WRAP
        self._last = ts
        return ts + self._offset
