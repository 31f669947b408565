"""sparc_video.client against the real service: typed calls, decoded errors, gRPC retries from
the service config, TLS with a bearer token, and a watch that resumes across a server restart."""

from __future__ import annotations

import ast
import asyncio
import collections
import contextlib
import hashlib
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from sparc.video.v1 import export_pb2, export_service_pb2, export_service_pb2_grpc

from sparc_video import client as client_module
from sparc_video.api.auth_interceptor import AuthInterceptor
from sparc_video.api.exports.handlers import ExportServicer
from sparc_video.app import App, open_app
from sparc_video.client import (
    AsyncExportClient,
    ExportClient,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ServiceError,
    UnauthenticatedError,
    UnavailableError,
    error_from_status,
    thumbnail,
    transcode,
)
from sparc_video.core.settings import Settings
from sparc_video.exports.event_log import EventKind
from sparc_video.media.synth import make_sample_clip
from sparc_video.security.auth import Authenticator
from tests.fixtures.redis import free_port
from tests.fixtures.service import RunningService, start_service
from workers.job.runner import build_worker

Export = export_pb2.Export
WatchResponse = export_service_pb2.WatchExportResponse
CLIP = {"width": 320, "height": 180, "duration_s": 1.0}


async def put_clip(service: RunningService, tmp_path: Path, key: str) -> None:
    path = tmp_path / "clip-source.mp4"
    await asyncio.to_thread(make_sample_clip, path, **CLIP)  # type: ignore[arg-type]
    await service.app.storage.upload_file(path, key, "video/mp4")


def small_export() -> list[export_pb2.Operation]:
    return [
        transcode(codec="h264", resolution="160x90", preset="ultrafast"),
        thumbnail("50%", size="80x45"),
    ]


