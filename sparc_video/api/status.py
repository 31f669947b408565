"""The one place where errors become gRPC statuses: `ErrorInterceptor`.

Handlers (and the auth interceptor) raise; this server interceptor answers every RPC kind,
unary and streaming, from one table. Domain errors (`core/errors.py`) carry a `Code`; `_GRPC_CODES`
maps it to its `grpc.StatusCode`, with google.rpc details (ErrorInfo always, BadRequest for field
violations, RetryInfo and QuotaFailure for quotas) sent as `grpc-status-details-bin` through
grpcio-status, so clients in any language can read the reason and the offending fields. An
unreachable Redis is UNAVAILABLE. Anything else is a bug: INTERNAL (never UNKNOWN) with an error
id that is logged beside the traceback, so an operator can find what a caller reports.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import redis.exceptions
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry import trace

from sparc_video.api.interceptors import wrap_handler
from sparc_video.core import errors
from sparc_video.core.errors import Code
from sparc_video.exports.models import ExportError
from sparc_video.observability.tracing import record_error

log = logging.getLogger(__name__)

ERROR_DOMAIN = "video.sparc"

_GRPC_CODES: dict[Code, grpc.StatusCode] = {Code(code.value[0]): code for code in grpc.StatusCode}

Context = grpc.aio.ServicerContext[Any, Any]
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def grpc_code(code: Code | int) -> grpc.StatusCode:
    """The `grpc.StatusCode` of a domain `Code` (or of the number an export recorded)."""
    return _GRPC_CODES.get(Code(code), grpc.StatusCode.INTERNAL)


def error_status(error: ExportError, metadata: dict[str, str] | None = None) -> status_pb2.Status:
    """google.rpc.Status with an ErrorInfo detail carrying the stable reason."""
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    )
    return status_pb2.Status(code=error.code, message=error.message, details=[info])


def _pack(status: status_pb2.Status, *messages: Any) -> None:
    for message in messages:
        detail = any_pb2.Any()
        detail.Pack(message)
        status.details.append(detail)


def status_for(error: BaseException, error_id: str = "") -> status_pb2.Status:
    """The status a caller gets for `error`; `error_id` names an unexpected one in the logs."""
    if isinstance(error, errors.SparcVideoError):
        metadata = {"error_id": error_id} if error_id else None
        status = error_status(ExportError.from_error(error), metadata)
        if isinstance(error, errors.InvalidArgument):
            _pack(
                status,
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                ),
            )
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
            _pack(status, retry, quota)
        return status
    if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return error_status(
            ExportError(
                code=Code.UNAVAILABLE,
                reason="REDIS_UNAVAILABLE",
                message="the service's Redis is unreachable; retry later",
            )
        )
    return error_status(
        ExportError(
            code=Code.INTERNAL,
            reason="INTERNAL",
            message=f"internal error (error id {error_id}); the server logged the details",
        ),
        {"error_id": error_id},
    )


async def abort(context: Context, error: Exception, method: str = "") -> None:
    """End the call with the status for `error` (raises grpc's AbortError, as `abort` does)."""
    error_id = ""
    expected = isinstance(error, errors.SparcVideoError) and error.code != Code.INTERNAL
    if not expected and not _is_redis_outage(error):
        error_id = uuid.uuid4().hex[:16]
        log.error("unexpected error in %s (error id %s)", method or "RPC", error_id, exc_info=error)
    status = status_for(error, error_id)
    code = grpc_code(status.code)
    span = trace.get_current_span()
    span.set_attribute("rpc.grpc.status_code", status.code)
    if code != grpc.StatusCode.CANCELLED:
        record_error(span, error, reason=code.name)
    if error_id:
        span.set_attribute("sparc.error_id", error_id)
    await context.abort_with_status(rpc_status.to_status(status))


def _is_redis_outage(error: Exception) -> bool:
    return isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Answers whatever a handler raises with its status; one interceptor for every RPC.

    Placed inside the tracing and metrics interceptors (they see the final code) and outside
    authentication (whose refusals are domain errors too).
    """

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return wrap_handler(handler, lambda behavior, _: _translating(behavior, method))


def _translating(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def translated_gen(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for item in behavior(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise  # the handler ended the call itself
            except Exception as exc:
                await abort(context, exc, method)

        return translated_gen

    async def translated(request: Any, context: Context) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(context, exc, method)

    return translated
