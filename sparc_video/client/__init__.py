"""Python client of `sparc.video.v1.ExportService` and `CameraService`.

```python
async with AsyncExportClient("localhost:50051") as client:
    export = await client.create_export("samples/clip.mp4", [transcode(resolution="1280x720")])
    async for event in client.watch_export(export.name):
        print(event.export.state, event.export.progress.percent)
    files = await client.download_outputs(export.name, Path("out"))
```

The package, one concern per module (everything is importable from here):
- `channel`: target, TLS, bearer token, the service config that retries reads and creates.
- `errors`: `ServiceError` and its subclasses, from the google.rpc.Status grpcio-status reads.
- `operations`: builders of every export operation, source and priority.
- `exports`: `AsyncExportClient` (create, get, list, cancel, watch with resume, download).
- `downloads`: fetching outputs with size and SHA-256 verification.
- `cameras`: `AsyncCameraClient` (cameras and recordings).
- `uploads`: `AsyncUploadClient` (`upload_file`: a local file into storage as an export
  source, in parts, resumable, with no storage credentials).
- `audit`: `AsyncAuditClient` (the audit trail of a case or a resource; admins).
- `sync`: `ExportClient` and `CameraClient`, the same APIs for synchronous code.
"""

from sparc_video.client.audit import AsyncAuditClient, AuditEntry
from sparc_video.client.cameras import AsyncCameraClient, Camera, CameraCredentials, Recording
from sparc_video.client.channel import (
    CAMERA_RETRIED_METHODS,
    CAMERA_SERVICE_NAME,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT_S,
    RETRIED_METHODS,
    SERVICE_CONFIG,
    SERVICE_NAME,
    ChannelClient,
    ChannelOptions,
    open_channel,
)
from sparc_video.client.downloads import (
    ChecksumMismatchError,
    DownloadedFile,
    DownloadError,
    DownloadProgress,
)
from sparc_video.client.errors import (
    STATUS_DETAILS_KEY,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServiceError,
    UnauthenticatedError,
    UnavailableError,
    error_from_call,
    error_from_rpc,
    error_from_status,
)
from sparc_video.client.exports import (
    DEFAULT_RECONNECT_TIMEOUT_S,
    RESUMABLE_CODES,
    TERMINAL_STATES,
    AsyncExportClient,
    Export,
    State,
    WatchExportResponse,
    is_terminal,
)
from sparc_video.client.operations import (
    Operation,
    Priority,
    Region,
    camera_range,
    clock,
    compress,
    convert,
    export_name,
    object_source,
    priority,
    recording_source,
    redact,
    region,
    sprite_sheet,
    thumbnail,
    transcode,
    trim,
    watermark,
)
from sparc_video.client.sync import CameraClient, ExportClient, SyncClient
from sparc_video.client.uploads import (
    AsyncUploadClient,
    PartUploadError,
    Upload,
    UploadProgress,
)

__all__ = [
    "CAMERA_RETRIED_METHODS",
    "CAMERA_SERVICE_NAME",
    "DEFAULT_RECONNECT_TIMEOUT_S",
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT_S",
    "RESUMABLE_CODES",
    "RETRIED_METHODS",
    "SERVICE_CONFIG",
    "SERVICE_NAME",
    "STATUS_DETAILS_KEY",
    "TERMINAL_STATES",
    "AsyncAuditClient",
    "AsyncCameraClient",
    "AsyncExportClient",
    "AsyncUploadClient",
    "AuditEntry",
    "Camera",
    "CameraClient",
    "CameraCredentials",
    "ChannelClient",
    "ChannelOptions",
    "ChecksumMismatchError",
    "DeadlineExceededError",
    "DownloadError",
    "DownloadProgress",
    "DownloadedFile",
    "Export",
    "ExportClient",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "Operation",
    "PartUploadError",
    "PermissionDeniedError",
    "Priority",
    "Recording",
    "Region",
    "ResourceExhaustedError",
    "ServiceError",
    "State",
    "SyncClient",
    "UnauthenticatedError",
    "UnavailableError",
    "Upload",
    "UploadProgress",
    "WatchExportResponse",
    "camera_range",
    "clock",
    "compress",
    "convert",
    "error_from_call",
    "error_from_rpc",
    "error_from_status",
    "export_name",
    "is_terminal",
    "object_source",
    "open_channel",
    "priority",
    "recording_source",
    "redact",
    "region",
    "sprite_sheet",
    "thumbnail",
    "transcode",
    "trim",
    "watermark",
]
