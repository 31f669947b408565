"""What one export attempt did, turned into metrics and spans as it happens.

The attempt's `JobObserver` lives in a context variable of the job's task, so the code doing the
work only reports what it sees: the storage wrapper reports transfers, the progress callback
reports the media child's progress. The media child itself counts nothing (its memory dies with
it); everything is counted here, in the worker process.

Phases follow each other: start → download → process (one child span per operation, opened
when the child first reports progress for it) → upload. Errors are counted with the phase they
ended in.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from sparc_video.observability import logs as logging_setup
from sparc_video.observability.metrics import JOB_DURATION, MEDIA_SECONDS, SPEED
from sparc_video.observability.tracing import tracer
from workers.sandbox.child import ChildProgress

_CURRENT: contextvars.ContextVar[JobObserver | None] = contextvars.ContextVar(
    "sparc_video_job_observer", default=None
)

SUCCEEDED = "succeeded"


@dataclass
class _Operation:
    index: int
    name: str
    span: Span
    started: float = field(default_factory=time.perf_counter)
    last: ChildProgress | None = None


class JobObserver:
    def __init__(self, export_id: str, span: Span) -> None:
        self.export_id = export_id
        self.span = span
        self.phase = "start"
        self.attempt = 0
        self.started = time.perf_counter()
        self.uploaded_bytes = 0
        self._process: Span | None = None
        self._operation: _Operation | None = None

    def activate(self) -> contextvars.Token[JobObserver | None]:
        return _CURRENT.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[JobObserver | None]) -> None:
        _CURRENT.reset(token)

    def downloading(self) -> None:
        self.phase = "download"

    def downloaded(self) -> None:
        self._start_process()

    def progress(self, progress: ChildProgress) -> None:
        process = self._start_process()
        current = self._operation
        # A camera range's join reports index 0 too, under its own name: a phase of its own.
        if current is None or (current.index, current.name) != (
            progress.operation_index,
            progress.operation,
        ):
            self._end_operation(SUCCEEDED)
            span = tracer().start_span(
                progress.operation,
                context=trace.set_span_in_context(process),
                attributes={
                    "sparc.export_id": self.export_id,
                    "sparc.operation": progress.operation,
                    "sparc.operation_index": progress.operation_index,
                },
            )
            current = self._operation = _Operation(
                progress.operation_index, progress.operation, span
            )
            self.phase = progress.operation
        current.last = progress

    def uploading(self) -> None:
        # The child's result arrived: every operation finished.
        self._end_process(SUCCEEDED)
        self.phase = "upload"

    def finish(self, status: str) -> None:
        """End what is still open with the attempt's outcome."""
        self._end_process(status)

    def _start_process(self) -> Span:
        if self._process is None:
            self.phase = "process"
            self._process = tracer().start_span(
                "process",
                context=trace.set_span_in_context(self.span),
                attributes={"sparc.export_id": self.export_id},
            )
        return self._process

    def _end_operation(self, status: str) -> None:
        op, self._operation = self._operation, None
        if op is None:
            return
        JOB_DURATION.labels(op.name, status).observe(time.perf_counter() - op.started)
        if status == SUCCEEDED and op.last is not None:
            SPEED.labels(op.name).observe(op.last.speed)
            MEDIA_SECONDS.labels(op.name).inc(op.last.timemark_s)
            op.span.set_attribute("sparc.media_seconds", op.last.timemark_s)
            op.span.set_attribute("sparc.speed", op.last.speed)
            op.span.set_attribute("sparc.fps", op.last.fps)
        else:
            op.span.set_status(Status(StatusCode.ERROR, status))
        op.span.end()

    def _end_process(self, status: str) -> None:
        self._end_operation(status)
        if self._process is not None:
            if status != SUCCEEDED:
                self._process.set_status(Status(StatusCode.ERROR, status))
            self._process.end()
            self._process = None


def current() -> JobObserver | None:
    return _CURRENT.get()


def observe_progress(progress: ChildProgress) -> None:
    """Called for every progress message of the media child, before any throttling."""
    observer = _CURRENT.get()
    if observer is not None:
        observer.progress(progress)


def note_attempt(attempt: int) -> None:
    """The attempt number is known once the record moved to RUNNING: tag logs and the span."""
    logging_setup.update(attempt=attempt)
    observer = _CURRENT.get()
    if observer is not None:
        observer.attempt = attempt
        observer.span.set_attribute("sparc.attempt", attempt)
