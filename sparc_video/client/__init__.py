"""Python client of `sparc.video.v1.ExportService`.

```python
async with AsyncExportClient("localhost:50051") as client:
    export = await client.create_export("samples/clip.mp4", [transcode(resolution="1280x720")])
    async for event in client.watch_export(export.name):
        print(event.export.state, event.export.progress.percent)
    files = await client.download_outputs(export.name, Path("out"))
```

- Every unary call has a deadline (`timeout`, 10 s unless set).
- Reads (`GetExport`, `ListExports`, `GetQueueStats`, `GetExportDownloadUrl`) and `CreateExport`
  are retried by gRPC itself on UNAVAILABLE, through the channel's service config
  (`SERVICE_CONFIG`). A retried create is safe only with a `request_id` (the server returns the
  export the first attempt made instead of queueing a second one), so this client always sends
  one: the caller's, or a fresh UUID4. `CancelExport` is not retried: when the first attempt
  did cancel and only its answer was lost, a retry would report FAILED_PRECONDITION for a
  cancel that worked. Retries are channel-wide settings, so a create without request_id could
  not be excluded per call; sending none is therefore not offered.
- `watch_export()` reconnects after UNAVAILABLE/ABORTED (a server restart, a dropped
  connection) and resumes with `after_event_id`, skipping what it already yielded.
- Errors are raised as `ServiceError` subclasses carrying the status code, message and the
  decoded google.rpc details (ErrorInfo reason/domain/metadata, BadRequest field violations).
- TLS (optionally mutual) and a bearer token (sent as `authorization: Bearer …` through call
  credentials, which gRPC only allows over TLS).

`ExportClient` is the same API for synchronous code.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from sparc.video.v1 import export_pb2, export_service_pb2, export_service_pb2_grpc

from sparc_video import __version__
from sparc_video.core.file_hashes import file_sha256

if TYPE_CHECKING:
    import aiohttp

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RECONNECT_TIMEOUT_S = 60.0
SERVICE_NAME = "sparc.video.v1.ExportService"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

Export = export_pb2.Export
State = export_pb2.Export.State
WatchExportResponse = export_service_pb2.WatchExportResponse

TERMINAL_STATES = frozenset({Export.STATE_SUCCEEDED, Export.STATE_FAILED, Export.STATE_CANCELLED})
RESUMABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})

_RETRY_POLICY = {
    # 5 attempts, 0.1 s → 1.6 s apart: ~3 s, rides out a pod restart behind a Service without
    # exceeding the default 10 s deadline (the deadline covers all attempts).
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
RETRIED_METHODS = (
    "GetExport",
    "ListExports",
    "GetQueueStats",
    "GetExportDownloadUrl",
    "CreateExport",
    "GetManifestSigningKey",
)
CAMERA_SERVICE_NAME = "sparc.video.v1.CameraService"
# Reads only: a retried CreateCamera would answer ALREADY_EXISTS for a camera the first attempt
# made, a retried delete NOT_FOUND for one it deleted.
CAMERA_RETRIED_METHODS = ("GetCamera", "ListCameras", "GetRecording", "ListRecordings")
SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE_NAME, "method": method} for method in RETRIED_METHODS]
            + [
                {"service": CAMERA_SERVICE_NAME, "method": method}
                for method in CAMERA_RETRIED_METHODS
            ],
            "retryPolicy": _RETRY_POLICY,
        }
    ],
    # Stops retrying when most calls fail (a real outage), so retries do not multiply load.
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
}


# ---------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class FieldViolation:
    """One offending field of a rejected request (google.rpc.BadRequest)."""

    field: str
    description: str


class ServiceError(Exception):
    """A call failed: the gRPC status and its google.rpc details, decoded."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
        details: Sequence[any_pb2.Any] = (),
    ) -> None:
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.field_violations = list(field_violations)
        self.details = list(details)
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.code.name}"
        if self.reason and self.reason != self.code.name:
            text += f" ({self.reason})"
        text += f": {self.message}"
        for violation in self.field_violations:
            if violation.field not in self.message:
                text += f"\n  {violation.field}: {violation.description}"
        return text


class InvalidArgumentError(ServiceError):
    pass


