"""The --profile side of the media benchmark: where our media child's CPU goes, by kind.

cProfile runs in the media child around the plan and sees the calling thread only (with the
stages in one loop, as on 2 cores, that is the whole pass; with stages in threads, the
encoding stage). Each function's own time (tottime) is put in one of three kinds:

- calls into C: PyAV's codec, filter, demuxer and muxer calls, where FFmpeg does the work;
- our Python: functions in sparc_video/ and workers/ (timing decisions, stages, progress);
- other Python: the standard library our code calls (fractions, threading, ...).

cProfile adds its own cost to every Python call, so the Python kinds are upper bounds. The
question it answers (issue 18): how much of our CPU is per-frame Python that the ffmpeg CLI
does not have. `stage_costs` then sets decoding and scaling, as our pass does them, beside the
CLI doing the same into a null output.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import resource
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
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


def stage_costs(source: Path, rounds: int = 2) -> str:
    """Decoding alone, then decoding and scaling to 720p, as our pass does them (PyAV, the
    pass's filter chain) and as the CLI does them into a null output: CPU seconds each."""
    lines = ["stage CPU against the CLI (video only, null output; each round alternates sides):"]
    for _ in range(rounds):
        for scale in (False, True):
            ours_wall, ours_cpu = _ours_stages(source, scale)
            args = ["-vf", "scale=1280:720"] if scale else []
            theirs_wall, theirs_cpu = _cli_stages(source, args)
            lines.append(
                f"- {'decode + scale to 720p' if scale else 'decode'}: ours {ours_cpu:.2f} s CPU "
                f"({ours_wall:.2f} s wall), ffmpeg {theirs_cpu:.2f} s ({theirs_wall:.2f} s)"
            )
    return "\n".join(lines)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ours_stages(source: Path, scale: bool) -> tuple[float, float]:
    import av

    from workers.pipeline.filters import FilterChain, Resize

    started, cpu = time.perf_counter(), _cpu_s()
    with av.open(str(source)) as inp:
        stream = inp.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        chain = FilterChain((stream.width, stream.height), [Resize(1280, 720)], "yuv420p")
        for packet in inp.demux(stream):
            for frame in packet.decode():
                if scale:
                    chain(frame)
    return time.perf_counter() - started, _cpu_s() - cpu


def _cli_stages(source: Path, args: list[str]) -> tuple[float, float]:
    started = time.perf_counter()
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(source)]
    process = subprocess.Popen([*command, "-map", "0:v", *args, "-f", "null", "-"])
    _, _, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime
