"""The arq job: run one export from its record to uploaded outputs, publishing progress.

The job's only argument is the export id. Each run is one attempt: it moves the record to
RUNNING with the next attempt number, and every later write is guarded by that attempt and the
RUNNING state, so a cancelled export or a newer attempt is never overwritten. A progress write
that finds the export CANCELLED is the cancellation point: the child is stopped, partial outputs
are deleted and the temp directory removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from arq import Retry

from sparc_video.errors import (
    JobCancelled,
    ObjectNotFound,
    PermanentProcessingError,
    ProcessingError,
    SparcVideoError,
    TransientProcessingError,
    Unavailable,
)
from sparc_video.models import ExportRecord, ExportState, Output, OutputKind, Progress
from sparc_video.records import EventKind, StaleWrite
from sparc_video.rpc_status import export_error
from workers.child import ChildProgress, ProducedFile
from workers.context import WorkerContext
from workers.sandbox import run_in_child

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5
RETRY_BASE_DELAY_S = 5.0
RETRY_MULTIPLIER = 2.0


def output_prefix(export_id: str) -> str:
    """Every object an export writes lives under this prefix, with deterministic names."""
    return f"exports/{export_id}/"


async def run_export(ctx: dict[str, Any], export_id: str) -> str:
    """arq entry point; returns the state the export ended the attempt in."""
    return await ExportJob(WorkerContext.of(ctx), export_id).run()


class ExportJob:
    def __init__(self, worker: WorkerContext, export_id: str) -> None:
        self.worker = worker
        self.export_id = export_id
        self.attempt = 0
        self._last_publish = 0.0
        self._last_operation = -1

    async def run(self) -> str:
        record = await self._start()
        if record is None:
            return "skipped"
        workdir = (
            self.worker.settings.temp_dir
            / f"{self.export_id}.{self.attempt}.{uuid.uuid4().hex[:6]}"
        )
        try:
            workdir.mkdir(parents=True)
            outputs = await self._process(record, workdir)
            await self._finish(outputs)
            return ExportState.SUCCEEDED
        except (JobCancelled, StaleWrite):
            await self._discard_outputs()
            return ExportState.CANCELLED
        except (TransientProcessingError, Unavailable, OSError) as exc:
            return await self._retry_or_fail(exc)
        except ProcessingError as exc:
            await self._fail(exc)
            return ExportState.FAILED
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _start(self) -> ExportRecord | None:
        def to_running(record: ExportRecord) -> str | None:
            if record.state.terminal:
                return None
            record.state = ExportState.RUNNING
            record.attempt += 1
            record.start_time = record.start_time or time.time()
            record.progress = Progress(
                current_operation=record.operations[0].name,
                operation_count=len(record.operations),
            )
            record.error = None
            return EventKind.STATE_CHANGED

        record = await self.worker.store.update(self.export_id, to_running)
        if record.state != ExportState.RUNNING:
            log.info("export %s is %s; nothing to do", self.export_id, record.state)
            return None
        self.attempt = record.attempt
        log.info("export %s: attempt %d started", self.export_id, self.attempt)
        return record

    def _guard(self, record: ExportRecord) -> None:
        if record.state == ExportState.CANCELLED:
            raise JobCancelled()
        if record.state != ExportState.RUNNING or record.attempt != self.attempt:
            raise StaleWrite(
                f"export {self.export_id} moved on (state {record.state}, attempt {record.attempt})"
            )

    async def _process(self, record: ExportRecord, workdir: Path) -> list[Output]:
        settings = self.worker.settings
        source = workdir / ("source" + Path(record.source_key).suffix.lower()[:8])
        try:
            await self.worker.storage.download_file(record.source_key, source)
        except ObjectNotFound as exc:
            raise PermanentProcessingError(
                f"the source video {record.source_key!r} no longer exists in storage",
                reason="SOURCE_NOT_FOUND",
            ) from exc
        produced = await run_in_child(
            source,
            workdir,
            record.operations,
            self._publish_progress,
            timeout_s=settings.processing_timeout_ms / 1000,
        )
        return await self._upload(produced)

    async def _publish_progress(self, progress: ChildProgress) -> None:
        now = time.monotonic()
        changed_operation = progress.operation_index != self._last_operation
        if not changed_operation and now - self._last_publish < PROGRESS_INTERVAL_S:
            return
        self._last_publish = now
        self._last_operation = progress.operation_index

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

    async def _upload(self, produced: list[ProducedFile]) -> list[Output]:
        prefix = output_prefix(self.export_id)
        outputs: list[Output] = []
        thumbnail_number = 0
        for item in produced:
            if item.kind == "video":
                key = f"{prefix}video.mp4"
            else:
                thumbnail_number += 1
                key = f"{prefix}thumbnail-{item.operation_index}-{thumbnail_number:03d}.jpg"
            sha256 = await asyncio.to_thread(_sha256, item.path)
            info = await self.worker.storage.upload_file(item.path, key, item.content_type)
            outputs.append(
                Output(
                    kind=OutputKind.VIDEO if item.kind == "video" else OutputKind.THUMBNAIL,
                    storage_key=key,
                    size_bytes=info.size_bytes,
                    sha256=sha256,
                    content_type=item.content_type,
                    operation_index=item.operation_index,
                    width=item.width,
                    height=item.height,
                    duration_s=item.duration_s,
                    timestamp_s=item.timestamp_s,
                    video_codec=item.video_codec,
                    audio_codec=item.audio_codec,
                )
            )
        return outputs

    async def _finish(self, outputs: list[Output]) -> None:
        def to_succeeded(record: ExportRecord) -> str:
            self._guard(record)
            record.state = ExportState.SUCCEEDED
            record.outputs = outputs
            record.end_time = time.time()
            record.progress.percent = 100.0
            record.progress.eta_s = 0.0
            return EventKind.STATE_CHANGED

        await self.worker.store.update(self.export_id, to_succeeded)
        log.info("export %s succeeded with %d outputs", self.export_id, len(outputs))

    async def _fail(self, error: SparcVideoError) -> None:
        log.warning("export %s failed: %s (%s)", self.export_id, error.message, error.reason)

        def to_failed(record: ExportRecord) -> str:
            self._guard(record)
            record.state = ExportState.FAILED
            record.error = export_error(error)
            record.end_time = time.time()
            record.progress.eta_s = None
            return EventKind.STATE_CHANGED

        with contextlib.suppress(JobCancelled, StaleWrite):
            await self.worker.store.update(self.export_id, to_failed)
        await self._discard_outputs()

    async def _retry_or_fail(self, exc: Exception) -> str:
        error = (
            exc
            if isinstance(exc, SparcVideoError)
            else TransientProcessingError(f"temporary failure: {exc}", reason="TRANSIENT")
        )
        if self.attempt >= self.worker.settings.job_max_tries:
            await self._fail(
                PermanentProcessingError(
                    f"gave up after {self.attempt} attempts: {error.message}", reason=error.reason
                )
            )
            return ExportState.FAILED
        delay = RETRY_BASE_DELAY_S * RETRY_MULTIPLIER ** (self.attempt - 1)

        def to_retrying(record: ExportRecord) -> str:
            self._guard(record)
            record.state = ExportState.RETRYING
            record.error = export_error(error)
            return EventKind.STATE_CHANGED

        try:
            await self.worker.store.update(self.export_id, to_retrying)
        except (JobCancelled, StaleWrite):
            return ExportState.CANCELLED
        log.warning(
            "export %s: attempt %d failed (%s); retry in %.0f s",
            self.export_id,
            self.attempt,
            error.message,
            delay,
        )
        raise Retry(defer=delay)

    async def _discard_outputs(self) -> None:
        try:
            await self.worker.storage.delete_prefix(output_prefix(self.export_id))
        except SparcVideoError as exc:
            log.warning("export %s: could not delete partial outputs: %s", self.export_id, exc)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
