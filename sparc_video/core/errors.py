"""Domain errors of sparc-video.

Domain code raises these; the worker records them on the export, and the API's error
interceptor (`sparc_video.api.status`) answers them as gRPC statuses with google.rpc details.
Every error has a `code` (a `Code`: the canonical status codes that gRPC and google.rpc share,
so this module needs no grpc import), a stable `reason` (the google.rpc.ErrorInfo reason,
UPPER_SNAKE_CASE) and a message a person can act on.

The tree (each class names its `code`):

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
from enum import IntEnum


class Code(IntEnum):
    """The canonical status codes (google.rpc.Code; gRPC's status codes have the same numbers).

    An export records the number (`ExportError.code`); the API layer maps each member to its
    `grpc.StatusCode` in one table.
    """

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


@dataclass(frozen=True)
class ErrorRecord:
    """An error as a record keeps it (an export's failure, a camera's last probe): the status
    code's number, the stable reason and the message."""

    code: int
    reason: str
    message: str

    @classmethod
    def from_error(cls, error: SparcVideoError) -> ErrorRecord:
        return cls(code=int(error.code), reason=error.reason, message=error.message)


class SparcVideoError(Exception):
    """Base of every error the service raises on purpose."""

    code: Code = Code.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidArgument(SparcVideoError):
    code = Code.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], *, reason: str | None = None) -> None:
        self.violations = violations
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {summary}", reason=reason)


class NotFound(SparcVideoError):
    code = Code.NOT_FOUND
    reason = "NOT_FOUND"


class ExportNotFound(NotFound):
    reason = "EXPORT_NOT_FOUND"


class ObjectNotFound(NotFound):
    reason = "OBJECT_NOT_FOUND"

    def __init__(self, key: str, *, what: str = "object") -> None:
        self.key = key
        super().__init__(f"{what} {key!r} does not exist in storage")


class AlreadyExists(SparcVideoError):
    code = Code.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(SparcVideoError):
    code = Code.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Unauthenticated(SparcVideoError):
    """The caller is not known. The message never repeats what the caller sent."""

    code = Code.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(SparcVideoError):
    code = Code.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class ResourceExhausted(SparcVideoError):
    """A quota is used up: `subject` (e.g. `principal:alice`) may retry after `retry_after_s`."""

    code = Code.RESOURCE_EXHAUSTED
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
    code = Code.UNAVAILABLE
    reason = "UNAVAILABLE"


class ProcessingError(SparcVideoError):
    reason = "PROCESSING_FAILED"


class PermanentProcessingError(ProcessingError):
    reason = "PROCESSING_FAILED"


class MediaError(PermanentProcessingError):
    code = Code.INVALID_ARGUMENT
    reason = "INVALID_MEDIA"


class MediaLimitExceeded(PermanentProcessingError):
    """A usable source past a configured limit: FAILED_PRECONDITION, since the request was
    valid and would run under another configuration."""

    code = Code.FAILED_PRECONDITION
    reason = "LIMIT_EXCEEDED"


class ProcessingTimeout(PermanentProcessingError):
    code = Code.DEADLINE_EXCEEDED
    reason = "TIMEOUT"


class TransientProcessingError(ProcessingError):
    code = Code.UNAVAILABLE
    reason = "TRANSIENT"


class JobCancelled(ProcessingError):
    code = Code.CANCELLED
    reason = "CANCELLED"

    def __init__(self, message: str = "the export was cancelled") -> None:
        super().__init__(message)
