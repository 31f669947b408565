"""The one place where errors become gRPC statuses.

Domain errors (`errors.py`) map to status codes with google.rpc details (ErrorInfo always,
BadRequest for field violations) sent as `grpc-status-details-bin` through grpcio-status, so
clients in any language can read the reason and the offending fields.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
import redis.exceptions
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from sparc_video.api.exports.mapping import error_status
from sparc_video.core import errors
from sparc_video.exports.models import ExportError

log = logging.getLogger(__name__)

_CODES: list[tuple[type[errors.SparcVideoError], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.JobCancelled, grpc.StatusCode.CANCELLED),
    (errors.ProcessingTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.MediaError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.MediaLimitExceeded, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.TransientProcessingError, grpc.StatusCode.UNAVAILABLE),
    (errors.ProcessingError, grpc.StatusCode.INTERNAL),
]


def code_for(error: errors.SparcVideoError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def export_error(error: errors.SparcVideoError) -> ExportError:
    """What an export records about the error that ended it."""
    return ExportError(code=code_for(error).value[0], reason=error.reason, message=error.message)


def status_for(error: BaseException) -> status_pb2.Status:
    if isinstance(error, errors.SparcVideoError):
        status = error_status(export_error(error))
        if isinstance(error, errors.InvalidArgument):
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
            detail = any_pb2.Any()
            detail.Pack(bad_request)
            status.details.append(detail)
        if isinstance(error, errors.ResourceExhausted):
            # RetryInfo tells well-behaved clients when to come back; QuotaFailure says which
            # quota ran out and for whom.
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromMilliseconds(max(1, int(error.retry_after_s * 1000)))
            quota = error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=error.subject, description=error.message
                    )
                ]
            )
            for message in (retry, quota):
                detail = any_pb2.Any()
                detail.Pack(message)
                status.details.append(detail)
        return status
    if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return error_status(
            ExportError(
                code=grpc.StatusCode.UNAVAILABLE.value[0],
                reason="REDIS_UNAVAILABLE",
                message="the service's Redis is unreachable; retry later",
            )
        )
    return error_status(
        ExportError(
            code=grpc.StatusCode.INTERNAL.value[0],
            reason="INTERNAL",
            message="internal error; the server logged the details",
        )
    )


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: BaseException) -> None:
    status = status_for(error)
    if status.code == grpc.StatusCode.INTERNAL.value[0]:
        log.exception("unexpected error in RPC", exc_info=error)
    await context.abort_with_status(rpc_status.to_status(status))


Handler = TypeVar("Handler", bound=Callable[..., Any])


def translate_errors(method: Handler) -> Handler:
    """Wrap a servicer method so domain/Redis errors reach the client as proper statuses."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for item in method(self, request, context):
                    yield item
            except (errors.SparcVideoError, redis.exceptions.RedisError) as exc:
                await abort(context, exc)

        return cast(Handler, stream_wrapper)

    @functools.wraps(method)
    async def unary_wrapper(self: Any, request: Any, context: Any) -> Any:
        try:
            return await cast(Callable[..., Awaitable[Any]], method)(self, request, context)
        except (errors.SparcVideoError, redis.exceptions.RedisError) as exc:
            await abort(context, exc)

    return cast(Handler, unary_wrapper)
