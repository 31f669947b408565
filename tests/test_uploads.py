"""UploadService end to end: a real server, Redis, moto's S3 server or local storage, the
Python client's `upload_file`, and an export of what was uploaded.

No timing is asserted: waits poll with generous deadlines, so a loaded machine is only slower.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import av
import grpc
import numpy as np
import pytest
import redis.asyncio as aioredis
from sparc.video.v1 import export_pb2, export_service_pb2, upload_service_pb2_grpc
from sparc.video.v1 import upload_service_pb2 as pb

from sparc_video.cli.upload_api import upload_via_api
from sparc_video.client import (
    AsyncExportClient,
    AsyncUploadClient,
    NotFoundError,
    UploadProgress,
    thumbnail,
    watermark,
)
from sparc_video.core.errors import NotFound, ObjectNotFound
from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings, StaticToken
from sparc_video.security.auth import Principal
from sparc_video.security.roles import Role
from sparc_video.storage import LocalStorage, MultipartStorage, S3Storage
from sparc_video.storage.local_multipart import MULTIPART_DIR
from sparc_video.uploads import Uploads, UploadState, UploadStore
from sparc_video.uploads.models import UploadPart
from tests.camera_helpers import expect_error, violations_of
from tests.fixtures.service import RunningService, start_service
from tests.test_cli import sparc_video

MIB = 1024 * 1024
State = export_pb2.Export
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DEADLINE_S = 180.0


def noise_clip(path: Path, frames: int = 90) -> Path:
    """A real H.264 MP4 of random pixels, losslessly coded: ~12 MB from a second of encoding,
    so it spans 3 parts of 5 MiB and a thumbnail export can read it."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height = 320, 240
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "qp": "0"}
        for index in range(frames):
            image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return noise_clip(tmp_path_factory.mktemp("uploads") / "noise.mp4")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["local", "s3"])
def backend(
    request: pytest.FixtureRequest, service_settings: Callable[..., Settings]
) -> Callable[..., Settings]:
    """service_settings on local storage or on moto's S3 server."""
    if request.param == "local":
        return service_settings
    s3: Settings = request.getfixturevalue("s3_settings")

    def make(**overrides: Any) -> Settings:
        return service_settings(
            s3_bucket=s3.s3_bucket,
            s3_endpoint_url=s3.s3_endpoint_url,
            aws_region=s3.aws_region,
            aws_access_key_id=s3.aws_access_key_id,
            aws_secret_access_key=s3.aws_secret_access_key,
            **overrides,
        )

    return make


@pytest.fixture
async def uploads_api(backend: Callable[..., Settings]) -> AsyncIterator[RunningService]:
    async with start_service(backend(), worker=False) as service:
        yield service


def stub(service: RunningService) -> upload_service_pb2_grpc.UploadServiceStub:
    return upload_service_pb2_grpc.UploadServiceStub(service.channel)


async def put(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.put(url, data=body, headers=headers or {}) as reply,
    ):
        return reply.status, await reply.text()


async def wait_export(service: RunningService, name: str) -> export_pb2.Export:
    request = export_service_pb2.GetExportRequest(name=name)
    async with asyncio.timeout(DEADLINE_S):
        while True:
            export = await service.exports.GetExport(request)
            if export.state in (State.STATE_SUCCEEDED, State.STATE_FAILED, State.STATE_CANCELLED):
                return export
            await asyncio.sleep(0.2)


