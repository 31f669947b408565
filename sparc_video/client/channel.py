"""The channel every client of this service shares: target, TLS (optionally mutual), a bearer
token, the service config that makes gRPC retry reads and creates, and reconnect backoff.

- Every unary call has a deadline (`timeout`, 10 s unless set).
- Reads and `CreateExport` are retried by gRPC itself on UNAVAILABLE, through the channel's
  service config (`SERVICE_CONFIG`). A retried create is safe only with a `request_id` (the
  server returns the export the first attempt made instead of queueing a second one), so the
  export client always sends one. `CancelExport` is not retried: when the first attempt did
  cancel and only its answer was lost, a retry would report FAILED_PRECONDITION for a cancel
  that worked.
- A bearer token is sent as `authorization: Bearer …` through call credentials, which gRPC
  only allows over TLS. Behind a service mesh whose sidecars already encrypt the hop (Istio,
  Linkerd), `plaintext_token=True` sends it on a plaintext channel instead: an explicit,
  clearly named opt-in, because anyone on an unencrypted path could replay the token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, TypedDict, TypeVar, Unpack

import grpc

from sparc_video import __version__
from sparc_video.core.defaults import DEFAULT_TARGET as DEFAULT_TARGET
from sparc_video.core.defaults import DEFAULT_TIMEOUT_S as DEFAULT_TIMEOUT_S

SERVICE_NAME = "sparc.video.v1.ExportService"
CAMERA_SERVICE_NAME = "sparc.video.v1.CameraService"

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
# Reads only: a retried CreateCamera would answer ALREADY_EXISTS for a camera the first attempt
# made, a retried delete NOT_FOUND for one it deleted.
CAMERA_RETRIED_METHODS = (
    "GetCamera",
    "ListCameras",
    "GetRecording",
    "ListRecordings",
    "GetCameraTimeline",
)
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


PLAINTEXT_TOKEN_REFUSED = (
    "a bearer token is only sent over TLS: enable TLS (tls=True or a CA certificate; CLI "
    "--tls/--ca-cert), or, behind a service mesh that already encrypts the connection, opt in "
    "with plaintext_token=True (CLI --plaintext-token, SPARC_VIDEO_PLAINTEXT_TOKEN=1)"
)


class _Bearer:
    """Adds `authorization: Bearer …` to every call (the plaintext_token opt-in)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def with_token(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), self._header)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryBearer(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.with_token(details), request)


class _StreamBearer(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.with_token(details), request)


def _bearer_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    # One object per kind: a channel files each interceptor under the first kind it is.
    return [_UnaryBearer(token), _StreamBearer(token)]


class ChannelOptions(TypedDict, total=False):
    """The keyword arguments of every client after `target`.

    `tls` (off by default) uses TLS; `ca_cert`, `client_cert`, `client_key` are PEM bytes, and
    any of them implies TLS. `token` is a bearer token, sent over TLS only unless
    `plaintext_token` is set (a service mesh that encrypts the connection). `server_name`
    overrides the name the server's certificate is checked against. `timeout` is the default
    deadline of unary calls in seconds (`DEFAULT_TIMEOUT_S`). `channel_options` are extra gRPC
    channel arguments."""

    tls: bool
    ca_cert: bytes | None
    client_cert: bytes | None
    client_key: bytes | None
    token: str | None
    plaintext_token: bool
    server_name: str | None
    timeout: float
    channel_options: Sequence[tuple[str, Any]]


def open_channel(
    target: str,
    *,
    tls: bool = False,
    ca_cert: bytes | None = None,
    client_cert: bytes | None = None,
    client_key: bytes | None = None,
    token: str | None = None,
    plaintext_token: bool = False,
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
        if not plaintext_token:
            raise ValueError(PLAINTEXT_TOKEN_REFUSED)
        return grpc.aio.insecure_channel(
            target, options=channel_options, interceptors=_bearer_interceptors(token)
        )
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


class _Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


_P = TypeVar("_P", bound=_Page)
_T = TypeVar("_T")


async def all_pages(
    fetch: Callable[[str], Awaitable[_P]], items: Callable[[_P], Iterable[_T]]
) -> AsyncIterator[_T]:
    """Every item of a listing: `fetch(page_token)` from the first page ("") until a page
    names no next one."""
    token = ""
    while True:
        page = await fetch(token)
        for item in items(page):
            yield item
        token = page.next_page_token
        if not token:
            return


class ChannelClient:
    """What every client of this service shares: the channel (TLS, token, service config),
    the default deadline, and `async with`. Subclasses add their stubs on `self._channel`."""

    def __init__(self, target: str = DEFAULT_TARGET, **options: Unpack[ChannelOptions]) -> None:
        """`target` is `host:port` (any gRPC target); the options are `ChannelOptions`."""
        ca_cert, client_cert, client_key = (
            options.get("ca_cert"),
            options.get("client_cert"),
            options.get("client_key"),
        )
        self.target = target
        self.timeout = options.get("timeout", DEFAULT_TIMEOUT_S)
        self._channel = open_channel(
            target,
            tls=options.get("tls", False) or bool(ca_cert or client_cert or client_key),
            ca_cert=ca_cert,
            client_cert=client_cert,
            client_key=client_key,
            token=options.get("token"),
            plaintext_token=options.get("plaintext_token", False),
            server_name=options.get("server_name"),
            options=options.get("channel_options", ()),
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
