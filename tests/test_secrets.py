"""Secrets never leave: a real server and worker configured with known secret values (from the
environment and from `*_FILE` files), driven through succeeding and failing RPCs, with every
log line (JSON), every response byte and every span searched for them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import pytest
from cryptography.fernet import Fernet
from google.protobuf import duration_pb2, field_mask_pb2
from google.protobuf.message import Message
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sparc.video.v1 import camera_pb2, camera_service_pb2_grpc, export_service_pb2
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.settings import Settings, reveal
from tests.camera_helpers import in_thread, live_stream, make_ts_clip
from tests.fixtures.service import settings_env, start_service
from tests.test_export_e2e import create_request, put_clip, thumbnail, watch_to_end
from tests.test_observability import captured_logs, spans  # noqa: F401  (spans: a fixture)

ACCESS_KEY = "AKIALEAKCANARY000017"
SECRET_KEY = "aws-secret/LeakCanary+0123456789abcdefghij"
SIGNING_KEY = "local-signing-LeakCanary-9f8e7d6c5b4a"
CAMERA_USER = "cam-user-leakcanary"
CAMERA_PASSWORD = "cam-pass-LeakCanary!#42"
URL_PASSWORD = "url-pass-LeakCanary-77"
QUERY_TOKEN = "query-token-LeakCanary-5150"


class Transcript:
    """Every byte the service sent back: messages, error details and trailers."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def add(self, message: Message) -> Any:
        self.chunks.append(message.SerializeToString())
        self.chunks.append(str(message).encode())
        return message

    async def call(self, call: Any) -> Any:
        try:
            return self.add(await call)
        except grpc.aio.AioRpcError as exc:
            self.chunks.append((exc.details() or "").encode())
            for key, value in exc.trailing_metadata() or ():
                self.chunks.append(key.encode())
                self.chunks.append(value if isinstance(value, bytes) else value.encode())
            return None

    def text(self) -> bytes:
        return b"\n".join(self.chunks)


@pytest.mark.parametrize("backend", ["s3", "local"])
async def test_no_secret_in_logs_responses_or_spans(
    service_settings: Callable[..., Settings],
    s3_endpoint: str,
    s3_bucket: str,
    spans: InMemorySpanExporter,  # noqa: F811
    tmp_path: Path,
    backend: str,
) -> None:
    fernet_key = Fernet.generate_key().decode()
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    files = {
        "AWS_SECRET_ACCESS_KEY_FILE": SECRET_KEY,
        "LOCAL_STORAGE_SIGNING_KEY_FILE": SIGNING_KEY,
        "CAMERA_CREDENTIALS_KEY_FILE": fernet_key,
    }
    env = settings_env(service_settings(log_format="json"))
    for name, value in files.items():
        path = secrets_dir / name.lower()
        path.write_text(value + "\n")
        env[name] = str(path)
    env["AWS_ACCESS_KEY_ID"] = ACCESS_KEY
    env["CAMERA_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    if backend == "s3":
        env.update({"S3_BUCKET": s3_bucket, "S3_ENDPOINT_URL": s3_endpoint})
    settings = Settings.from_env(env).replace(grpc_host="127.0.0.1", http_host="127.0.0.1")
    assert reveal(settings.aws_secret_access_key) == SECRET_KEY
    assert reveal(settings.local_signing_key) == SIGNING_KEY
    assert reveal(settings.camera_credentials_key) == fernet_key
    assert SECRET_KEY not in repr(settings) and fernet_key not in repr(settings)

    spans.clear()
    out = Transcript()
    clip = await in_thread(make_ts_clip, tmp_path / "live.ts")
    with captured_logs(settings) as logs:
        async with (
            start_service(settings) as service,
            live_stream(clip, CAMERA_USER, "the-right-password") as live,
        ):
            exports = service.exports
            cameras = camera_service_pb2_grpc.CameraServiceStub(service.channel)
            # Exports: one that succeeds, one whose source is missing, one refused outright.
            await put_clip(service, tmp_path, "in/a.mp4", width=160, height=90, duration_s=0.5)
            created = await out.call(exports.CreateExport(create_request("in/a.mp4", thumbnail())))
            for message in await watch_to_end(service, created.name):
                out.add(message)
            await out.call(
                exports.GetExportDownloadUrl(
                    export_service_pb2.GetExportDownloadUrlRequest(name=created.name)
                )
            )
            await out.call(exports.CreateExport(create_request("in/missing.mp4", thumbnail())))
            await out.call(exports.CreateExport(create_request("../etc/passwd", thumbnail())))
            await out.call(exports.ListExports(export_service_pb2.ListExportsRequest()))

            # Cameras: the stored log-in is wrong, so probing and snapshots fail with messages
            # that describe the stream.
            url = live.url("/private.ts") + f"?token={QUERY_TOKEN}&q=1"
            camera = await out.call(
                cameras.CreateCamera(
                    svc.CreateCameraRequest(
                        camera=camera_pb2.Camera(
                            stream_url=url,
                            credentials=camera_pb2.CameraCredentials(
                                username=CAMERA_USER, password=CAMERA_PASSWORD
                            ),
                        )
                    )
                )
            )
            await out.call(cameras.ProbeCamera(svc.ProbeCameraRequest(name=camera.name)))
            await out.call(cameras.CaptureSnapshot(svc.CaptureSnapshotRequest(name=camera.name)))
            await out.call(cameras.GetCamera(svc.GetCameraRequest(name=camera.name)))
            await out.call(cameras.ListCameras(svc.ListCamerasRequest()))
            for bad in (
                f"ftp://{CAMERA_USER}:{URL_PASSWORD}@cam.example/s",
                f"rtsp://{CAMERA_USER}:{URL_PASSWORD}@169.254.169.254/s",
                f"rtsp://cam.example/s?password={URL_PASSWORD}&x= y",
            ):
                await out.call(
                    cameras.UpdateCamera(
                        svc.UpdateCameraRequest(
                            camera=camera_pb2.Camera(name=camera.name, stream_url=bad),
                            update_mask=field_mask_pb2.FieldMask(paths=["stream_url"]),
                        )
                    )
                )
            await out.call(
                cameras.CreateRecordingUploadUrl(
                    svc.CreateRecordingUploadUrlRequest(
                        parent=camera.name, size_bytes=1000, ttl=duration_pb2.Duration(seconds=60)
                    )
                )
            )

    secrets = [
        ACCESS_KEY,
        SECRET_KEY,
        SIGNING_KEY,
        fernet_key,
        CAMERA_PASSWORD,
        quote(CAMERA_PASSWORD, safe=""),
        URL_PASSWORD,
        QUERY_TOKEN,
    ]
    log_text = logs.getvalue()
    assert created.name.removeprefix("exports/") in log_text, "the worker's lines are missing"
    span_text = "\n".join(span.to_json() for span in spans.get_finished_spans())
    assert "CreateExport" in span_text and "ProbeCamera" in span_text
    responses = out.text()
    assert b"UNAUTHORIZED" in responses or b"401" in responses
    for secret in secrets:
        assert secret not in log_text, secret
        assert secret not in span_text, secret
        # A presigned S3 URL names its access key id (X-Amz-Credential) by design: the id is
        # no secret, the key signing with it is.
        if secret != ACCESS_KEY:
            assert secret.encode() not in responses, secret
