"""Requests that are not well-formed answer INVALID_ARGUMENT, not UNKNOWN, before any handler.

Two things no handler should have to repeat, checked here for every RPC:
- bytes that do not decode as the method's request message;
- Timestamp and Duration fields outside protobuf's valid range (years 1 to 9999, ±10,000 years,
  nanos of the seconds' sign and under a second), anywhere in the request: protobuf's own
  conversions raise ValueError on them deep inside a handler. Each bad field is named by its
  path (`export.source.camera_range.start_time`) in a BadRequest detail.

grpc.aio deserializes a request before any handler or interceptor runs, and a DecodeError
there ends the call as UNKNOWN ("Unexpected <class 'DecodeError'>"). This interceptor, the
innermost, gives the handler a deserializer that never raises: a message that does not decode
becomes a `Malformed` value, and the handler answers it with INVALID_ARGUMENT saying what is
wrong. The outer interceptors copy the deserializer with the handler (`wrap_handler`), so a
well-formed request still reaches them decoded (they read the export name for the logs).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from sparc_video.api.interceptors import wrap_handler
from sparc_video.core.errors import FieldViolation, InvalidArgument

# Protobuf's valid ranges (google/protobuf/timestamp.proto and duration.proto).
_TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)  # 0001-01-01 .. 9999-12-31T23:59:59
_DURATION_SECONDS = (-315_576_000_000, 315_576_000_000)  # about ±10,000 years
_NANOS = 999_999_999
_TIME_TYPES = {"google.protobuf.Timestamp", "google.protobuf.Duration"}


def _time_problem(value: Message) -> str | None:
    seconds: int = getattr(value, "seconds")  # noqa: B009 (a Timestamp or Duration)
    nanos: int = getattr(value, "nanos")  # noqa: B009
    if value.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        low, high = _TIMESTAMP_SECONDS
        if not low <= seconds <= high:
            return "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
        if not 0 <= nanos <= _NANOS:
            return "nanos must be between 0 and 999,999,999"
        return None
    low, high = _DURATION_SECONDS
    if not low <= seconds <= high:
        return "must be within ±10,000 years (315,576,000,000 seconds)"
    if not -_NANOS <= nanos <= _NANOS or (seconds and nanos and (seconds < 0) != (nanos < 0)):
        return "nanos must be under a second and of the same sign as seconds"
    return None


def time_violations(message: Message, path: str = "") -> list[FieldViolation]:
    """Every Timestamp or Duration in `message` (set fields, at any depth) outside its range."""
    found: list[FieldViolation] = []
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        name = f"{path}{field.name}"
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key, item in value.items():
                    found += time_violations(item, f"{name}[{key!r}].")
            continue
        items = list(enumerate(value)) if field.is_repeated else [(None, value)]
        for index, item in items:
            where = name if index is None else f"{name}[{index}]"
            if field.message_type.full_name in _TIME_TYPES:
                if (problem := _time_problem(item)) is not None:
                    found.append(FieldViolation(where, problem))
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                found += time_violations(item, f"{where}.")
    return found


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not a valid message of its method's type."""

    error: str


def _tolerant(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        try:
            return decode(raw)
        except DecodeError as exc:
            return Malformed(str(exc))

    return deserialize


async def _check(request: Any, method: str, context: Any) -> None:
    """Abort the call with INVALID_ARGUMENT if the request is not well-formed."""
    if isinstance(request, Malformed):
        name = method.rsplit("/", 1)[-1]
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request to {name} is not a valid protobuf message ({request.error}); "
            "send the serialized request message of this method",
        )
    if isinstance(request, Message) and (violations := time_violations(request)):
        raise InvalidArgument(violations)  # answered by the error interceptor


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        # Client-streaming methods (none today) decode each message in grpc itself.
        if handler is None or handler.request_deserializer is None or handler.request_streaming:
            return handler
        method: str = details.method
        return wrap_handler(
            handler,
            lambda behavior, _: _checking(behavior, method),
            request_deserializer=_tolerant(handler.request_deserializer),
        )


def _checking(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def checked_gen(request: Any, context: Any) -> AsyncIterator[Any]:
            await _check(request, method, context)
            async for item in behavior(request, context):
                yield item

        return checked_gen

    # Unary handlers, and stream handlers that write with context.write() and return None.
    async def checked(request: Any, context: Any) -> Any:
        await _check(request, method, context)
        return await behavior(request, context)

    return checked
