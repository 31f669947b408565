"""Packet timestamps to wall-clock nanoseconds, exactly, following the camera's sender reports.

A segment's times must stay within one frame interval of the camera's clock over days, so they
are never built by adding up float durations: a `WallClock` is an anchor (a wall time for one
presentation timestamp) and every time is that anchor plus the PTS difference, computed in
integers. FFmpeg's RTP demuxer already unwraps the 32-bit RTP timestamp (it keeps a 64-bit
running sum of signed 32-bit differences, `rtpdec.c` `finalize_packet`), so PTS keep growing
across the wrap every 13.25 h at 90 kHz; `Unwrapper` guards against a demuxer that does not (a
backwards jump of more than half the 32-bit range is taken as a wrap).

A camera has two clocks: its wall clock (NTP-disciplined; what its RTCP sender reports carry) and
its media clock (the encoder's crystal; what RTP timestamps, hence PTS, count). They run at
different rates: a crystal 100 ppm fast puts PTS 8.6 s a day ahead of the wall clock, so one
anchor per connection is not enough. Each sender report pairs an RTP time with the wall time
it was taken at; FFmpeg keeps the latest and attaches to every packet after it the wall time
that report gives the packet's RTP time (`AV_PKT_DATA_PRFT` side data, `rtpdec.c`
`rtp_set_prft`: the report's NTP time plus the RTP difference since it, in µs since the Unix
epoch). `sender_time_us` reads it, and the segmenter re-anchors its clock on it at each segment
start (`WallClock.reanchored`), so a segment starts at the camera's wall time and only the
time within one segment runs on the media clock (at most `ppm x segment length` off at its end:
6 ms for 100 ppm and 60 s segments; with audio too, FFmpeg already derives PTS from the latest
report, to keep the tracks in sync, and the error stays within one report interval's). That
needs no RTCP parsing of our own and no rate estimate: FFmpeg already parses every report (over
RTSP-over-TCP interleaved too) and does the RTP-to-NTP arithmetic. The first anchor is
FFmpeg's `start_time_realtime` (the camera's NTP time of PTS 0, from its first sender report,
`rtsp.c`) when a packet carries no report time.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from av.packet import Packet
from av.stream import Stream

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

    def reanchored(self, sender_us: int | None, pts: int) -> WallClock:
        """This clock moved onto the latest sender report: `pts` is at `sender_us` (what
        `sender_time_us` read off the packet of `pts`). Unchanged without one, and for a
        clock that is not the camera's."""
        if sender_us is None or self.source is not ClockSource.RTCP:
            return self
        return WallClock(sender_us * 1000, pts, self.time_base, self.source)

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


def sender_time_us(packet: Packet[Stream]) -> int | None:
    """The camera's wall time (µs since the Unix epoch) of this packet by its latest RTCP sender
    report, or None before the first report. FFmpeg's `AVProducerReferenceTime`: a
    little-endian int64 `wallclock` first, then an int `flags`."""
    if not packet.has_sidedata("prft"):
        return None
    data = bytes(packet.get_sidedata("prft"))
    return int.from_bytes(data[:8], "little", signed=True) if len(data) >= 8 else None
