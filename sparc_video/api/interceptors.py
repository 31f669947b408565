"""The grpc.aio server interceptors for tracing, metrics and log context.

Tracing is opentelemetry-instrumentation-grpc's aio server interceptor (`tracing_interceptor`):
one SERVER span per RPC, continuing the caller's W3C trace context, with the rpc.* attributes and
the final `rpc.grpc.status_code`. `ObservabilityInterceptor`, inside it, counts and times every
RPC, binds the RPC's log fields and names the span as the semantic conventions do
(`package.Service/Method`). It wraps every kind of handler, including server streams written
either as async generators (WatchExport) or as coroutines calling `context.write` (grpc's health
Watch), and reads the final status from the context, which is where `abort()` leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from prometheus_client import Counter, Gauge, Histogram

from sparc_video.observability import logs as logging_setup
from sparc_video.observability.metrics import (
    GRPC_HANDLED,
    GRPC_HANDLING_SECONDS,
    GRPC_STREAMS_ACTIVE,
)

# The library's stream wrapper iterates the handler, so it cannot wrap grpc's health Watch
# (a coroutine that calls context.write); health checks are load balancers polling anyway.
_UNTRACED_SERVICE = "grpc.health.v1.Health"


def tracing_interceptor() -> grpc.aio.ServerInterceptor:
    """A SERVER span per RPC (health excepted), from the global tracer provider."""
    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        filter_=filters.negate(filters.service_name(_UNTRACED_SERVICE))
    )
    return interceptor


Context = grpc.aio.ServicerContext[Any, Any]
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


# Series looked up once per method (and code): labels() costs a few microseconds a call. The
# methods are the registered ones (unknown ones never reach a wrapper), so the caches stay small.
@functools.cache
def _handled(service: str, method: str, rpc_type: str, code: str) -> Counter:
    return GRPC_HANDLED.labels(service, method, rpc_type, code)


@functools.cache
def _latency(service: str, method: str, rpc_type: str) -> Histogram:
    return GRPC_HANDLING_SECONDS.labels(service, method, rpc_type)


@functools.cache
def _streams(service: str, method: str) -> Gauge:
    return GRPC_STREAMS_ACTIVE.labels(service, method)


def _split(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or full_method


def _rpc_type(handler: grpc.RpcMethodHandler[Any, Any]) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    # A client that cancelled gets nothing more, whatever the handler did next (a last write
    # failing, or returning normally before the cancel was seen): the call ended CANCELLED.
    if context.cancelled():
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    # aio contexts may hold the raw integer value of the code.
    if isinstance(code, int):
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _export_id(request: Any) -> str | None:
    name = getattr(request, "name", "")
    if isinstance(name, str) and name.startswith("exports/"):
        return name.removeprefix("exports/")
    return None


class _Observation:
    """Metrics and log fields of one RPC."""

    def __init__(self, details: grpc.HandlerCallDetails, rpc_type: str) -> None:
        self.service, self.method = _split(details.method)
        self.rpc_type = rpc_type
        self.started = time.perf_counter()
        # The library names its span after the path (with the leading slash); the semantic
        # conventions' name is `package.Service/Method`.
        trace.get_current_span().update_name(f"{self.service}/{self.method}")

    def finish(self, context: Context, error: BaseException | None) -> None:
        code = _final_code(context, error)
        _handled(self.service, self.method, self.rpc_type, code.name).inc()
        _latency(self.service, self.method, self.rpc_type).observe(
            time.perf_counter() - self.started
        )

    @contextlib.contextmanager
    def running(self, context: Context, *, stream: bool = False) -> Iterator[None]:
        """Around the handler: counts a response stream as active while it runs, and finishes
        with whatever it raised (GeneratorExit and CancelledError included: a client gone)."""
        gauge = _streams(self.service, self.method) if stream else None
        if gauge is not None:
            gauge.inc()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            if gauge is not None:
                gauge.dec()
            self.finish(context, error)

    def log_fields(self, request: Any) -> dict[str, str]:
        fields = {"rpc": self.method}
        if (export_id := _export_id(request)) is not None:
            fields["export_id"] = export_id
        return fields


def wrap_handler(
    handler: grpc.RpcMethodHandler[_Req, _Resp],
    wrap: Callable[[Callable[..., Any], bool], Callable[..., Any]],
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler[_Req, _Resp]:
    """`handler` with its behaviour replaced by `wrap(behaviour, response_streaming)`, its
    kind and (de)serializers kept: what every interceptor here does to a handler.
    `request_deserializer` replaces the handler's (see request_decoding)."""
    kinds: list[tuple[Callable[..., Any] | None, Callable[..., Any]]] = [
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    ]
    for behavior, make in kinds:
        if behavior is not None:
            wrapped: grpc.RpcMethodHandler[_Req, _Resp] = make(
                wrap(behavior, handler.response_streaming),
                request_deserializer=request_deserializer or handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            return wrapped
    return handler


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        rpc_type = _rpc_type(handler)

        def wrap(behavior: Callable[..., Any], response_streaming: bool) -> Callable[..., Any]:
            observe = self._stream if response_streaming else self._unary
            return observe(behavior, handler_call_details, rpc_type)

        return wrap_handler(handler, wrap)

    @staticmethod
    def _unary(
        behavior: Callable[..., Any], details: grpc.HandlerCallDetails, rpc_type: str
    ) -> Callable[..., Any]:
        async def observed(request: Any, context: Context) -> Any:
            obs = _Observation(details, rpc_type)
            with logging_setup.bind(**obs.log_fields(request)), obs.running(context):
                return await behavior(request, context)

        return observed

    @staticmethod
    def _stream(
        behavior: Callable[..., Any], details: grpc.HandlerCallDetails, rpc_type: str
    ) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):

            async def observed_gen(request: Any, context: Context) -> AsyncIterator[Any]:
                obs = _Observation(details, rpc_type)
                with (
                    logging_setup.bind(**obs.log_fields(request)),
                    obs.running(context, stream=True),
                ):
                    async for item in behavior(request, context):
                        yield item

            return observed_gen

        async def observed_coro(request: Any, context: Context) -> Any:
            obs = _Observation(details, rpc_type)
            with logging_setup.bind(rpc=obs.method), obs.running(context, stream=True):
                return await behavior(request, context)

        return observed_coro
