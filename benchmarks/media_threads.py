"""The threads side of the media benchmark: which threads our pass had, where its stages spent
their time (--trace), the stages forced into threads or one loop (--stages), and the CPUs both
sides are pinned to (--scaling)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# What the media children reported, in order: (run, budget, traces).
_SEEN: list[tuple[str, Any, list[Any]]] = []


@dataclass
class Knobs:
    """Sent to each media child (and used for each ffmpeg run)."""

    stages: str = "auto"  # "auto" | "serial" | "threaded"
    cpus: tuple[int, ...] = ()  # pin to these CPUs; (): as started
    profile: bool = False  # cProfile the plan (benchmarks.media_profile)

    def pin(self, count: int) -> None:
        """Pin the next runs to `count` CPUs (0: no pinning)."""
        self.cpus = tuple(sorted(os.sched_getaffinity(0))[:count]) if count else ()

    def pin_this_process(self) -> None:
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def apply(self) -> dict[str, Any]:
        """In the media child, before the plan: pin, force the stages; returns the threads
        it will use."""
        from workers.pipeline import cores

        self.pin_this_process()
        if self.stages == "threaded":
            cores.SERIAL_UP_TO_CORES = 0
        elif self.stages == "serial":
            cores.SERIAL_UP_TO_CORES = 1 << 30
        budget = cores.job_budget()
        return {
            "cores": budget.cores,
            "usable": budget.usable,
            "codec": budget.codec_threads or "FFmpeg's auto",
            "x264": budget.x264_threads or "x264's auto",
            "stages": "threads" if budget.pipelined else "one loop",
        }


def core_counts(spec: str) -> list[int]:
    """The --scaling counts this machine has cores for (the others are said to be skipped)."""
    have = len(os.sched_getaffinity(0))
    counts = [int(part) for part in spec.split(",") if part.strip()]
    skipped = [count for count in counts if count > have]
    if skipped:
        print(f"scaling: {have} cores here, skipping {', '.join(map(str, skipped))}", flush=True)
    return [count for count in counts if count <= have]


def seen(run: str, budget: Any, traces: list[Any]) -> None:
    _SEEN.append((run, budget, traces))


def _budget(budget: dict[str, Any]) -> str:
    return (
        f"{budget['cores']} of {budget['usable']} usable cores; decoder/filter threads "
        f"{budget['codec']}, libx264 threads {budget['x264']}; stages in {budget['stages']}"
    )


def report(*, trace: bool) -> str:
    lines = ["threads of our side (workers.pipeline.cores, per media child):"]
    for description in dict.fromkeys(_budget(budget) for _, budget, _ in _SEEN):
        lines.append(f"- {description}")
    if not trace:
        return "\n".join(lines)
    lines += [
        "",
        "stage trace per video pass, in ms per item (a video or audio frame): busy / waiting "
        "for input / waiting for room downstream",
    ]
    for run, _, traces in _SEEN:
        for pass_trace in traces:
            items = max((stage.items for stage in pass_trace.stages), default=0) or 1
            busy = sum(stage.busy_s for stage in pass_trace.stages)
            parts = [
                f"{stage.name} {1000 * stage.busy_s / items:.1f} / "
                f"{1000 * stage.wait_in_s / items:.1f} / {1000 * stage.wait_out_s / items:.1f}"
                for stage in pass_trace.stages
            ]
            mode = "threads" if pass_trace.threaded else "one loop"
            lines.append(
                f"- {run} ({mode}, {items} items, {pass_trace.wall_s:.2f} s): "
                + "; ".join(parts)
                + f"; stages busy {busy / pass_trace.wall_s:.2f}x the wall time"
            )
    return "\n".join(lines)
