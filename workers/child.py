"""The code that runs inside the media child process: the operations of one export, in order.

It talks to the worker only through a one-way pipe of small messages (progress, then done or
error) and watches a cancel event from its progress callback, which is the cancellation point.
"""

from __future__ import annotations

import errno
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Literal

from sparc_video.errors import JobCancelled, ProcessingError
from sparc_video.models import Operation, ThumbnailOp, TranscodeOp
from workers.pipeline import PassProgress, probe, thumbnails, transcode

# Seconds of source media a thumbnail "costs" for the overall percent: seeking makes each one
# cheap and independent of the video's length.
THUMBNAIL_WEIGHT_S = 0.5


@dataclass(frozen=True)
class ChildProgress:
    operation_index: int
    operation: str
    percent: float
    timemark_s: float
    fps: float
    speed: float
    eta_s: float | None


@dataclass(frozen=True)
class ProducedFile:
    kind: Literal["video", "thumbnail"]
    path: Path
    operation_index: int
    width: int
    height: int
    content_type: str
    duration_s: float | None = None
    timestamp_s: float | None = None
    video_codec: str = ""
    audio_codec: str = ""


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


def _weight(op: Operation, duration_s: float) -> float:
    if isinstance(op, ThumbnailOp):
        return THUMBNAIL_WEIGHT_S * len(op.timestamps)
    return max(duration_s, 0.001)


class _PlanProgress:
    """Turns one operation's PassProgress into progress of the whole export."""

    def __init__(
        self, operations: list[Operation], duration_s: float, send: Connection, cancel: Event
    ) -> None:
        self._weights = [_weight(op, duration_s) for op in operations]
        self._total = sum(self._weights)
        self._operations = operations
        self._send = send
        self._cancel = cancel
        self._started = time.monotonic()
        self.index = 0

    def __call__(self, p: PassProgress) -> None:
        if self._cancel.is_set():
            raise JobCancelled()
        fraction = min(1.0, p.media_time_s / p.media_duration_s) if p.media_duration_s else 1.0
        done = sum(self._weights[: self.index]) + self._weights[self.index] * fraction
        percent = 100.0 * done / self._total
        elapsed = time.monotonic() - self._started
        eta = elapsed * (100.0 - percent) / percent if percent > 0.5 else None
        self._send.send(
            (
                "progress",
                ChildProgress(
                    operation_index=self.index,
                    operation=self._operations[self.index].name,
                    percent=percent,
                    timemark_s=p.media_time_s,
                    fps=p.frames / p.elapsed_s if p.elapsed_s > 0 else 0.0,
                    speed=p.media_time_s / p.elapsed_s if p.elapsed_s > 0 else 0.0,
                    eta_s=eta,
                ),
            )
        )


def run_operations(
    source: Path, workdir: Path, operations: list[Operation], send: Connection, cancel: Event
) -> None:
    """Child-process entry point."""
    try:
        send.send(("done", _run(source, workdir, operations, send, cancel)))
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


def _run(
    source: Path, workdir: Path, operations: list[Operation], send: Connection, cancel: Event
) -> list[ProducedFile]:
    info = probe(source)
    progress = _PlanProgress(operations, info.duration_s, send, cancel)
    current = source
    current_video: ProducedFile | None = None
    produced: list[ProducedFile] = []
    for index, op in enumerate(operations):
        progress.index = index
        if isinstance(op, TranscodeOp):
            dst = workdir / f"op{index}.mp4"
            result = transcode(current, dst, op, progress)
            current = dst
            current_video = ProducedFile(
                kind="video",
                path=dst,
                operation_index=index,
                width=result.width,
                height=result.height,
                content_type="video/mp4",
                duration_s=result.duration_s,
                video_codec=result.video_codec,
                audio_codec=result.audio_codec,
            )
        else:
            out_dir = workdir / f"op{index}"
            out_dir.mkdir()
            for thumb in thumbnails(current, out_dir, op, progress):
                produced.append(
                    ProducedFile(
                        kind="thumbnail",
                        path=thumb.path,
                        operation_index=index,
                        width=thumb.width,
                        height=thumb.height,
                        content_type="image/jpeg",
                        timestamp_s=thumb.timestamp_s,
                    )
                )
    # One video per export: the result of the last operation that produced video.
    if current_video is not None:
        produced.insert(0, current_video)
    return produced
