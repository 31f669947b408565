"""Domain errors of sparc-video.

Domain code raises these; `sparc_video.api.status` maps them to gRPC status codes with
google.rpc details in one place, and the worker records them on the export. Every error has a
stable `reason` (the google.rpc.ErrorInfo reason, UPPER_SNAKE_CASE) and a message a person can
act on.

The tree:

    SparcVideoError
    ├── InvalidArgument ............... the request is malformed (carries field violations)
    ├── NotFound ...................... something named does not exist
    │   ├── ExportNotFound
    │   └── ObjectNotFound ............ a storage object (source, image) is missing
    ├── AlreadyExists ................. a create names something that exists (camera id, object)
    ├── FailedPrecondition ............ valid, but not in the current state (e.g. already finished)
    │   └── ObjectTooLarge ............ a storage object is past the size a download may have
    ├── Unauthenticated ............... no credentials, or ones that do not check out
    ├── PermissionDenied .............. a known principal whose role does not allow the call
    ├── ResourceExhausted ............. a per-principal quota is used up; retry after a delay
    ├── Unavailable ................... a dependency (Redis, storage) cannot be reached; retry later
    └── ProcessingError ............... raised while a worker runs an export
        ├── PermanentProcessingError .. retrying cannot help: the export FAILS at once
        │   ├── MediaError ............ the source is not a usable video, or an option does not fit
        │   ├── MediaLimitExceeded .... the source is past an operator limit (MAX_FRAME_PIXELS...)
        │   └── ProcessingTimeout ..... the job ran past VIDEO_PROCESSING_TIMEOUT
        ├── TransientProcessingError .. may work on another attempt (storage 5xx, Redis blip)
        └── JobCancelled .............. the export was cancelled while running
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


class SparcVideoError(Exception):
    """Base of every error the service raises on purpose."""

    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidArgument(SparcVideoError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], *, reason: str | None = None) -> None:
        self.violations = violations
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}", reason=reason)


class NotFound(SparcVideoError):
    reason = "NOT_FOUND"


class ExportNotFound(NotFound):
    reason = "EXPORT_NOT_FOUND"


class ObjectNotFound(NotFound):
    reason = "OBJECT_NOT_FOUND"

    def __init__(self, key: str, *, what: str = "object") -> None:
        self.key = key
        super().__init__(f"{what} {key!r} does not exist in storage")


class AlreadyExists(SparcVideoError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(SparcVideoError):
    reason = "FAILED_PRECONDITION"


class Unauthenticated(SparcVideoError):
    """The caller is not known. The message never repeats what the caller sent."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(SparcVideoError):
    reason = "PERMISSION_DENIED"


class ResourceExhausted(SparcVideoError):
    """A quota is used up: `subject` (e.g. `principal:alice`) may retry after `retry_after_s`."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self, message: str, *, subject: str, retry_after_s: float, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.subject = subject
        self.retry_after_s = retry_after_s


class ObjectTooLarge(FailedPrecondition):
    reason = "OBJECT_TOO_LARGE"

    def __init__(self, key: str, size_bytes: int, max_bytes: int) -> None:
        self.key = key
        self.size_bytes = size_bytes
        self.max_bytes = max_bytes
        super().__init__(f"{key!r} is {size_bytes} bytes, more than the {max_bytes} allowed")


class Unavailable(SparcVideoError):
    reason = "UNAVAILABLE"


class ProcessingError(SparcVideoError):
    reason = "PROCESSING_FAILED"


class PermanentProcessingError(ProcessingError):
    reason = "PROCESSING_FAILED"


class MediaError(PermanentProcessingError):
    reason = "INVALID_MEDIA"


class MediaLimitExceeded(PermanentProcessingError):
    """A usable source past a configured limit: FAILED_PRECONDITION, since the request was
    valid and would run under another configuration."""

    reason = "LIMIT_EXCEEDED"


class ProcessingTimeout(PermanentProcessingError):
    reason = "TIMEOUT"


class TransientProcessingError(ProcessingError):
    reason = "TRANSIENT"


class JobCancelled(ProcessingError):
    reason = "CANCELLED"

    def __init__(self, message: str = "the export was cancelled") -> None:
        super().__init__(message)
