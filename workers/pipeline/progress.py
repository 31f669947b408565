"""Progress of one pipeline operation, and the throttle that reports it.

The callback is also the cancellation point: whoever runs the pipeline raises
`sparc_video.core.errors.JobCancelled` (or anything else) from it, and the operation stops there,
closing its containers on the way out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# How often a long operation reports at most, and so how late it notices a cancellation at worst
# (plus the time to decode one frame).
REPORT_INTERVAL_S = 0.2


@dataclass(frozen=True)
class PassProgress:
    """How far one operation has got.

    For a transcode, media time is the end of the last encoded video frame. Thumbnails are
    independent seeks, so there media time advances by `media_duration_s / count` per thumbnail
    and `frames` counts decoded frames, which is the work done.
    """

    media_time_s: float  # media time done in this operation so far
    media_duration_s: float  # media time this operation will process in total (>0)
    frames: int  # frames produced so far
    elapsed_s: float  # wall time since this operation started


ProgressFn = Callable[[PassProgress], None]


class ProgressReporter:
    """Calls a ProgressFn at most every REPORT_INTERVAL_S, with non-decreasing media time."""

    def __init__(
        self,
        progress: ProgressFn,
        media_duration_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = progress
        self._clock = clock
        # PassProgress promises a positive total; a zero-length source still has to report 100%.
        self._duration = media_duration_s if media_duration_s > 0 else 1e-3
        self._started = clock()
        self._last_report = self._started
        self._media_time = 0.0
        self.frames = 0

    @property
    def media_duration_s(self) -> float:
        return self._duration

    def start(self) -> None:
        """Report 0%: the first chance to notice a cancellation, before any real work."""
        self._report(self._clock())

    def tick(self, media_time_s: float, frames: int = 0) -> None:
        """Record work done; report it if the last report is old enough. Cheap to call often."""
        self.frames += frames
        self._media_time = min(self._duration, max(self._media_time, media_time_s))
        now = self._clock()
        if now - self._last_report >= REPORT_INTERVAL_S:
            self._report(now)

    def finish(self) -> None:
        """Report 100%."""
        self._media_time = self._duration
        self._report(self._clock())

    def _report(self, now: float) -> None:
        self._last_report = now
        self._progress(
            PassProgress(
                media_time_s=self._media_time,
                media_duration_s=self._duration,
                frames=self.frames,
                elapsed_s=now - self._started,
            )
        )
