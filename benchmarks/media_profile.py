"""The --profile side of the media benchmark: where our media child's CPU goes, by kind.

cProfile runs in the media child around the plan and sees the calling thread only (with the
stages in one loop, as on 2 cores, that is the whole pass; with stages in threads, the
encoding stage). Each function's own time (tottime) is put in one of three kinds:

- calls into C: PyAV's codec, filter, demuxer and muxer calls, where FFmpeg does the work;
- our Python: functions in sparc_video/ and workers/ (timing decisions, stages, progress);
- other Python: the standard library our code calls (fractions, threading, ...).

cProfile adds its own cost to every Python call, so the Python kinds are upper bounds. The
question it answers (issue 18): how much of our CPU is per-frame Python that the ffmpeg CLI
does not have.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
from collections.abc import Iterator
from typing import Any

_KINDS = ("calls into C", "our Python", "other Python")
_OURS = ("/sparc_video/", "/workers/", "/benchmarks/")
# What the media children reported, in order: (run, summary).
_SEEN: list[tuple[str, dict[str, Any]]] = []


@contextlib.contextmanager
def profiled(enabled: bool) -> Iterator[cProfile.Profile | None]:
    """A running profiler while the block runs, when `enabled`."""
    if not enabled:
        yield None
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield profile
    finally:
        profile.disable()


def summary(profile: cProfile.Profile, cpu_s: float) -> dict[str, Any]:
    """Seconds by kind, the costliest calls into C, and the video frames encoded (calls of a
    video stream's encode, less the final flush): picklable, for the parent."""
    kinds = dict.fromkeys(_KINDS, 0.0)
    calls: list[tuple[float, str, int]] = []
    frames = 0
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (path, _, name), (_, count, own_s, _, _) in stats.items():
        if path == "~":  # a built-in or extension call: "{method 'encode' of '...' objects}"
            kinds["calls into C"] += own_s
            calls.append((own_s, name, count))
            if "av.video.stream.VideoStream" in name and "'encode'" in name:
                frames = max(0, count - 1)
        elif any(part in path for part in _OURS):
            kinds["our Python"] += own_s
        else:
            kinds["other Python"] += own_s
    calls.sort(reverse=True)
    return {"cpu_s": cpu_s, "kinds": kinds, "top": calls[:5], "frames": frames}


def seen(run: str, body: dict[str, Any] | None) -> None:
    if body is not None:
        _SEEN.append((run, body))


def report() -> str:
    lines = [
        "profile of our media child's calling thread (cProfile: own time by kind; Python kinds "
        "are upper bounds):"
    ]
    for run, body in _SEEN:
        kinds = body["kinds"]
        total = sum(kinds.values()) or 1.0
        shares = ", ".join(
            f"{kind} {secs:.2f} s ({100 * secs / total:.1f}%)" for kind, secs in kinds.items()
        )
        lines.append(f"- {run} (process CPU {body['cpu_s']:.2f} s): {shares}")
        frames = body["frames"]
        if frames:
            python_us = 1e6 * (kinds["our Python"] + kinds["other Python"]) / frames
            lines.append(f"  Python per video frame: {python_us:.0f} us over {frames} frames")
        for secs, name, count in body["top"]:
            lines.append(f"  {secs:7.2f} s  {count:6d} x {name}")
    return "\n".join(lines)
