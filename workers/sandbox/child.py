"""The code that runs inside the media child process: the operations of one export, in order.

It talks to the worker only through a one-way pipe of small messages (progress, then done or
error) and watches a cancel event from its progress callback, which is the cancellation point.
"""

from __future__ import annotations

import errno
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Literal

from sparc_video.core.errors import (
    InvalidArgument,
    JobCancelled,
    PermanentProcessingError,
    ProcessingError,
)
from sparc_video.exports.models import MediaFacts, OutputKind
from sparc_video.exports.operations import Operation
from sparc_video.exports.plan import VideoPlan, compile_plan
from workers.pipeline import PassProgress, probe
from workers.pipeline.assets import asset_paths
from workers.pipeline.cores import job_budget
from workers.pipeline.encoders import HardwareReport, probe_hardware
from workers.pipeline.join import JoinMethod, JoinResult, JoinSpec, join_segments
from workers.pipeline.media import MediaLimits
from workers.pipeline.planner import Pass, ThumbnailPass, build_passes
from workers.pipeline.render import VideoPass, run_video_pass
from workers.pipeline.thumbnail import (
    CONTENT_TYPES,
    SpriteSheet,
    Thumbnail,
    run_thumbnail_pass,
)
from workers.pipeline.wall_clock import WallClock, mark_wall_clock, output_parts


@dataclass(frozen=True)
class ChildProgress:
    # The first operation of the pass running now, and the names of its operations joined
    # with "+" (e.g. "trim+watermark+transcode").
    operation_index: int
    operation: str
    percent: float
    timemark_s: float
    fps: float
    speed: float
    eta_s: float | None
    # Why the operation runs the way it does, for the worker's log (e.g. why a join is not a
    # stream copy); "" when there is nothing to say.
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class ProducedFile(MediaFacts):
    """A file the plan made, where it lies in the work folder: the worker uploads it and keeps
    its facts in an `Output`."""

    path: Path


@dataclass(frozen=True)
class ChildFailure:
    error_type: str  # "media", "permanent", "cancelled", "internal"
    reason: str
    message: str


Message = (
    tuple[Literal["progress"], ChildProgress]
    | tuple[Literal["done"], list[ProducedFile]]
    | tuple[Literal["error"], ChildFailure]
)


class _PlanProgress:
    """Turns one pass's PassProgress into progress of the whole export: one percent over the
    plan, each pass weighted by the media it processes (see planner.py's weights)."""

    def __init__(
        self, passes: list[Pass], report: Callable[[ChildProgress], None], cancel: Event | None
    ) -> None:
        self._weights = [p.weight for p in passes]
        self._total = sum(self._weights) or 1.0
        self._passes = passes
        self._report = report
        self._cancel = cancel
        self._started = time.monotonic()
        self.index = 0
        # A join before the plan takes the first `offset` percent (see run_plan).
        self.offset = 0.0

    def __call__(self, p: PassProgress) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise JobCancelled()
        fraction = min(1.0, p.media_time_s / p.media_duration_s) if p.media_duration_s else 1.0
        done = sum(self._weights[: self.index]) + self._weights[self.index] * fraction
        percent = self.offset + (100.0 - self.offset) * done / self._total
        elapsed = time.monotonic() - self._started
        eta = elapsed * (100.0 - percent) / percent if percent > 0.5 else None
        current = self._passes[self.index]
        self._report(
            ChildProgress(
                operation_index=current.operations[0],
                operation=current.label,
                percent=percent,
                timemark_s=p.media_time_s,
                fps=p.frames / p.elapsed_s if p.elapsed_s > 0 else 0.0,
                speed=p.media_time_s / p.elapsed_s if p.elapsed_s > 0 else 0.0,
                eta_s=eta,
            )
        )


