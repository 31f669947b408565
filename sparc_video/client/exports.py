"""Typed async client of `sparc.video.v1.ExportService`.

- `create_export` always sends a `request_id` (the caller's, or a fresh UUID4), so gRPC's
  retries of it (see `channel.SERVICE_CONFIG`) cannot queue an export twice.
- `watch_export()` reconnects after UNAVAILABLE/ABORTED (a server restart, a dropped
  connection) and resumes with `after_event_id`, skipping what it already yielded.
- `download_outputs()` verifies every file's size and SHA-256 (see `downloads`).
"""

from __future__ import annotations

import asyncio
import datetime
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import grpc
from sparc.video.v1 import export_pb2, export_service_pb2, export_service_pb2_grpc

from sparc_video.client.channel import ChannelClient, all_pages
from sparc_video.client.downloads import DownloadedFile, DownloadProgress, download_outputs
from sparc_video.client.errors import ServiceError, UnavailableError, error_from_call, unary
from sparc_video.client.operations import duration, export_name
from sparc_video.client.operations import priority as _priority

Export = export_pb2.Export
State = export_pb2.Export.State
WatchExportResponse = export_service_pb2.WatchExportResponse

DEFAULT_RECONNECT_TIMEOUT_S = 60.0
TERMINAL_STATES = frozenset({Export.STATE_SUCCEEDED, Export.STATE_FAILED, Export.STATE_CANCELLED})
RESUMABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})


def is_terminal(export: Export) -> bool:
    return export.state in TERMINAL_STATES


def _event_key(event_id: str) -> tuple[int, int] | None:
    ms, dash, seq = event_id.partition("-")
    if not dash or not ms.isdigit() or not seq.isdigit():
        return None
    return int(ms), int(seq)