class NotFoundError(ServiceError):
    pass


class FailedPreconditionError(ServiceError):
    pass


class UnavailableError(ServiceError):
    """The server cannot be reached or asks to retry later (also after the retries ran out)."""


class DeadlineExceededError(ServiceError):
    pass


class UnauthenticatedError(ServiceError):
    pass


class PermissionDeniedError(ServiceError):
    pass


class ResourceExhaustedError(ServiceError):
    """A quota of the caller (its request rate, its unfinished exports) is used up."""

    @property
    def retry_after_s(self) -> float | None:
        """How long the server asks to wait before trying again (google.rpc.RetryInfo)."""
        for detail in self.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return float(info.retry_delay.ToTimedelta().total_seconds())
        return None


class InternalError(ServiceError):
    pass


_ERROR_TYPES: dict[grpc.StatusCode, type[ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.INTERNAL: InternalError,
}
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def error_from_status(status: status_pb2.Status) -> ServiceError:
    """A google.rpc.Status (e.g. `Export.error`) as the matching ServiceError."""
    code = _CODES_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    return _error(code, status.message, list(status.details))


def error_from_rpc(error: grpc.aio.AioRpcError) -> ServiceError:
    details: list[any_pb2.Any] = []
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            details = list(status_pb2.Status.FromString(value).details)
    return _error(error.code(), error.details() or "", details)


def _error(code: grpc.StatusCode, message: str, details: list[any_pb2.Any]) -> ServiceError:
    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    for detail in details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [
                FieldViolation(v.field, v.description) for v in bad_request.field_violations
            ]
    return _ERROR_TYPES.get(code, ServiceError)(
        code,
        message,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=violations,
        details=details,
    )


class DownloadError(Exception):
    """An output could not be fetched from its URL."""


class ChecksumMismatchError(DownloadError):
    """The bytes fetched are not the bytes the export recorded; nothing was kept."""

    def __init__(self, storage_key: str, expected: str, actual: str, size: int) -> None:
        self.storage_key = storage_key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{storage_key}: sha256 {actual} ({size} bytes) does not match the export's "
            f"{expected}; the download was discarded"
        )


# ---------------------------------------------------------------------------------------------
# Request helpers


def export_name(name_or_id: str) -> str:
    """`exports/{id}` from either that name or the bare id."""
    return name_or_id if "/" in name_or_id else f"exports/{name_or_id}"


def transcode(
    *, codec: str = "", bitrate: str = "", resolution: str = "", preset: str = ""
) -> export_pb2.Operation:
    return export_pb2.Operation(
        transcode=export_pb2.TranscodeOptions(
            codec=codec, bitrate=bitrate, resolution=resolution, preset=preset
        )
    )


def thumbnail(*timestamps: str, size: str = "") -> export_pb2.Operation:
    return export_pb2.Operation(
        thumbnail=export_pb2.ThumbnailOptions(timestamps=list(timestamps), size=size)
    )


def is_terminal(export: Export) -> bool:
    return export.state in TERMINAL_STATES


def _duration(value: float | datetime.timedelta) -> duration_pb2.Duration:
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else value
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


def _event_key(event_id: str) -> tuple[int, int] | None:
    ms, dash, seq = event_id.partition("-")
    if not dash or not ms.isdigit() or not seq.isdigit():
        return None
    return int(ms), int(seq)


# ---------------------------------------------------------------------------------------------
# Downloads


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    storage_key: str
    size_bytes: int
    sha256: str
    # The file was already there with the right bytes, so nothing was fetched.
    already_present: bool = False


class DownloadProgress(Protocol):
    """Told about each output while `download_outputs` fetches it."""

    def started(self, output: export_pb2.Output, path: Path) -> None: ...

    def advanced(self, done_bytes: int) -> None: ...

    def finished(self, result: DownloadedFile) -> None: ...


def _local_path(directory: Path, export: str, storage_key: str) -> Path:
    """Where an output goes: its key below the export's prefix (`video.mp4`, `2/video.mp4`)."""
    relative = storage_key.removeprefix(f"{export}/")
    parts = relative.split("/")
    # The key comes from the server; never let it point outside the target directory.
    for part in parts:
        if part in ("", ".", "..") or "\\" in part or "\0" in part:
            raise DownloadError(f"refusing to write output {storage_key!r}: unsafe path")
    return directory.joinpath(*parts)