async def test_typed_calls_cover_every_rpc(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with (
        start_service(service_settings()) as service,
        AsyncExportClient(service.target) as client,
    ):
        await put_clip(service, tmp_path, "in/clip.mp4")
        created = await client.create_export("in/clip.mp4", small_export(), request_id="c-1")
        assert created.state == Export.STATE_QUEUED and created.request_id == "c-1"
        again = await client.create_export("in/clip.mp4", small_export(), request_id="c-1")
        assert again.name == created.name

        events = [m async for m in client.watch_export(created.name)]
        assert events[0].kind == WatchResponse.EVENT_KIND_SNAPSHOT
        final = events[-1].export
        assert final.state == Export.STATE_SUCCEEDED, final.error

        export_id = created.name.removeprefix("exports/")
        got = await client.get_export(export_id)
        assert got == final or got.state == Export.STATE_SUCCEEDED
        assert [e.name for e in (await client.list_exports(state="SUCCEEDED")).exports] == [
            created.name
        ]
        generated = await client.create_export("in/clip.mp4", [thumbnail("0")])
        assert uuid.UUID(generated.request_id).version == 4
        assert [e.name async for e in client.iter_exports(page_size=1)] == [
            generated.name,
            created.name,
        ]

        urls = await client.get_export_download_url(created.name, ttl=60)
        assert [u.storage_key for u in urls.urls] == [o.storage_key for o in final.outputs]
        stats = await client.get_queue_stats()
        assert stats.succeeded >= 1 and stats.workers == 1

        files = await client.download_outputs(created.name, tmp_path / "out")
        # The outputs, then the signed manifest and its signature.
        assert [f.storage_key for f in files[len(final.outputs) :]] == [
            final.manifest.storage_key,
            final.manifest.signature_storage_key,
        ]
        for file, output in zip(files, final.outputs, strict=False):
            assert hashlib.sha256(file.path.read_bytes()).hexdigest() == output.sha256
            assert not file.already_present
        assert all(
            f.already_present for f in await client.download_outputs(created.name, tmp_path / "out")
        )

        with pytest.raises(FailedPreconditionError) as info:
            await client.cancel_export(created.name)
        assert info.value.reason == "EXPORT_FINISHED"
        assert (await client.wait_export(generated.name)).state == Export.STATE_SUCCEEDED


async def test_errors_carry_code_reason_and_field_violations(
    service_settings: Callable[..., Settings],
) -> None:
    async with (
        start_service(service_settings(), worker=False) as service,
        AsyncExportClient(service.target) as client,
    ):
        with pytest.raises(InvalidArgumentError) as bad:
            await client.create_export(
                "../etc/passwd", [transcode(codec="nope", resolution="wide")]
            )
        error = bad.value
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.domain == "video.sparc"
        fields = {v.field for v in error.field_violations}
        assert {"export.source.object_key", "export.operations[0].transcode.codec"} <= fields
        assert "export.operations[0].transcode.resolution" in fields
        assert "export.operations[0].transcode.codec" in str(error)

        with pytest.raises(NotFoundError) as missing:
            await client.get_export("exports/0123456789abcdef0123")
        assert missing.value.reason == "EXPORT_NOT_FOUND"
        with pytest.raises(NotFoundError):
            await client.create_export("in/missing.mp4", [thumbnail()])

        await service.app.storage.put_bytes("in/a.mp4", b"not a video", "video/mp4")
        queued = await client.create_export("in/a.mp4", [thumbnail()])
        with pytest.raises(FailedPreconditionError) as early:
            await client.get_export_download_url(queued.name)
        assert early.value.reason == "EXPORT_NOT_SUCCEEDED"
        assert isinstance(early.value, ServiceError)

    async with AsyncExportClient(f"127.0.0.1:{free_port()}", timeout=5) as nowhere:
        with pytest.raises(UnavailableError):
            await nowhere.get_queue_stats()
        # Nothing was received yet, so there is nothing to resume: fail at once.
        with pytest.raises(UnavailableError):
            await anext(nowhere.watch_export("exports/0123456789abcdef0123"))


async def test_failed_export_error_decodes_like_a_call_error(
    service_settings: Callable[..., Settings],
) -> None:
    async with (
        start_service(service_settings()) as service,
        AsyncExportClient(service.target) as client,
    ):
        await service.app.storage.put_bytes("in/a.mp4", b"not a video", "video/mp4")
        created = await client.create_export("in/a.mp4", [thumbnail()])
        final = await client.wait_export(created.name)
    assert final.state == Export.STATE_FAILED
    error = error_from_status(final.error)
    assert isinstance(error, InvalidArgumentError)
    assert error.reason == "NOT_A_VIDEO" and error.message


async def test_sync_client_wraps_the_async_one(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with start_service(service_settings()) as service:
        await put_clip(service, tmp_path, "in/clip.mp4")

        def use_sync_client() -> tuple[list[WatchResponse], list[Path]]:
            with ExportClient(service.target) as client:
                created = client.create_export("in/clip.mp4", small_export())
                assert client.get_export(created.name).name == created.name
                events = list(client.watch_export(created.name))
                files = client.download_outputs(created.name, tmp_path / "sync")
                assert client.get_queue_stats().succeeded == 1
                assert [e.name for e in client.iter_exports()] == [created.name]
                with pytest.raises(FailedPreconditionError):
                    client.cancel_export(created.name)
                client.close()  # and again on leaving the block: a no-op
                return events, [f.path for f in files]

        # The sync client runs its own event loop, so it needs a thread of its own here.
        events, paths = await asyncio.to_thread(use_sync_client)
    assert events[-1].export.state == Export.STATE_SUCCEEDED
    outputs = events[-1].export.outputs
    names = [o.storage_key.rsplit("/", 1)[1] for o in outputs]
    assert [p.name for p in paths] == [*names, "manifest.json", "manifest.json.sig"]


# ---------------------------------------------------------------------------------------------
# Retries through the service config, on a server whose first answer to each method is lost.


class LoseFirstResponse(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Runs each method's first call for real, then answers UNAVAILABLE as if the response had
    been lost on the way: the case where a blind retry of a create would duplicate it."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        method = details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary
        if inner is None:
            return handler

        async def lossy(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            self.calls[method] += 1
            response = await inner(request, context)
            if self.calls[method] == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "response lost")
            return response

        return grpc.unary_unary_rpc_method_handler(
            lossy,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@contextlib.asynccontextmanager
async def export_server(
    app: App,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
) -> AsyncIterator[int]:
    """ExportService (the real servicer) on its own port, with extra interceptors or TLS.

    The servicer needs the authenticated caller: the auth interceptor (here with the
    fixtures' AUTH_DISABLED settings) comes last, as in the real server.
    """
    auth = AuthInterceptor(Authenticator(app.settings), None)
    server = grpc.aio.server(interceptors=[*interceptors, auth])
    export_service_pb2_grpc.add_ExportServiceServicer_to_server(
        ExportServicer(app.exports, app.signer), server
    )
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0)


async def test_service_config_retries_reads_and_creates_but_not_cancel(
    service_settings: Callable[..., Settings],
) -> None:
    lossy = LoseFirstResponse()
    async with (
        open_app(service_settings()) as app,
        export_server(app, [lossy]) as port,
        AsyncExportClient(f"127.0.0.1:{port}") as client,
    ):
        await app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        created = await client.create_export("in/a.mp4", [thumbnail()])
        # The first attempt created the export; the retry (same request_id) returned it.
        assert lossy.calls["CreateExport"] == 2
        listed = await client.list_exports()
        assert [e.name for e in listed.exports] == [created.name]
        assert lossy.calls["ListExports"] == 2
        assert (await client.get_export(created.name)).name == created.name
        await client.get_queue_stats()
        assert lossy.calls["GetExport"] == 2 and lossy.calls["GetQueueStats"] == 2

        with pytest.raises(UnavailableError):
            await client.cancel_export(created.name)
        assert lossy.calls["CancelExport"] == 1
        # It did cancel: a retry would have said FAILED_PRECONDITION for a cancel that worked.
        assert (await client.get_export(created.name)).state == Export.STATE_CANCELLED


# ---------------------------------------------------------------------------------------------
# TLS and bearer tokens


class RequireToken(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self.expected = ("authorization", f"Bearer {token}")

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if self.expected in tuple(details.invocation_metadata or ()):
            return await continuation(details)

        async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

        return grpc.unary_unary_rpc_method_handler(refuse)


def self_signed_certificate(directory: Path) -> tuple[bytes, bytes]:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key.read_bytes(), cert.read_bytes()


async def test_tls_with_bearer_token(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    key, cert = self_signed_certificate(tmp_path)
    credentials = grpc.ssl_server_credentials([(key, cert)])
    async with (
        open_app(service_settings()) as app,
        export_server(app, [RequireToken("s3cret")], credentials) as port,
    ):
        target = f"localhost:{port}"
        async with AsyncExportClient(target, ca_cert=cert, token="s3cret") as client:
            assert (await client.get_queue_stats()).queued == 0
        async with AsyncExportClient(target, ca_cert=cert, token="wrong") as client:
            with pytest.raises(UnauthenticatedError):
                await client.get_queue_stats()
        async with AsyncExportClient(target, timeout=3) as plaintext:
            with pytest.raises(UnavailableError):
                await plaintext.get_queue_stats()
    with pytest.raises(ValueError, match="TLS"):
        AsyncExportClient(target, token="s3cret")


# ---------------------------------------------------------------------------------------------
# Watch across a server restart


def event_key(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


async def test_watch_resumes_across_a_server_restart_without_gap_or_duplicate(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings()
    received: list[WatchResponse] = []
    reconnects: list[ServiceError] = []
    client: AsyncExportClient | None = None

    async def consume(name: str) -> None:
        assert client is not None
        async for message in client.watch_export(
            name, on_reconnect=lambda error, _: reconnects.append(error)
        ):
            received.append(message)

    async with start_service(settings, worker=False) as first:
        port = first.server.grpc_port
        client = AsyncExportClient(first.target)
        await put_clip(first, tmp_path, "in/clip.mp4")
        created = await client.create_export("in/clip.mp4", small_export())
        watching = asyncio.create_task(consume(created.name))
        while not received:
            await asyncio.sleep(0.01)
        await first.server.stop(grace_s=5)

    # While no server runs, a worker processes the export: those events must be replayed.
    async with open_app(settings) as app:
        worker = build_worker(settings, handle_signals=False)
        worker_task = asyncio.create_task(worker.main())
        async with asyncio.timeout(60):
            while not (await app.store.get(created.name.split("/")[1])).state.terminal:
                await asyncio.sleep(0.05)
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
        await worker.close()
        # What happened after the snapshot the watch began with, as the server retains it.
        stream = await app.store.events_after(created.name.split("/")[1], received[0].event_id)
    assert stream

    second_settings = settings.replace(grpc_port=port, http_port=free_port())
    async with start_service(second_settings, worker=False):
        async with asyncio.timeout(30):
            await watching
    await client.close()

    assert reconnects and all(e.code == grpc.StatusCode.UNAVAILABLE for e in reconnects)
    ids = [m.event_id for m in received]
    assert ids == sorted(ids, key=event_key), ids
    assert len(set(ids)) == len(ids), ids
    assert received[0].export.state == Export.STATE_QUEUED
    assert received[-1].export.state == Export.STATE_SUCCEEDED
    # Every state change after the snapshot reached the watcher (progress may be coalesced).
    state_changes = [e.event_id for e in stream if e.kind == EventKind.STATE_CHANGED]
    assert len(state_changes) >= 2 and set(state_changes) <= set(ids), (state_changes, ids)
    assert set(ids[1:]) <= {e.event_id for e in stream}


def test_documented_example_uses_this_api() -> None:
    clients_doc = (Path(__file__).resolve().parent.parent / "docs" / "clients.md").read_text()
    section = re.search(r"^## Python client\n(.*?)(?=^## |\Z)", clients_doc, re.M | re.S)
    assert section
    (example,) = re.findall(r"```python\n(.*?)```", section[1], re.S)
    tree = ast.parse(example)
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "sparc_video.client"
        for alias in node.names
    }
    assert imported and all(hasattr(client_module, name) for name in imported)
    methods = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "client"
    }
    assert methods and all(hasattr(AsyncExportClient, m) for m in methods), methods


async def test_documented_example_runs_and_prints_state_names(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    clients_doc = (Path(__file__).resolve().parent.parent / "docs" / "clients.md").read_text()
    section = re.search(r"^## Python client\n(.*?)(?=^## |\Z)", clients_doc, re.M | re.S)
    assert section
    (example,) = re.findall(r"```python\n(.*?)```", section[1], re.S)
    async with start_service(service_settings()) as service:
        await put_clip(service, tmp_path, "samples/clip.mp4")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            example.replace("localhost:50051", service.target),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 240)
    text = out.decode()
    assert process.returncode == 0, text
    lines = text.splitlines()
    assert any(line.startswith("STATE_SUCCEEDED 100.0%") for line in lines), text
    assert all(not line[:1].isdigit() for line in lines), text
    assert (tmp_path / "out").is_dir()
