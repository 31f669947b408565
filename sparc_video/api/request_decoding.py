"""Requests whose bytes do not decode answer INVALID_ARGUMENT, not UNKNOWN.

grpc.aio deserializes a request before any handler or interceptor sees it, and a DecodeError
there ends the call as UNKNOWN ("Unexpected <class 'DecodeError'>"). This interceptor, the
innermost, hands the server a handler that takes the raw bytes and decodes them itself, so a
malformed message gets a status that says what is wrong. The outer interceptors never read the
request, only its metadata and status, so they see the bytes unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

Decode = Callable[[bytes], Any]


async def _decoded(decode: Decode, raw: bytes, method: str, context: Any) -> Any:
    try:
        return decode(raw)
    except DecodeError as exc:
        name = method.rsplit("/", 1)[-1]
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request to {name} is not a valid protobuf message ({exc}); "
            "send the serialized request message of this method",
        )


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        decode: Decode = handler.request_deserializer
        method: str = details.method
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_unary(raw: bytes, context: Any) -> Any:
                return await unary(await _decoded(decode, raw, method, context), context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, response_serializer=handler.response_serializer
            )
        if handler.unary_stream is not None:
            stream: Callable[[Any, Any], Any] = handler.unary_stream

            async def unary_stream(raw: bytes, context: Any) -> AsyncIterator[Any]:
                result = stream(await _decoded(decode, raw, method, context), context)
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                else:  # a handler that writes with context.write() and returns None
                    await result

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, response_serializer=handler.response_serializer
            )
        # Client-streaming methods (none today) decode per message in grpc itself.
        return handler