# ---------------------------------------------------------------------------------------------
# The async client


def open_channel(
    target: str,
    *,
    tls: bool = False,
    ca_cert: bytes | None = None,
    client_cert: bytes | None = None,
    client_key: bytes | None = None,
    token: str | None = None,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A channel with this client's service config (retries) and reconnect settings."""
    channel_options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        ("grpc.primary_user_agent", f"sparc-video-client/{__version__}"),
        # gRPC's default reconnect backoff grows to 120 s; a client waiting for a restarting
        # server should notice it is back within a couple of seconds.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if server_name:
        channel_options.append(("grpc.ssl_target_name_override", server_name))
    channel_options += options
    if token and not tls:
        raise ValueError("a bearer token is only sent over TLS; enable TLS")
    if not tls:
        return grpc.aio.insecure_channel(target, options=channel_options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_cert, private_key=client_key, certificate_chain=client_cert
    )
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return grpc.aio.secure_channel(target, credentials, options=channel_options)


class ChannelClient:
    """What every client of this service shares: the channel (TLS, token, service config),
    the default deadline, and `async with`. Subclasses add their stubs on `self._channel`."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        tls: bool = False,
        ca_cert: bytes | None = None,
        client_cert: bytes | None = None,
        client_key: bytes | None = None,
        token: str | None = None,
        server_name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """`target` is `host:port` (any gRPC target). `ca_cert`, `client_cert`, `client_key`
        are PEM bytes; any of them, or `token`, implies TLS. `server_name` overrides the name
        the server's certificate is checked against. `timeout` is the default deadline of
        unary calls in seconds."""
        tls = tls or bool(ca_cert or client_cert or client_key)
        self.target = target
        self.timeout = timeout
        self._channel = open_channel(
            target,
            tls=tls,
            ca_cert=ca_cert,
            client_cert=client_cert,
            client_key=client_key,
            token=token,
            server_name=server_name,
            options=channel_options,
        )
        self._open_stubs(self._channel)

    def _open_stubs(self, channel: grpc.aio.Channel) -> None:
        """Where a subclass makes the stubs of its services on the shared channel."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def _deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout


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
        timeout: float | None = None,
    ) -> Export:
        """Queue an export of the stored object `source_key`, or of any `ExportSource` (a
        recording, a camera time range). Returns it QUEUED.

        With a `request_id` used before, returns the export that request created. Without
        one, a UUID4 is sent so that gRPC's retries cannot queue the export twice.
        `case_id` and `purpose` are recorded on the export and in its signed manifest."""
        if request_id == "":
            raise ValueError("request_id must not be empty; pass None for a generated one")
        request = export_service_pb2.CreateExportRequest(
            export=Export(
                source=(
                    source_key
                    if isinstance(source_key, export_pb2.ExportSource)
                    else export_pb2.ExportSource(object_key=source_key)
                ),
                operations=operations,
                case_id=case_id,
                purpose=purpose,
            ),
            request_id=request_id or str(uuid.uuid4()),
        )
        return await _call(self._stub.CreateExport(request, timeout=self._deadline(timeout)))

    async def get_export(self, name: str, *, timeout: float | None = None) -> Export:
        request = export_service_pb2.GetExportRequest(name=export_name(name))
        return await _call(self._stub.GetExport(request, timeout=self._deadline(timeout)))

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
        return await _call(self._stub.ListExports(request, timeout=self._deadline(timeout)))

    async def iter_exports(
        self, *, filter: str = "", state: str = "", page_size: int = 0
    ) -> AsyncIterator[Export]:
        """Every export (matching the filter), newest first, following page tokens."""
        token = ""
        while True:
            page = await self.list_exports(
                page_size=page_size, page_token=token, filter=filter, state=state
            )
            for export in page.exports:
                yield export
            token = page.next_page_token
            if not token:
                return

    async def cancel_export(self, name: str, *, timeout: float | None = None) -> Export:
        """Stop an unfinished export; FailedPreconditionError once it has ended."""
        request = export_service_pb2.CancelExportRequest(name=export_name(name))
        return await _call(self._stub.CancelExport(request, timeout=self._deadline(timeout)))

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
            request.ttl.CopyFrom(_duration(ttl))
        return await _call(
            self._stub.GetExportDownloadUrl(request, timeout=self._deadline(timeout))
        )

    async def get_queue_stats(
        self, *, timeout: float | None = None
    ) -> export_service_pb2.QueueStats:
        request = export_service_pb2.GetQueueStatsRequest()
        return await _call(self._stub.GetQueueStats(request, timeout=self._deadline(timeout)))

    async def get_manifest_signing_key(
        self, *, timeout: float | None = None
    ) -> export_service_pb2.ManifestSigningKey:
        """The public key that verifies export manifests (PEM, key id, algorithm)."""
        request = export_service_pb2.GetManifestSigningKeyRequest()
        return await _call(
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
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from_rpc(rpc_error)
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
        verified; a file already there
        with the right bytes is not fetched again. Raises ChecksumMismatchError (the partial
        file removed) when the bytes differ, DownloadError on HTTP failures."""
        # Imported here: only downloads need it, and it doubles the import time of this module.
        import aiohttp

        urls = await self.get_export_download_url(name)
        export = await self.get_export(name)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        results: list[DownloadedFile] = []
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for link in urls.urls:
                output = export.outputs[link.output_index]
                path = _local_path(directory, export.name, link.storage_key)
                if progress is not None:
                    progress.started(output, path)
                expected = _Expected(output.storage_key, output.sha256, output.size_bytes)
                result = await asyncio.to_thread(_already_present, path, expected)
                if result is None:
                    result = await _fetch(session, link.url, path, expected, progress, chunk_size)
                if progress is not None:
                    progress.finished(result)
                results.append(result)
            if urls.HasField("manifest_url") and urls.HasField("manifest_signature_url"):
                for link, sha256 in (
                    (urls.manifest_url, export.manifest.sha256),
                    (urls.manifest_signature_url, export.manifest.signature_sha256),
                ):
                    path = _local_path(directory, export.name, link.storage_key)
                    expected = _Expected(link.storage_key, sha256 or None, None)
                    result = await asyncio.to_thread(_already_present, path, expected)
                    if result is None:
                        result = await _fetch(session, link.url, path, expected, None, chunk_size)
                    results.append(result)
        return results


@dataclass(frozen=True)
class _Expected:
    """What a download must turn out to be; None: not known in advance."""

    storage_key: str
    sha256: str | None
    size_bytes: int | None


def _already_present(path: Path, expected: _Expected) -> DownloadedFile | None:
    if not path.is_file() or expected.sha256 is None:
        return None
    if expected.size_bytes is not None and path.stat().st_size != expected.size_bytes:
        return None
    if file_sha256(path) != expected.sha256:
        return None
    return DownloadedFile(path, expected.storage_key, path.stat().st_size, expected.sha256, True)


async def _fetch(
    session: aiohttp.ClientSession,
    url: str,
    path: Path,
    output: _Expected,
    progress: DownloadProgress | None,
    chunk_size: int,
) -> DownloadedFile:
    import aiohttp

    partial = path.with_name(path.name + ".part")
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    done = 0
    try:
        async with session.get(url) as response:
            if response.status != 200:
                body = (await response.text())[:200]
                raise DownloadError(
                    f"{output.storage_key}: HTTP {response.status} from the download URL: {body}"
                )
            file = await asyncio.to_thread(partial.open, "wb")
            try:
                async for chunk in response.content.iter_chunked(chunk_size):
                    await asyncio.to_thread(file.write, chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress.advanced(done)
            finally:
                file.close()
    except aiohttp.ClientError as exc:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{output.storage_key}: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    wrong_hash = output.sha256 is not None and actual != output.sha256
    if wrong_hash or (output.size_bytes is not None and done != output.size_bytes):
        partial.unlink(missing_ok=True)
        raise ChecksumMismatchError(output.storage_key, output.sha256 or "", actual, done)
    await asyncio.to_thread(partial.replace, path)
    return DownloadedFile(path, output.storage_key, done, actual)


_Result = TypeVar("_Result")


async def _call(call: grpc.aio.UnaryUnaryCall[Any, _Result]) -> _Result:
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc) from None


# ---------------------------------------------------------------------------------------------
# The sync wrapper


class ExportClient:
    """`AsyncExportClient` for synchronous code: each method runs the async one on a private
    event loop. Not for use from inside a running event loop (use the async client there)."""

    def __init__(self, target: str = DEFAULT_TARGET, **options: Any) -> None:
        """Takes the same arguments as AsyncExportClient."""
        self._runner = asyncio.Runner()
        self._client = self._runner.run(_open_async(target, options))
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and the loop; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def _run(self, coroutine: Coroutine[Any, Any, _Result]) -> _Result:
        return self._runner.run(coroutine)

    @property
    def async_client(self) -> AsyncExportClient:
        return self._client

    def create_export(
        self,
        source_key: str | export_pb2.ExportSource,
        operations: Sequence[export_pb2.Operation],
        *,
        request_id: str | None = None,
        case_id: str = "",
        purpose: str = "",
        timeout: float | None = None,
    ) -> Export:
        return self._run(
            self._client.create_export(
                source_key,
                operations,
                request_id=request_id,
                case_id=case_id,
                purpose=purpose,
                timeout=timeout,
            )
        )

    def get_export(self, name: str, *, timeout: float | None = None) -> Export:
        return self._run(self._client.get_export(name, timeout=timeout))

    def list_exports(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter: str = "",
        state: str = "",
        timeout: float | None = None,
    ) -> export_service_pb2.ListExportsResponse:
        return self._run(
            self._client.list_exports(
                page_size=page_size,
                page_token=page_token,
                filter=filter,
                state=state,
                timeout=timeout,
            )
        )

    def iter_exports(
        self, *, filter: str = "", state: str = "", page_size: int = 0
    ) -> Iterator[Export]:
        return self._iterate(
            self._client.iter_exports(filter=filter, state=state, page_size=page_size)
        )

    def cancel_export(self, name: str, *, timeout: float | None = None) -> Export:
        return self._run(self._client.cancel_export(name, timeout=timeout))

    def get_export_download_url(
        self,
        name: str,
        *,
        ttl: float | datetime.timedelta | None = None,
        timeout: float | None = None,
    ) -> export_service_pb2.GetExportDownloadUrlResponse:
        return self._run(self._client.get_export_download_url(name, ttl=ttl, timeout=timeout))

    def get_queue_stats(self, *, timeout: float | None = None) -> export_service_pb2.QueueStats:
        return self._run(self._client.get_queue_stats(timeout=timeout))

    def get_manifest_signing_key(
        self, *, timeout: float | None = None
    ) -> export_service_pb2.ManifestSigningKey:
        return self._run(self._client.get_manifest_signing_key(timeout=timeout))

    def watch_export(
        self,
        name: str,
        *,
        after_event_id: str = "",
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT_S,
        on_reconnect: Callable[[ServiceError, float], None] | None = None,
    ) -> Iterator[WatchExportResponse]:
        return self._iterate(
            self._client.watch_export(
                name,
                after_event_id=after_event_id,
                reconnect_timeout=reconnect_timeout,
                on_reconnect=on_reconnect,
            )
        )

    def wait_export(
        self, name: str, *, reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT_S
    ) -> Export:
        return self._run(self._client.wait_export(name, reconnect_timeout=reconnect_timeout))

    def download_outputs(
        self, name: str, directory: Path, *, progress: DownloadProgress | None = None
    ) -> list[DownloadedFile]:
        return self._run(self._client.download_outputs(name, directory, progress=progress))

    def _iterate(self, iterator: AsyncIterator[_Result]) -> Iterator[_Result]:
        try:
            while True:
                try:
                    yield self._run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                self._run(aclose())


async def _open_async(target: str, options: dict[str, Any]) -> AsyncExportClient:
    # grpc.aio binds a channel to the loop it is created on: create it on the runner's loop.
    return AsyncExportClient(target, **options)


async def _next(iterator: AsyncIterator[_Result]) -> _Result:
    return await anext(iterator)
