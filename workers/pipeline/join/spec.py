"""What a camera time range's join reads and gives back, shared by its two ways of joining:
stream copy (`join_copy`) and re-encoding (`join`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Frames within this much of a cut count as inside it (timestamps are rounded by containers).
EPSILON_S = 1e-4


@dataclass(frozen=True)
class JoinSegment:
    """A span of a recording (`path` set) or a gap (`path` None), `duration_s` long, starting
    at wall-clock `start_ns`; a span starts `source_offset_s` into its recording's video."""

    path: Path | None
    start_ns: int
    duration_s: float
    source_offset_s: float = 0.0


@dataclass(frozen=True)
class JoinSpec:
    segments: tuple[JoinSegment, ...]

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.segments)


@dataclass(frozen=True)
class JoinMethod:
    # "copy" (packets copied between the cuts) or "re-encode".
    name: str
    # Why the range was not copied ("" when it was).
    reason: str = ""


@dataclass(frozen=True)
class JoinResult:
    path: Path
    # Where each segment starts in the joined video (seconds), in order.
    offsets_s: tuple[float, ...]
    method: JoinMethod


# (method, media seconds written, total media seconds); may raise to stop the join.
JoinProgress = Callable[[JoinMethod, float, float], None]


def segment_times(spec: JoinSpec) -> Iterator[tuple[float, JoinSegment]]:
    """(offset in the joined video, segment), in order."""
    position = 0.0
    for segment in spec.segments:
        yield position, segment
        position += segment.duration_s
