"""The arq job as the service sees it: one span, one log context and the job metrics.

`observed(run_export)` is what the worker registers. Before the attempt it reads the export's
stored traceparent, so the `run_export` span continues the trace that CreateExport started,
whichever worker, attempt or requeue runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from arq import Retry
from arq.typing import WorkerCoroutine
from opentelemetry.trace import SpanKind, Status, StatusCode

from sparc_video.exports.models import ExportRecord, ExportState
from sparc_video.observability import logs as logging_setup
from sparc_video.observability.metrics import (
    BUSY_SLOTS,
    ERRORS,
    EXPORT_SIZE,
    JOB_DURATION,
    JOBS,
    RETRIES,
)
from sparc_video.observability.tracing import context_from_traceparent, record_error, tracer
from workers.job.context import WorkerContext
from workers.telemetry.observer import SUCCEEDED, JobObserver

log = logging.getLogger(__name__)

# Accounting happens as the job ends, maybe during a shutdown: it must not hold that up.
REDIS_READ_TIMEOUT_S = 2.0

JobFunction = Callable[[dict[str, Any], str], Coroutine[Any, Any, str]]


def observed(run: JobFunction) -> WorkerCoroutine:
    @functools.wraps(run)
    async def run_observed(ctx: dict[str, Any], export_id: str) -> str:
        worker = WorkerContext.of(ctx)
        record = await _record(worker, export_id)
        parent = context_from_traceparent(record.trace_context if record else "")
        job_id = str(ctx.get("job_id") or export_id)
        with (
            logging_setup.bind(export_id=export_id, job_id=job_id, worker_id=worker.worker_id),
            tracer().start_as_current_span(
                "run_export",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    "sparc.export_id": export_id,
                    "messaging.system": "arq",
                    "messaging.message.id": job_id,
                    "sparc.job_try": int(ctx.get("job_try") or 1),
                },
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
        ):
            observer = JobObserver(export_id, span)
            token = observer.activate()
            BUSY_SLOTS.inc()
            status = "error"
            try:
                result = await run(ctx, export_id)
                status = result.lower()
                return result
            except Retry:
                status = "retrying"
                raise
            except asyncio.CancelledError:
                status = "interrupted"
                raise
            except Exception as exc:
                record_error(span, exc)
                raise
            finally:
                BUSY_SLOTS.dec()
                observer.deactivate(token)
                await asyncio.shield(_account(worker, observer, status))

    return run_observed


async def _outcome_written(worker: WorkerContext, observer: JobObserver) -> str:
    """A cancelled attempt may have written its outcome first (a worker stopping while the
    attempt cleans up after it): count what the record says this attempt ended in."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(REDIS_READ_TIMEOUT_S):
            record = await worker.store.get(observer.export_id)
        if record.attempt == observer.attempt and record.state in (
            ExportState.RETRYING,
            ExportState.FAILED,
        ):
            return record.state.value.lower()
    return "interrupted"


async def _record(worker: WorkerContext, export_id: str) -> ExportRecord | None:
    try:
        return await worker.store.get(export_id)
    except Exception:  # gone or Redis down: the attempt itself reports that properly
        return None


async def _account(worker: WorkerContext, observer: JobObserver, status: str) -> None:
    if status == "interrupted" and observer.attempt:
        status = await _outcome_written(worker, observer)
    observer.finish(status)
    span = observer.span
    span.set_attribute("sparc.job.status", status)
    JOBS.labels(status).inc()
    JOB_DURATION.labels("export", status).observe(time.perf_counter() - observer.started)
    if status == SUCCEEDED:
        EXPORT_SIZE.observe(observer.uploaded_bytes)
        span.set_attribute("sparc.output_bytes", observer.uploaded_bytes)
        return
    if status not in ("failed", "retrying", "error"):
        return
    reason = "INTERNAL"
    if status != "error":
        with contextlib.suppress(Exception):
            async with asyncio.timeout(REDIS_READ_TIMEOUT_S):
                record = await worker.store.get(observer.export_id)
            if record.error is not None:
                reason = record.error.reason
    ERRORS.labels(reason, observer.phase).inc()
    if status == "retrying":
        RETRIES.labels(reason).inc()
    span.set_attribute("error.type", reason)
    span.set_status(Status(StatusCode.ERROR, f"{status}: {reason} during {observer.phase}"))
