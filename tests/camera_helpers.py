"""Shared by the camera and recording tests: a camera service, real streams on loopback, and
reading google.rpc details out of errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from google.rpc import error_details_pb2, status_pb2
from sparc.video.v1 import camera_service_pb2_grpc

from sparc_video.core.settings import Settings
from sparc_video.media.synth import make_sample_clip
from tests.fixtures.service import RunningService, start_service

# The test streams below serve on loopback, which the camera address policy refuses unless
# allowed: every test using them says so.
LOOPBACK_CAMERAS: dict[str, Any] = {"camera_allowed_networks": ("127.0.0.0/8",)}


@dataclass
class CameraService:
    service: RunningService
    stub: camera_service_pb2_grpc.CameraServiceStub


@contextlib.asynccontextmanager
async def camera_service(settings: Settings) -> AsyncIterator[CameraService]:
    # No arq worker: nothing here runs exports.
    async with start_service(settings, worker=False) as service:
        yield CameraService(service, camera_service_pb2_grpc.CameraServiceStub(service.channel))


def status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            return status_pb2.Status.FromString(value)
    raise AssertionError(f"no google.rpc.Status in {error!r}")


def reason_of(status: status_pb2.Status) -> str:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    raise AssertionError(f"no ErrorInfo in {status}")


def violation_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields of the BadRequest violations, in order."""
    return [
        violation.field
        for detail in status_of(error).details
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR)
        for violation in _bad_request(detail).field_violations
    ]


def _bad_request(detail: Any) -> error_details_pb2.BadRequest:
    bad = error_details_pb2.BadRequest()
    detail.Unpack(bad)
    return bad


def violations_of(error: grpc.aio.AioRpcError) -> dict[str, str]:
    found: dict[str, str] = {}
    for detail in status_of(error).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def expect_error(call: Any, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == code, (exc.code(), exc.details())
        return exc
    raise AssertionError(f"expected {code.name}")


def make_ts_clip(path: Path, *, seconds: float = 2.0, fps: int = 25) -> bytes:
    """A small H.264 MPEG-TS, as a camera or encoder would stream over HTTP."""
    make_sample_clip(path, width=320, height=240, duration_s=seconds, fps=fps, audio=False)
    return path.read_bytes()


@dataclass
class LiveStream:
    """An HTTP server on loopback serving an MPEG-TS stream at /live.ts, and at /private.ts
    only to requests with Basic authentication as `username`/`password`."""

    port: int
    username: str
    password: str
    authorizations: list[str] = field(default_factory=list)

    def url(self, path: str = "/live.ts") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def live_stream(body: bytes, username: str, password: str) -> AsyncIterator[LiveStream]:
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    stream = LiveStream(0, username, password)

    async def public(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="video/mp2t")

    async def private(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        stream.authorizations.append(header)
        if header != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="cam"'})
        return web.Response(body=body, content_type="video/mp2t")

    app = web.Application()
    app.add_routes([web.get("/live.ts", public), web.get("/private.ts", private)])
    # The camera's own access log would show its URLs, secrets included: it is not the service.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stream.port = runner.addresses[0][1]
    try:
        yield stream
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word: a camera that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)
