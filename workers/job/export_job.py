"""The arq job: run one export from its record to uploaded outputs, publishing progress.

The job's only argument is the export id. Each run is one attempt:

- It starts by moving the record to RUNNING with the next attempt number (fenced in PostgreSQL)
  and taking the export's lease (a Redis key with a TTL); a run that finds another live lease
  (arq can start a job twice) or a newer revision leaves without touching anything.
- While it runs, a keeper task renews the lease twice a second and reads the export's state in
  the same call. CANCELLED (CancelExport) or a lost lease (this worker was presumed dead and the
  export moved on) stops the attempt: the media child is stopped, partial outputs are deleted.
- Every write is guarded by state RUNNING and the same attempt, so a stale attempt can never
  overwrite a newer one. Outputs go under `exports/{id}/{attempt}/`, a deterministic prefix per
  attempt; the succeeding attempt deletes every other attempt's leftovers.
- A succeeding attempt writes the export's signed manifest (`sparc_video.evidence.manifest`) next to
  its outputs before it marks the export SUCCEEDED, so a SUCCEEDED export always has one.
- Transient failures are retried with exponential backoff (RETRYING shows the next attempt time);
  permanent ones fail the export with a reason. A worker shutdown hands the export back (QUEUED)
  without spending the retry budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arq import Retry

from sparc_video.core.errors import (
    ExportNotFound,
    JobCancelled,
    PermanentProcessingError,
    ProcessingError,
    ProcessingTimeout,
    SparcVideoError,
    TransientProcessingError,
    Unavailable,
)
from sparc_video.evidence import manifest
from sparc_video.exports.event_log import EventKind
from sparc_video.exports.leases import Lease, LeaseHeld
from sparc_video.exports.models import (
    ExportError,
    ExportRecord,
    ExportState,
    ManifestRef,
    Output,
    Progress,
)
from sparc_video.exports.records import StaleWrite
from workers.job import scratch
from workers.job.context import WorkerContext
from workers.job.outputs import (
    attempt_prefix,
    output_prefix,
    upload_outputs,
    write_signed_manifest,
)
from workers.job.sources import download_source, download_spans, source_entry
from workers.pipeline.assets import download_assets
from workers.pipeline.join import JoinSpec
from workers.pipeline.media import MediaLimits
from workers.pipeline.wall_clock import wall_clock_of
from workers.sandbox.child import ChildProgress
from workers.sandbox.runner import ProcessLimits, run_in_child
from workers.telemetry import observer as job_observer

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5
KEEPER_INTERVAL_S = 0.5
# A crash of the media process may be a fluke of the machine; twice is the file.
CRASH_REASON = "PROCESSOR_CRASHED"


async def run_export(ctx: dict[str, Any], export_id: str) -> str:
    """arq entry point; returns how the attempt ended."""
    return await ExportJob(WorkerContext.of(ctx), export_id).run()


class _Stop(Exception):
    """Why the keeper stopped the attempt."""

    def __init__(self, error: JobCancelled | StaleWrite) -> None:
        super().__init__(error.message)
        self.error = error


class ExportJob:
    def __init__(self, worker: WorkerContext, export_id: str) -> None:
        self.worker = worker
        self.export_id = export_id
        self.attempt = 0
        self.lease = Lease(
            token=f"{worker.worker_id}:{uuid.uuid4().hex[:8]}", ttl_s=worker.settings.lease_ttl_s
        )
        self.workdir = worker.settings.temp_dir / f"{export_id}.new"
        self._stop: JobCancelled | StaleWrite | None = None
        # Set once the attempt writes its outcome (which releases the lease): a lease gone then
        # is our own doing.
        self._concluded = False
        # Set once that write went through: it dropped the lease if it was still ours.
        self._lease_released = False
        # Once removed, the work dir is not made again: the `finally` needs no thread for it.
        self._workdir_removed = False
        self._last_publish = 0.0
        self._last_operation: tuple[int, str] = (-1, "")
        # What the attempt read, as hashed from the downloaded bytes: the manifest's sources.
        self._sources: list[manifest.SourceEntry] = []

    async def run(self) -> str:
        try:
            record = await self._start()
        except LeaseHeld as exc:
            log.info("export %s: %s; leaving it to that attempt", self.export_id, exc.message)
            return "duplicate"
        except ExportNotFound:  # deleted, or a create that never committed: nothing to run
            log.info("export %s does not exist; nothing to do", self.export_id)
            return "skipped"
        if record is None:
            return "skipped"
        self.workdir = scratch.attempt_dir(
            self.worker.settings.temp_dir, self.export_id, self.attempt
        )
        self.worker.scratch_in_use.add(self.workdir.name)
        work = asyncio.current_task()
        assert work is not None
        keeper = asyncio.create_task(self._keep(work), name=f"lease-{self.export_id}")
        try:
            outputs = await self._process(record, self.workdir)
            await self._finish(record, outputs)
            return ExportState.SUCCEEDED.value
        except asyncio.CancelledError:
            if self._stop is None:
                # arq cancelled us: the worker is shutting down. Hand the export back.
                await asyncio.shield(self._hand_back())
                raise
            work.uncancel()
            return await self._stopped(self._stop)
        except (JobCancelled, StaleWrite) as exc:
            return await self._stopped(exc)
        except (TransientProcessingError, Unavailable, OSError) as exc:
            return await self._retry_or_fail(exc)
        except ProcessingTimeout as exc:
            # A video that took too long will usually take too long again: retry only on request.
            if self.worker.settings.retry_timeouts:
                return await self._retry_or_fail(exc)
            return await self._fail(exc)
        except ProcessingError as exc:
            return await self._fail(exc)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await asyncio.shield(self._remove_workdir())
            self.worker.scratch_in_use.discard(self.workdir.name)
            if not self._lease_released:
                with contextlib.suppress(Exception):
                    await self.worker.store.release_lease(self.export_id, self.lease)

    async def _start(self) -> ExportRecord | None:
        worker_id = self.worker.worker_id

        def to_running(record: ExportRecord) -> str | None:
            if record.state.terminal:
                return None
            record.state = ExportState.RUNNING
            record.attempt += 1
            record.worker_id = worker_id
            record.start_time = record.start_time or time.time()
            record.next_attempt_time = None
            record.progress = Progress(
                # A camera range is joined before the first operation runs.
                current_operation="join" if record.camera_range else record.operations[0].name,
                operation_count=len(record.operations),
            )
            return EventKind.STATE_CHANGED

        record = await self.worker.store.update(self.export_id, to_running, acquire=self.lease)
        if record.state != ExportState.RUNNING:
            log.info("export %s is %s; nothing to do", self.export_id, record.state)
            return None
        self.attempt = record.attempt
        job_observer.note_attempt(self.attempt)
        log.info("export %s: attempt %d started on %s", self.export_id, self.attempt, worker_id)
        return record

    async def _keep(self, work: asyncio.Task[Any]) -> None:
        """Renew the lease; stop the work when the export is cancelled or the lease is lost."""
        while True:
            await asyncio.sleep(KEEPER_INTERVAL_S)
            try:
                state = await self.worker.store.renew_lease(self.export_id, self.lease)
            except Exception as exc:  # Redis blip: the lease TTL covers a few missed renewals
                log.warning("export %s: lease renewal failed: %s", self.export_id, exc)
                continue
            if state == ExportState.RUNNING:
                continue
            if self._concluded:
                return
            if state == ExportState.CANCELLED:
                self._stop = JobCancelled()
            else:
                self._stop = StaleWrite(
                    f"export {self.export_id} moved on without this attempt (state {state})"
                )
            work.cancel()
            return

    def _guard(self, record: ExportRecord) -> None:
        if record.state == ExportState.CANCELLED:
            raise JobCancelled()
        if record.state != ExportState.RUNNING or record.attempt != self.attempt:
            raise StaleWrite(
                f"export {self.export_id} moved on (state {record.state}, attempt {record.attempt})"
            )

    async def _process(self, record: ExportRecord, workdir: Path) -> list[Output]:
        settings = self.worker.settings
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        join: JoinSpec | None = None
        if record.camera_range is not None and record.coverage is not None:
            # The child joins the downloaded spans into this file first.
            source = workdir / "joined.mp4"
            slates = record.camera_range.gap_mode == "slate"
            join, self._sources = await download_spans(
                self.worker, record.coverage, slates, workdir
            )
        else:
            source = workdir / ("source" + Path(record.source_key).suffix.lower()[:8])
            size, sha256 = await download_source(self.worker, record.source_key, source)
            spans = record.coverage.spans if record.coverage is not None else ()
            self._sources = [source_entry(record.source_key, size, sha256, spans)]
        # Watermark images: the child finds them at asset_path(workdir, key).
        await download_assets(self.worker.storage, workdir, record.operations)
        try:
            produced = await run_in_child(
                source,
                workdir,
                record.operations,
                self._publish_progress,
                timeout_s=settings.processing_timeout_ms / 1000,
                limits=ProcessLimits(
                    address_space=settings.processing_memory_limit,
                    file_size=settings.processing_file_size_limit,
                ),
                join=join,
                # Chapters, subtitles and watermark clocks without a base time of their own.
                wall_clock=wall_clock_of(record),
                hardware=await self.worker.hardware(),
                media_limits=MediaLimits.of(settings),
            )
        except PermanentProcessingError as exc:
            if exc.reason == CRASH_REASON and not _crashed_before(record):
                raise TransientProcessingError(exc.message, reason=CRASH_REASON) from exc
            raise
        return await upload_outputs(
            self.worker, produced, attempt_prefix(self.export_id, self.attempt)
        )

    async def _publish_progress(self, progress: ChildProgress) -> None:
        job_observer.observe_progress(progress)
        now = time.monotonic()
        current = (progress.operation_index, progress.operation)
        changed_operation = current != self._last_operation
        if changed_operation and progress.operation.startswith("join:"):
            # The child process does not log: the way its join went (and why) shows here.
            detail = f" ({progress.detail})" if progress.detail else ""
            log.info("export %s: %s%s", self.export_id, progress.operation, detail)
        if not changed_operation and now - self._last_publish < PROGRESS_INTERVAL_S:
            return
        self._last_publish = now
        self._last_operation = current

        def apply(record: ExportRecord) -> str:
            self._guard(record)
            record.progress = Progress(
                percent=round(progress.percent, 2),
                current_operation=progress.operation,
                operation_index=progress.operation_index,
                operation_count=len(record.operations),
                timemark_s=progress.timemark_s,
                fps=round(progress.fps, 2),
                speed=round(progress.speed, 3),
                eta_s=progress.eta_s,
            )
            return EventKind.PROGRESS

        await self.worker.store.update(self.export_id, apply)

    async def _write_manifest(
        self, record: ExportRecord, outputs: list[Output], end_time: float
    ) -> ManifestRef:
        return await write_signed_manifest(
            self.worker,
            record,
            sources=self._sources,
            outputs=outputs,
            prefix=attempt_prefix(self.export_id, self.attempt),
            end_time=end_time,
        )

    async def _finish(self, started: ExportRecord, outputs: list[Output]) -> None:
        # Temp files go before a terminal state is visible: a watcher may rely on it.
        await self._remove_workdir()
        end_time = time.time()
        # The record as this attempt started it holds everything the manifest needs that a
        # later write cannot change (requester, case, operations, times).
        written = await self._write_manifest(started, outputs, end_time)

        def to_succeeded(record: ExportRecord) -> str:
            self._guard(record)
            record.state = ExportState.SUCCEEDED
            record.outputs = outputs
            record.manifest = written
            record.error = None
            record.end_time = end_time
            record.progress.percent = 100.0
            record.progress.eta_s = 0.0
            return EventKind.STATE_CHANGED

        # Before SUCCEEDED is written, so a client that sees it finds exactly this attempt's
        # objects: a killed attempt may have uploaded some of its own (older attempts can no
        # longer write; they fail the state guard).
        await self._discard_other_attempts()
        await self._write_outcome(to_succeeded)
        log.info("export %s succeeded with %d outputs", self.export_id, len(outputs))

    async def _remove_workdir(self) -> None:
        if not self._workdir_removed:
            await _remove(self.workdir)
            self._workdir_removed = True

    async def _write_outcome(self, change: Callable[[ExportRecord], str]) -> None:
        """The attempt's last write (its outcome), which also gives up its lease."""
        self._concluded = True
        await self.worker.store.update(self.export_id, change, release=self.lease)
        self._lease_released = True

    async def _stopped(self, reason: JobCancelled | StaleWrite) -> str:
        """Cancelled or superseded: remove what this attempt wrote, leave the record alone."""
        await self._remove_workdir()
        await self._discard(attempt_prefix(self.export_id, self.attempt))
        if isinstance(reason, JobCancelled):
            log.info("export %s: cancelled during attempt %d", self.export_id, self.attempt)
            return ExportState.CANCELLED.value
        log.warning("export %s: attempt %d superseded: %s", self.export_id, self.attempt, reason)
        return "superseded"

    async def _fail(self, error: SparcVideoError) -> str:
        log.warning("export %s failed: %s (%s)", self.export_id, error.message, error.reason)
        await self._remove_workdir()

        def to_failed(record: ExportRecord) -> str:
            self._guard(record)
            record.state = ExportState.FAILED
            record.error = ExportError.from_error(error)
            record.end_time = time.time()
            record.progress.eta_s = None
            return EventKind.STATE_CHANGED

        try:
            await self._write_outcome(to_failed)
        except (JobCancelled, StaleWrite) as exc:
            return await self._stopped(exc)
        await self._discard(output_prefix(self.export_id))
        return ExportState.FAILED.value

    async def _retry_or_fail(self, exc: Exception) -> str:
        error = (
            exc
            if isinstance(exc, SparcVideoError)
            else TransientProcessingError(f"temporary failure: {exc}", reason="TRANSIENT")
        )
        settings = self.worker.settings
        await self._remove_workdir()
        record = await self.worker.store.get(self.export_id)
        failures = record.failed_attempts + 1
        if failures >= settings.job_max_tries:
            return await self._fail(
                PermanentProcessingError(
                    f"gave up after {failures} failed attempts: {error.message}",
                    reason=error.reason,
                )
            )
        delay = settings.retry_initial_delay_s * settings.retry_multiplier ** (failures - 1)
        next_attempt = time.time() + delay

        def to_retrying(record: ExportRecord) -> str:
            self._guard(record)
            record.state = ExportState.RETRYING
            record.failed_attempts = failures
            record.error = ExportError.from_error(error)
            record.next_attempt_time = next_attempt
            record.worker_id = ""
            return EventKind.STATE_CHANGED

        try:
            await self._write_outcome(to_retrying)
        except (JobCancelled, StaleWrite) as stop:
            return await self._stopped(stop)
        await self._discard(attempt_prefix(self.export_id, self.attempt))
        log.warning(
            "export %s: attempt %d failed (%s); retry in %.1f s",
            self.export_id,
            self.attempt,
            error.message,
            delay,
        )
        raise Retry(defer=delay)

    async def _hand_back(self) -> None:
        """The worker is stopping: put the export back in the queue, keeping its retry budget."""

        def to_queued(record: ExportRecord) -> str:
            self._guard(record)
            record.state = ExportState.QUEUED
            record.worker_id = ""
            return EventKind.STATE_CHANGED

        with contextlib.suppress(Exception):
            await self.worker.store.update(self.export_id, to_queued, release=self.lease)
            log.info("export %s: handed back on shutdown", self.export_id)
        with contextlib.suppress(Exception):
            await self._discard(attempt_prefix(self.export_id, self.attempt))

    async def _discard_other_attempts(self) -> None:
        for attempt in range(1, self.attempt):
            await self._discard(attempt_prefix(self.export_id, attempt))

    async def _discard(self, prefix: str) -> None:
        try:
            await self.worker.storage.delete_prefix(prefix)
        except SparcVideoError as exc:
            log.warning("export %s: could not delete %s: %s", self.export_id, prefix, exc)


def _crashed_before(record: ExportRecord) -> bool:
    return record.error is not None and record.error.reason == CRASH_REASON


async def _remove(path: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, path, True)