async def test_upload_in_parts_then_export_it(backend: Callable[..., Settings], clip: Path) -> None:
    async with start_service(backend()) as service:
        progress: list[UploadProgress] = []
        async with AsyncUploadClient(service.target) as client:
            key = await upload_via_api(client, clip, progress.append)
        size = clip.stat().st_size
        assert size > 10 * MIB
        name = progress[0].upload
        assert progress[0].part_number == 0 and progress[0].part_count == 3
        assert sorted(p.part_number for p in progress[1:]) == [1, 2, 3]
        assert progress[-1].sent_bytes == size and progress[-1].parts_done == 3
        assert key.startswith("uploads/") and key.endswith(f"/{name.split('/')[1]}/noise.mp4")

        info = await service.app.storage.stat(key)
        assert info.size_bytes == size
        assert info.sha256 == sha256_of(clip)

        upload = await stub(service).GetUpload(pb.GetUploadRequest(name=name))
        assert upload.state == pb.Upload.STATE_COMPLETED and not upload.part_urls
        assert upload.object_key == key and upload.sha256 == sha256_of(clip)
        assert not upload.used

        async with AsyncExportClient(service.target) as exports:
            created = await exports.create_export(key, [thumbnail("50%", size="160x120")])
        export = await wait_export(service, created.name)
        assert export.state == State.STATE_SUCCEEDED, export.error
        assert [o.kind for o in export.outputs] == [export_pb2.Output.KIND_THUMBNAIL]
        upload = await stub(service).GetUpload(pb.GetUploadRequest(name=name))
        assert upload.used
        # Used by an export: it can no longer be cancelled (the export's source stays).
        await expect_error(
            stub(service).CancelUpload(pb.CancelUploadRequest(name=name)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        # Completing again answers the completed upload.
        again = await stub(service).CompleteUpload(pb.CompleteUploadRequest(name=name))
        assert again.state == pb.Upload.STATE_COMPLETED


class BreaksOnce:
    """An aiohttp session whose PUT of one part fails as a broken connection would, once."""

    def __init__(self, session: aiohttp.ClientSession, part: int) -> None:
        self._session = session
        self._part = part
        self.sent: list[int] = []
        self.broken = False

    def put(self, url: str, **kwargs: Any) -> Any:
        number = int(url.split("part=")[1].split("&")[0]) if "part=" in url else 0
        if not number:
            number = int(url.split("partNumber=")[1].split("&")[0])
        if number == self._part and not self.broken:
            self.broken = True
            raise aiohttp.ServerDisconnectedError()
        self.sent.append(number)
        return self._session.put(url, **kwargs)


async def test_resume_after_a_broken_connection_sends_only_missing_parts(
    uploads_api: RunningService, clip: Path
) -> None:
    service = uploads_api
    sha = sha256_of(clip)

    # 1. Cut off after the first part: the task is cancelled as a lost process would stop.
    progress: list[UploadProgress] = []
    async with AsyncUploadClient(service.target) as client:
        task: asyncio.Task[str] | None = None

        def on_progress(p: UploadProgress) -> None:
            progress.append(p)
            if p.parts_done >= 1 and task is not None:
                task.cancel()

        task = asyncio.create_task(client.upload_file(clip, on_progress=on_progress, concurrency=1))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, DEADLINE_S)
        name = progress[0].upload

        upload = await client.get_upload(name)
        assert upload.state == pb.Upload.STATE_UPLOADING
        stored = {p.part_number for p in upload.uploaded_parts}
        assert stored == {1}
        assert {u.part_number for u in upload.part_urls} == {2, 3}
        assert all(u.expire_time.seconds > time.time() for u in upload.part_urls)

        # 2. Resume: only the missing parts go out, and one of them breaks once on the way
        # (retried after GetUpload, within the same call).
        async with aiohttp.ClientSession() as session:
            flaky = BreaksOnce(session, part=3)
            resumed: list[UploadProgress] = []
            key = await client.upload_file(
                clip,
                upload=name,
                on_progress=resumed.append,
                session=flaky,  # type: ignore[arg-type]
            )
        assert flaky.broken
        assert sorted(flaky.sent) == [2, 3]
        assert resumed[0].sent_bytes == 5 * MIB  # what storage held already
        assert resumed[-1].sent_bytes == clip.stat().st_size

    info = await service.app.storage.stat(key)
    assert (info.size_bytes, info.sha256) == (clip.stat().st_size, sha)
    if isinstance(service.app.storage, LocalStorage):
        # The hidden part files went with completion.
        assert not any((service.app.storage.root / MULTIPART_DIR).iterdir())


async def test_storage_refuses_a_part_that_is_not_its_size(
    uploads_api: RunningService,
) -> None:
    service = uploads_api
    body = b"x" * (5 * MIB + 10)
    upload = await stub(service).CreateUpload(
        pb.CreateUploadRequest(
            filename="two parts.mp4",
            size_bytes=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
        )
    )
    assert upload.part_count == 2 and upload.part_size_bytes == 5 * MIB
    first, last = upload.part_urls
    assert (first.size_bytes, last.size_bytes) == (5 * MIB, 10)
    storage = service.app.storage
    assert isinstance(storage, MultipartStorage)
    if isinstance(storage, S3Storage):
        # S3 checks Content-Length against the signature; moto's server accepts any
        # signature, so the check here is that the size is signed.
        assert "X-Amz-SignedHeaders=content-length%3Bhost" in last.url
        assert (await put(last.url, body[-10:], dict(last.headers)))[0] == 200
    else:
        assert (await put(last.url, body[-11:], dict(last.headers)))[0] == 413
        assert (await put(last.url, body[-9:], dict(last.headers)))[0] == 400
        forged = last.url.replace("size=10", "size=11")
        assert (await put(forged, body[-11:], dict(last.headers)))[0] == 403
        assert (await put(last.url, body[-10:], dict(last.headers)))[0] == 200
    # Completing with a part missing is refused and names it.
    error = await expect_error(
        stub(service).CompleteUpload(pb.CompleteUploadRequest(name=upload.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "1 of 2 parts" in (error.details() or "")
    assert (await put(first.url, body[: 5 * MIB], dict(first.headers)))[0] == 200
    done = await stub(service).CompleteUpload(pb.CompleteUploadRequest(name=upload.name))
    assert done.state == pb.Upload.STATE_COMPLETED
    assert (await storage.stat(done.object_key)).size_bytes == len(body)


async def test_local_completion_refuses_bytes_that_do_not_match_the_hash(
    service_settings: Callable[..., Settings],
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        body = b"y" * 1000
        upload = await stub(service).CreateUpload(
            pb.CreateUploadRequest(
                filename="a.mp4", size_bytes=1000, sha256=hashlib.sha256(b"z" * 1000).hexdigest()
            )
        )
        (part,) = upload.part_urls
        assert (await put(part.url, body))[0] == 200
        error = await expect_error(
            stub(service).CompleteUpload(pb.CompleteUploadRequest(name=upload.name)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert "not the" in (error.details() or "")
        with pytest.raises(ObjectNotFound):
            await service.app.storage.stat(upload.object_key)


async def test_declarations_are_checked(service_settings: Callable[..., Settings]) -> None:
    async with start_service(service_settings(max_upload_size=1_000_000), worker=False) as svc:
        uploads = stub(svc)
        error = await expect_error(
            uploads.CreateUpload(
                pb.CreateUploadRequest(filename="big.mp4", size_bytes=1_000_001, sha256="ab" * 32)
            ),
            INVALID,
        )
        assert "MAX_VIDEO_UPLOAD_SIZE (1000000 bytes)" in violations_of(error)["size_bytes"]
        error = await expect_error(
            uploads.CreateUpload(
                pb.CreateUploadRequest(
                    filename="../etc/passwd", size_bytes=0, sha256="nothex", content_type="x"
                )
            ),
            INVALID,
        )
        assert set(violations_of(error)) == {"filename", "size_bytes", "sha256", "content_type"}
        for name in ("uploads/../x", "exports/0123456789abcdef0123", "uploads/"):
            error = await expect_error(uploads.GetUpload(pb.GetUploadRequest(name=name)), INVALID)
            assert "name" in violations_of(error)
        await expect_error(
            uploads.GetUpload(pb.GetUploadRequest(name="uploads/0123456789abcdef0123")),
            NOT_FOUND,
        )


TOKENS = {
    "op-a": "upload-operator-a-token-0123456789",
    "op-b": "upload-operator-b-token-0123456789",
}


async def test_another_principal_cannot_see_or_use_an_upload(
    service_settings: Callable[..., Settings], clip: Path
) -> None:
    settings = service_settings(
        auth_disabled=False,
        auth_static_tokens=tuple(
            StaticToken(pid, Role.OPERATOR, token) for pid, token in TOKENS.items()
        ),
    )
    async with start_service(settings, worker=False) as service:

        def client(who: str) -> AsyncUploadClient:
            return AsyncUploadClient(service.target, token=TOKENS[who], plaintext_token=True)

        async with client("op-a") as a, client("op-b") as b:
            key = await a.upload_file(clip)
            name = (await a.get_upload(f"uploads/{key.split('/')[2]}")).name
            for call in (b.get_upload, b.complete_upload, b.cancel_upload):
                with pytest.raises(NotFoundError):
                    await call(name)
            # B cannot export A's upload by its key either: as if it did not exist.
            async with AsyncExportClient(
                service.target, token=TOKENS["op-b"], plaintext_token=True
            ) as exports_b:
                with pytest.raises(NotFoundError):
                    await exports_b.create_export(key, [thumbnail("50%")])
                # Nor read it as a watermark image.
                await service.app.storage.put_bytes("incoming/b.mp4", b"b" * 10, "video/mp4")
                with pytest.raises(NotFoundError):
                    await exports_b.create_export("incoming/b.mp4", [watermark(image=key)])
            # B's own uploads live under another prefix.
            other = await b.create_upload("x.mp4", 10, "cd" * 32)
            assert other.object_key.split("/")[1] != key.split("/")[1]
            assert (await a.get_upload(name)).state == pb.Upload.STATE_COMPLETED


async def test_the_reconciler_removes_an_abandoned_upload(
    backend: Callable[..., Settings],
) -> None:
    settings = backend(upload_retention_s=1, reconcile_interval_s=0.2)
    async with start_service(settings) as service:
        body = b"z" * 100
        upload = await stub(service).CreateUpload(
            pb.CreateUploadRequest(
                filename="left.mp4", size_bytes=100, sha256=hashlib.sha256(body).hexdigest()
            )
        )
        (part,) = upload.part_urls
        assert (await put(part.url, body, dict(part.headers)))[0] == 200
        async with asyncio.timeout(DEADLINE_S):
            while True:
                try:
                    await stub(service).GetUpload(pb.GetUploadRequest(name=upload.name))
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == NOT_FOUND
                    break
                await asyncio.sleep(0.2)
        await assert_no_parts_left(service)


async def assert_no_parts_left(service: RunningService) -> None:
    storage = service.app.storage
    if isinstance(storage, S3Storage):
        listing = await storage.client.list_multipart_uploads(Bucket=storage.bucket)
        assert listing.get("Uploads", []) == []
    else:
        assert isinstance(storage, LocalStorage)
        folder = storage.root / MULTIPART_DIR
        assert not folder.exists() or not any(folder.iterdir())


async def test_retention_keeps_only_uploads_an_export_used(
    uploads_api: RunningService, clip: Path
) -> None:
    service = uploads_api
    async with AsyncUploadClient(service.target) as client:
        used_key = await client.upload_file(clip, filename="used.mp4")
        unused_key = await client.upload_file(clip, filename="unused.mp4")
        abandoned = await client.create_upload("abandoned.mp4", 10, "ab" * 32)
    async with AsyncExportClient(service.target) as exports:
        await exports.create_export(used_key, [thumbnail("50%")])  # queued; no worker here
    # A multipart upload whose record never got written (or was lost with Redis).
    storage = service.app.storage
    assert isinstance(storage, MultipartStorage)
    orphan_key = "uploads/someone/0123456789abcdef0123/lost.mp4"
    await storage.start_multipart(orphan_key, "video/mp4", "ef" * 32)

    removed = await service.app.uploads.sweep(now=time.time() + 7 * 24 * 3600, orphans=True)
    assert removed == 3
    assert (await service.app.storage.stat(used_key)).sha256 == sha256_of(clip)
    with pytest.raises(ObjectNotFound):
        await service.app.storage.stat(unused_key)
    await expect_error(stub(service).GetUpload(pb.GetUploadRequest(name=abandoned.name)), NOT_FOUND)
    await assert_no_parts_left(service)


async def test_cancel_aborts_the_parts(uploads_api: RunningService) -> None:
    service = uploads_api
    body = b"c" * 100
    upload = await stub(service).CreateUpload(
        pb.CreateUploadRequest(
            filename="c.mp4", size_bytes=100, sha256=hashlib.sha256(body).hexdigest()
        )
    )
    (part,) = upload.part_urls
    assert (await put(part.url, body, dict(part.headers)))[0] == 200
    cancelled = await stub(service).CancelUpload(pb.CancelUploadRequest(name=upload.name))
    assert cancelled.state == pb.Upload.STATE_CANCELLED
    await assert_no_parts_left(service)
    await expect_error(
        stub(service).CompleteUpload(pb.CompleteUploadRequest(name=upload.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_many_parts_come_a_hundred_urls_at_a_time(
    service_settings: Callable[..., Settings], redis_url: str
) -> None:
    """A file of more parts than one response lists: GetUpload gives the next URLs as parts
    arrive, and the local backend joins all 151 in order, checking the hash."""
    settings = service_settings()
    storage = LocalStorage.from_settings(settings)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        uploads = Uploads(
            settings, UploadStore(redis, Keys(settings.redis_prefix)), storage, part_size=1000
        )
        body = bytes(range(256)) * 588  # 150,528 bytes: 151 parts of 1000, the last 528
        caller = Principal("op", Role.OPERATOR, "token")
        view = await uploads.create(
            caller, "many.mp4", len(body), hashlib.sha256(body).hexdigest(), ""
        )
        record = view.record

        async def write_parts(parts: Sequence[UploadPart]) -> None:
            for part in parts:
                start = (part.number - 1) * 1000
                await storage.write_part(
                    record.object_key,
                    record.storage_upload_id,
                    part.number,
                    chunks(body[start : start + part.size_bytes]),
                    part.size_bytes,
                )

        assert record.part_count == 151
        assert [p.number for p in view.missing] == list(range(1, 101))
        await write_parts(view.missing)
        view = await uploads.get(caller, record.id)
        assert len(view.stored) == 100
        assert [p.number for p in view.missing] == list(range(101, 152))
        assert view.missing[-1].size_bytes == 528
        await write_parts(view.missing)
        done = await uploads.complete(caller, record.id)
        assert done.record.state == UploadState.COMPLETED
        path = await storage.local_path(record.object_key)
        assert path.read_bytes() == body
        # Another principal: as if it did not exist.
        with pytest.raises(NotFound):
            await uploads.get(Principal("other", Role.OPERATOR, "token"), record.id)
    finally:
        await redis.aclose()


async def test_the_cli_uploads_through_the_api_and_prints_the_key(
    service_settings: Callable[..., Settings], clip: Path
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        result = await sparc_video(
            "upload", str(clip), "--target", service.target, "--progress", "plain"
        )
        assert result.rc == 0, result.stderr
        key = result.stdout.strip()
        assert key.startswith("uploads/") and key.endswith("/noise.mp4")
        assert (await service.app.storage.stat(key)).sha256 == sha256_of(clip)
        # The upload's name first, then a line a part (no terminal: no redrawn bar).
        lines = result.stderr.splitlines()
        assert lines[0].startswith("uploads/") and "in 3 parts" in lines[0]
        assert [line.split(":")[0] for line in lines[1:]] == [f"part {n}/3" for n in (1, 2, 3)]
        missing = await sparc_video("upload", str(clip) + ".gone", "--target", service.target)
        assert missing.rc == 2 and "does not exist" in missing.stderr
