"""What a failed call raises: `ServiceError` and one subclass per status code a caller handles.

The google.rpc.Status a server sends in the `grpc-status-details-bin` trailer is read by
grpcio-status (`rpc_status.aio.from_call` for a call, `rpc_status.from_call` for an
`AioRpcError`); this module only turns its ErrorInfo, BadRequest and RetryInfo details into
attributes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

# The trailer grpcio-status reads the details from (kept importable for callers).
STATUS_DETAILS_KEY = "grpc-status-details-bin"


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
    """The request was refused as it stands; `field_violations` names the fields."""


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
    """A google.rpc.Status (e.g. `Export.error`, or a call's rich status) as the matching
    ServiceError."""
    code = _CODES_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    for detail in status.details:
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
        status.message,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=violations,
        details=list(status.details),
    )


def _plain_status(code: grpc.StatusCode, message: str | None) -> status_pb2.Status:
    return status_pb2.Status(code=code.value[0], message=message or "")


def error_from_rpc(error: grpc.aio.AioRpcError) -> ServiceError:
    """The ServiceError of a failed call's exception (its status and rich details)."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]  # an AioRpcError is one
    except ValueError:
        # The trailer contradicts the call's own status (a proxy rewrote one): trust the call.
        status = None
    return error_from_status(status or _plain_status(error.code(), error.details()))


async def error_from_call(call: grpc.aio.Call) -> ServiceError:
    """The ServiceError of a finished, failed aio call (unary or stream)."""
    try:
        status = await rpc_status.aio.from_call(call)
    except ValueError:
        status = None
    if status is None:
        status = _plain_status(await call.code(), await call.details())
    return error_from_status(status)


_Result = TypeVar("_Result")


async def unary(call: grpc.aio.UnaryUnaryCall[Any, _Result]) -> _Result:
    """Await a unary call; a failure as its ServiceError."""
    try:
        return await call
    except grpc.aio.AioRpcError:
        raise await error_from_call(call) from None


async def streamed(
    start: Callable[[], grpc.aio.UnaryStreamCall[Any, _Result]],
) -> AsyncIterator[_Result]:
    """Iterate the server-streaming call `start` makes; a failure as its ServiceError. The call
    starts at the first iteration (as an async generator method's would) and is cancelled when
    the caller stops iterating, so the server stops sending."""
    call = start()
    try:
        async for message in call:
            yield message
    except grpc.aio.AioRpcError:
        raise await error_from_call(call) from None
    finally:
        call.cancel()