class AsyncExportClient(ChannelClient):
    """Typed async client of ExportService. Use as `async with`, or call `close()`."""

    def _open_stubs(self, channel: grpc.aio.Channel) -> None:
        self._stub = export_service_pb2_grpc.ExportServiceStub(channel)

    async def create_export(
        self,
        source_key: str | export_pb2.ExportSource,
        operations: Sequence[export_pb2.Operation],
        *,
        request_id: str | None = None,
        case_id: str = "",
        purpose: str = "",
        priority: str | Export.Priority.ValueType | None = None,
        timeout: float | None = None,
    ) -> Export:
        """Queue an export of the stored object `source_key`, or of any `ExportSource` (see
        `recording_source`, `camera_range`). Returns it QUEUED.

        With a `request_id` used before, returns the export that request created. Without
        one, a UUID4 is sent so that gRPC's retries cannot queue the export twice.
        `case_id` and `purpose` are recorded on the export and in its signed manifest.
        `priority` is `"interactive"` (the server's default) or `"batch"`."""
        if request_id == "":
            raise ValueError("request_id must not be empty; pass None for a generated one")
        export = Export(
            source=(
                source_key
                if isinstance(source_key, export_pb2.ExportSource)
                else export_pb2.ExportSource(object_key=source_key)
            ),
            operations=operations,
            case_id=case_id,
            purpose=purpose,
        )
        if priority is not None:
            export.priority = _priority(priority)
        request = export_service_pb2.CreateExportRequest(
            export=export, request_id=request_id or str(uuid.uuid4())
        )
        return await unary(self._stub.CreateExport(request, timeout=self._deadline(timeout)))

    async def get_export(self, name: str, *, timeout: float | None = None) -> Export:
        request = export_service_pb2.GetExportRequest(name=export_name(name))
        return await unary(self._stub.GetExport(request, timeout=self._deadline(timeout)))

    async def list_exports(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter: str = "",
        state: str = "",
        timeout: float | None = None,
    ) -> export_service_pb2.ListExportsResponse:
        """One page, newest first. `state` (`FAILED`, `STATE_FAILED`) is a shorthand for
        `filter="state = FAILED"`."""
        if state:
            filter = f"state = {state}"
        request = export_service_pb2.ListExportsRequest(
            page_size=page_size, page_token=page_token, filter=filter
        )
        return await unary(self._stub.ListExports(request, timeout=self._deadline(timeout)))

    def iter_exports(
        self, *, filter: str = "", state: str = "", page_size: int = 0
    ) -> AsyncIterator[Export]:
        """Every export (matching the filter), newest first, following page tokens."""
        return all_pages(
            lambda token: self.list_exports(
                page_size=page_size, page_token=token, filter=filter, state=state
            ),
            lambda page: page.exports,
        )

    async def cancel_export(self, name: str, *, timeout: float | None = None) -> Export:
        """Stop an unfinished export; FailedPreconditionError once it has ended."""
        request = export_service_pb2.CancelExportRequest(name=export_name(name))
        return await unary(self._stub.CancelExport(request, timeout=self._deadline(timeout)))

    async def get_export_download_url(
        self,
        name: str,
        *,
        ttl: float | datetime.timedelta | None = None,
        timeout: float | None = None,
    ) -> export_service_pb2.GetExportDownloadUrlResponse:
        """One expiring URL per output of a SUCCEEDED export (`ttl`: the server's default)."""
        request = export_service_pb2.GetExportDownloadUrlRequest(name=export_name(name))
        if ttl is not None:
            request.ttl.CopyFrom(duration(ttl))
        return await unary(
            self._stub.GetExportDownloadUrl(request, timeout=self._deadline(timeout))
        )

    async def get_queue_stats(
        self, *, timeout: float | None = None
    ) -> export_service_pb2.QueueStats:
        request = export_service_pb2.GetQueueStatsRequest()
        return await unary(self._stub.GetQueueStats(request, timeout=self._deadline(timeout)))

    async def get_manifest_signing_key(
        self, *, timeout: float | None = None
    ) -> export_service_pb2.ManifestSigningKey:
        """The public key that verifies export manifests (PEM, key id, algorithm)."""
        request = export_service_pb2.GetManifestSigningKeyRequest()
        return await unary(
            self._stub.GetManifestSigningKey(request, timeout=self._deadline(timeout))
        )

    async def watch_export(
        self,
        name: str,
        *,
        after_event_id: str = "",
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT_S,
        on_reconnect: Callable[[ServiceError, float], None] | None = None,
    ) -> AsyncIterator[WatchExportResponse]:
        """The export's current state, then every change, ending after a terminal state.

        When the stream breaks with UNAVAILABLE or ABORTED after delivering something, the
        watch is re-opened with `after_event_id` set to the last event seen, with backoff, for
        up to `reconnect_timeout` seconds of consecutive failures; `on_reconnect(error, delay)`
        is told before each wait. Messages at or before the last event seen are skipped, so
        nothing is yielded twice; events the server no longer retains are replaced by a fresh
        snapshot. A failure before anything arrived is raised at once: there is nothing to
        resume, and an unreachable target is usually a wrong one."""
        name = export_name(name)
        last_event = after_event_id
        received = False
        failing_since: float | None = None
        attempt = 0
        while True:
            call = self._stub.WatchExport(
                export_service_pb2.WatchExportRequest(name=name, after_event_id=last_event)
            )
            try:
                async for message in call:
                    received = True
                    failing_since = None
                    attempt = 0
                    seen, new = _event_key(last_event), _event_key(message.event_id)
                    if seen is not None and new is not None and new <= seen:
                        continue
                    if message.event_id:
                        last_event = message.event_id
                    yield message
                    if is_terminal(message.export):
                        return
                # A stream that ends before a terminal state was cut short (a proxy closing
                # it, a server shutting down): resume like after an error.
                error: ServiceError = UnavailableError(
                    grpc.StatusCode.UNAVAILABLE, "the watch ended before the export did"
                )
            except grpc.aio.AioRpcError:
                error = await error_from_call(call)
                if error.code not in RESUMABLE_CODES or not received:
                    raise error from None
            finally:
                call.cancel()
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > reconnect_timeout:
                raise error
            delay = min(3.0, 0.2 * 2**attempt) * random.uniform(0.8, 1.2)
            attempt += 1
            if on_reconnect is not None:
                on_reconnect(error, delay)
            await asyncio.sleep(delay)

    async def wait_export(
        self,
        name: str,
        *,
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT_S,
    ) -> Export:
        """Watch until the export ends; its final state (check `.state`, `.error`)."""
        final: Export | None = None
        async for message in self.watch_export(name, reconnect_timeout=reconnect_timeout):
            final = message.export
        assert final is not None, "a watch always yields at least its snapshot"
        return final

    async def download_outputs(
        self,
        name: str,
        directory: Path,
        *,
        progress: DownloadProgress | None = None,
        chunk_size: int = 256 * 1024,
    ) -> list[DownloadedFile]:
        """Fetch every output of a SUCCEEDED export into `directory`, verifying size and
        SHA-256 against the export's record, then its signed manifest and the manifest's
        signature (`manifest.json`, `manifest.json.sig` next to the outputs), so the directory
        is a bundle `sparc-video verify` can check.

        Each output goes to its storage key below `exports/{id}/` (so outputs of different
        operations cannot collide). Files are written as `NAME.part` and renamed only once
        verified; a file already there with the right bytes is not fetched again. Raises
        ChecksumMismatchError (the partial file removed) when the bytes differ, DownloadError
        on HTTP failures."""
        return await download_outputs(
            self, name, directory, progress=progress, chunk_size=chunk_size
        )