def run_operations(
    source: Path,
    workdir: Path,
    operations: list[Operation],
    join: JoinSpec | None,
    wall_clock: WallClock | None,
    hardware: HardwareReport,
    limits: MediaLimits,
    send: Connection,
    cancel: Event,
) -> None:
    """Child-process entry point; `hardware` is the worker's start-up probe."""
    try:
        produced = run_plan(
            source,
            workdir,
            operations,
            lambda p: send.send(("progress", p)),
            cancel,
            hardware,
            join=join,
            wall_clock=wall_clock,
            limits=limits,
        )
        send.send(("done", produced))
    except JobCancelled as exc:
        send.send(("error", ChildFailure("cancelled", exc.reason, exc.message)))
    except ProcessingError as exc:
        send.send(("error", ChildFailure("permanent", exc.reason, exc.message)))
    except (MemoryError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno != errno.EFBIG:
            _report_internal(exc, send)
        else:
            raise  # the sandbox reports running out of memory or file size
    except Exception as exc:
        _report_internal(exc, send)


def _report_internal(exc: Exception, send: Connection) -> None:
    """Anything unexpected is reported to the worker, which fails the export with it."""
    traceback.print_exc()
    send.send(("error", ChildFailure("internal", "INTERNAL", f"{type(exc).__name__}: {exc}")))


# Share of the progress percent a camera range's join takes before the plan runs, by its way of
# joining: a re-encode costs about what the operations do, a stream copy a small part of it.
JOIN_PERCENT = {"re-encode": 50.0, "copy": 5.0}


def _join(
    join: JoinSpec, dst: Path, report: Callable[[ChildProgress], None], cancel: Event | None
) -> JoinResult:
    started = time.monotonic()

    def on_progress(method: JoinMethod, done_s: float, total_s: float) -> None:
        if cancel is not None and cancel.is_set():
            raise JobCancelled()
        fraction = min(1.0, done_s / total_s) if total_s > 0 else 1.0
        elapsed = time.monotonic() - started
        report(
            ChildProgress(
                operation_index=0,
                # The way of joining shows: "join:copy" or "join:re-encode".
                operation=f"join:{method.name}",
                percent=JOIN_PERCENT[method.name] * fraction,
                timemark_s=done_s,
                fps=0.0,
                speed=done_s / elapsed if elapsed > 0 else 0.0,
                eta_s=None,
                detail=method.reason,
            )
        )

    return join_segments(join, dst, on_progress)


def probe_hardware_encoders(send: Connection, cancel: Event) -> None:
    """Child-process entry point of the worker's start-up probe: a driver that crashes while
    CUDA loads takes this child down, not the worker."""
    send.send(("done", probe_hardware()))


def run_plan(
    source: Path,
    workdir: Path,
    operations: list[Operation],
    report: Callable[[ChildProgress], None],
    cancel: Event | None = None,
    hardware: HardwareReport | None = None,
    *,
    join: JoinSpec | None = None,
    wall_clock: WallClock | None = None,
    limits: MediaLimits | None = None,
) -> list[ProducedFile]:
    """Compile `operations` into passes over `source` and run them, writing into `workdir`
    (where the watermark images already are, see `workers.pipeline.assets`). `hardware`: the
    worker's start-up probe (None outside a worker: see `build_passes`).

    With `join` (a camera time range), the recordings' spans are first joined into `source`,
    which the plan then reads like any uploaded video. With `wall_clock` (a recording or a
    camera range), the video gets chapters (and subtitles) with the capture time, and a
    watermark clock without a base time of its own shows each frame's capture time."""
    workdir.mkdir(parents=True, exist_ok=True)
    joined = _join(join, source, report, cancel) if join is not None else None
    info = probe(source)
    limits = limits or MediaLimits()
    limits.check(info)
    budget = job_budget(limits.worker_concurrency)
    try:
        plan = compile_plan(
            operations, capture_time=wall_clock.capture_time if wall_clock else None
        )
    except InvalidArgument as exc:  # validated at CreateExport: only a record from elsewhere
        raise PermanentProcessingError(exc.message, reason="INVALID_PLAN") from exc
    passes = build_passes(plan, source, info, workdir, asset_paths(workdir, operations), hardware)
    progress = _PlanProgress(passes, report, cancel)
    if joined is not None:
        progress.offset = JOIN_PERCENT[joined.method.name]
    video: ProducedFile | None = None
    produced: list[ProducedFile] = []
    for index, current in enumerate(passes):
        progress.index = index
        if isinstance(current, VideoPass):
            result = run_video_pass(current, progress, info, budget)
            out = result.info
            video = ProducedFile(
                kind=OutputKind.VIDEO,
                path=current.dst,
                operation_index=current.operations[-1],
                width=out.width,
                height=out.height,
                content_type=current.container.content_type,
                duration_s=out.duration_s,
                video_codec=out.video_codec,
                audio_codec=out.audio_codec,
                first_keyframe_s=result.first_keyframe_s,
                video_encoder=result.encoder,
            )
        else:
            produced.extend(_images(current, run_thumbnail_pass(current, progress)))
    # One video per export, first.
    if video is not None:
        if wall_clock is not None and plan.video is not None:
            _mark(video, wall_clock, plan.video)
        produced.insert(0, video)
    return produced


def _mark(video: ProducedFile, clock: WallClock, plan: VideoPlan) -> None:
    if not plan.encode and plan.trimmed:
        return  # a fast trim's edit list would not survive a second mux (see wall_clock.py)
    parts = output_parts(clock, plan.segment.start_s, plan.segment.end_s)
    mark_wall_clock(video.path, parts, video.duration_s or 0.0, clock.subtitles)


def _images(p: ThumbnailPass, result: list[Thumbnail] | SpriteSheet) -> list[ProducedFile]:
    content_type = CONTENT_TYPES[p.op.format]
    index = p.operations[0]
    if isinstance(result, SpriteSheet):
        return [
            ProducedFile(
                kind=OutputKind.SPRITE_SHEET,
                path=result.path,
                operation_index=index,
                width=result.width,
                height=result.height,
                content_type=content_type,
                sprite_columns=result.columns,
                sprite_rows=result.rows,
                tile_width=result.tile_width,
                tile_height=result.tile_height,
                tile_times_s=result.tile_times_s,
            )
        ]
    return [
        ProducedFile(
            kind=OutputKind.THUMBNAIL,
            path=thumb.path,
            operation_index=index,
            width=thumb.width,
            height=thumb.height,
            content_type=content_type,
            timestamp_s=thumb.timestamp_s,
        )
        for thumb in result
    ]
