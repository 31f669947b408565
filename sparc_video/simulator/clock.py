"""The test camera's own clock: real cameras are set wrong (a start offset) and drift (a rate
error in ppm), and a recorder must take their RTCP wall clock as what the camera claims, not as
the truth. The clock is anchored when created; camera time runs at `1 + ppm / 1e6` times real
time from there.

A camera has two clocks, and they disagree: its wall clock (NTP-disciplined, what its RTCP sender
reports and the stamped capture times say) and its media clock (the encoder's crystal, what the
RTP timestamps count). `rtp_ppm` is how much faster the media clock runs than the camera's own
wall clock: RTP times advance `clock_rate * (1 + rtp_ppm / 1e6)` per second of camera time, and
sender reports still pair each RTP time truthfully with the camera time it was taken at. A
receiver that turns RTP times into wall time with one sender report drifts by `rtp_ppm`; one
that follows the latest report does not. It depends on camera time alone, so it acts at fast
pace too (unlike `ppm`, which only says when frames leave in real time)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

US_PER_S = 1_000_000


@dataclass(frozen=True)
class CameraClock:
    """`offset_s`: how far ahead of the machine's clock the camera is at its anchor (negative:
    behind); `ppm`: how much faster (negative: slower) it runs than real time; `rtp_ppm`: how
    much faster its RTP (media) clock runs than itself."""

    offset_s: float = 0.0
    ppm: float = 0.0
    anchor_real_us: int = field(default_factory=lambda: time.time_ns() // 1000)
    rtp_ppm: float = 0.0

    @classmethod
    def at(cls, when: datetime, ppm: float = 0.0, rtp_ppm: float = 0.0) -> CameraClock:
        """A camera that believes it is `when` now (e.g. still set to 2026-01-01)."""
        return cls(offset_s=when.timestamp() - time.time(), ppm=ppm, rtp_ppm=rtp_ppm)

    @property
    def rate(self) -> float:
        return 1.0 + self.ppm / 1e6

    def camera_us(self, real_us: float | None = None) -> int:
        """The camera's time (µs since the epoch) at a real time (default: now)."""
        real = time.time_ns() / 1000 if real_us is None else real_us
        anchor = self.anchor_real_us
        return round(anchor + self.offset_s * US_PER_S + (real - anchor) * self.rate)

    def real_us(self, camera_us: float) -> float:
        """The real time at which the camera's clock reads `camera_us`."""
        anchor = self.anchor_real_us
        return anchor + (camera_us - anchor - self.offset_s * US_PER_S) / self.rate


def ntp_timestamp(unix_us: int) -> int:
    """64-bit NTP time (seconds since 1900 in the high word, binary fraction in the low)."""
    seconds, micros = divmod(unix_us + 2_208_988_800 * US_PER_S, US_PER_S)
    return (seconds & 0xFFFFFFFF) << 32 | ((micros << 32) + US_PER_S // 2) // US_PER_S
