"""Typed async client of `sparc.video.v1.UploadService`: upload a local file as an export
source without storage credentials.

```python
async with AsyncUploadClient("localhost:50051") as client:
    key = await client.upload_file(Path("clip.mp4"), on_progress=print)
async with AsyncExportClient("localhost:50051") as exports:
    await exports.create_export(key, [thumbnail("50%")])
```

`upload_file` hashes the file (SHA-256), declares it (`CreateUpload`), PUTs its parts to the
URLs the server gives (several at a time, each exactly the part's size), and completes the
upload. A part that fails (a broken connection, an expired URL, a storage error) is not the end:
the client asks the server which parts the storage holds (`GetUpload`) and sends only the
missing ones, up to `retries` rounds in a row without progress. After a crash or a cancel,
`upload_file(path, upload="uploads/ID")` resumes the same way: the name is in every
`UploadProgress`.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from sparc.video.v1 import upload_service_pb2, upload_service_pb2_grpc

from sparc_video.client.channel import ChannelClient
from sparc_video.client.errors import UnavailableError, unary

Upload = upload_service_pb2.Upload
UploadState = upload_service_pb2.Upload.State

HASH_BUFFER = 1024 * 1024
DEFAULT_CONCURRENCY = 4
DEFAULT_RETRIES = 5
# Completing joins the parts (in local storage: copies them): a multi-GB file takes a while.
COMPLETE_TIMEOUT_S = 600.0
PART_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class UploadProgress:
    """Where an upload stands: after its creation (`part_number` 0) and after each part."""

    # `uploads/ID`: pass as `upload=` to resume.
    upload: str
    sent_bytes: int
    size_bytes: int
    part_number: int = 0
    parts_done: int = 0
    part_count: int = 0


class PartUploadError(Exception):
    """Storage refused a part's PUT; `status` is its HTTP status."""

    def __init__(self, part_number: int, status: int, text: str) -> None:
        super().__init__(f"storage refused part {part_number}: HTTP {status} {text.strip()[:300]}")
        self.part_number = part_number
        self.status = status


# Storage answers that a fresh URL (GetUpload) or another try may cure: an expired link,
# throttling, server errors. Anything else (the wrong size, the upload gone) will not.
_RETRYABLE_STATUS = frozenset({403, 408, 429, 500, 502, 503, 504})


def upload_name(name_or_id: str) -> str:
    return name_or_id if "/" in name_or_id else f"uploads/{name_or_id}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(HASH_BUFFER):
            digest.update(chunk)
    return digest.hexdigest()


class AsyncUploadClient(ChannelClient):
    """Typed async client of UploadService. Use as `async with`, or call `close()`."""

    def _open_stubs(self, channel: grpc.aio.Channel) -> None:
        self._stub = upload_service_pb2_grpc.UploadServiceStub(channel)

    async def create_upload(
        self,
        filename: str,
        size_bytes: int,
        sha256: str,
        content_type: str = "",
        *,
        timeout: float | None = None,
    ) -> Upload:
        request = upload_service_pb2.CreateUploadRequest(
            filename=filename, size_bytes=size_bytes, sha256=sha256, content_type=content_type
        )
        return await unary(self._stub.CreateUpload(request, timeout=self._deadline(timeout)))

    async def get_upload(self, name: str, *, timeout: float | None = None) -> Upload:
        request = upload_service_pb2.GetUploadRequest(name=upload_name(name))
        return await unary(self._stub.GetUpload(request, timeout=self._deadline(timeout)))

    async def complete_upload(self, name: str, *, timeout: float | None = None) -> Upload:
        request = upload_service_pb2.CompleteUploadRequest(name=upload_name(name))
        deadline = COMPLETE_TIMEOUT_S if timeout is None else timeout
        return await unary(self._stub.CompleteUpload(request, timeout=deadline))

    async def cancel_upload(self, name: str, *, timeout: float | None = None) -> Upload:
        request = upload_service_pb2.CancelUploadRequest(name=upload_name(name))
        return await unary(self._stub.CancelUpload(request, timeout=self._deadline(timeout)))

    async def upload_file(
        self,
        path: Path | str,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        upload: str | None = None,
        on_progress: Callable[[UploadProgress], None] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        retries: int = DEFAULT_RETRIES,
        session: aiohttp.ClientSession | None = None,
    ) -> str:
        """Upload the file and return the object key to export (`ExportSource.object_key`).

        `upload`: the name of an upload of this file begun before (resumes it: only the parts
        storage lacks are sent). `retries`: rounds in a row that may fail before the error is
        raised (progress resets the count)."""
        path = Path(path)
        size = (await asyncio.to_thread(os.stat, path)).st_size
        sha256 = await asyncio.to_thread(file_sha256, path)
        if upload is not None:
            current = await self.get_upload(upload)
            if current.size_bytes != size or current.sha256 != sha256:
                raise ValueError(
                    f"{path} is not the file {current.name} was created for (size or SHA-256 "
                    "differ); start a new upload"
                )
        else:
            guessed = mimetypes.guess_type(path.name)[0] or ""
            current = await self.create_upload(
                filename or path.name,
                size,
                sha256,
                content_type or (guessed if guessed.startswith("video/") else ""),
            )
        owned = session is None
        http = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PART_TIMEOUT_S))
        try:
            return await self._send(path, current, http, on_progress, concurrency, retries)
        finally:
            if owned:
                await http.close()

    async def _send(
        self,
        path: Path,
        current: Upload,
        http: aiohttp.ClientSession,
        on_progress: Callable[[UploadProgress], None] | None,
        concurrency: int,
        retries: int,
    ) -> str:
        stored = {p.part_number: p.size_bytes for p in current.uploaded_parts}
        name = current.name

        def report(part_number: int = 0) -> None:
            if on_progress is not None:
                on_progress(
                    UploadProgress(
                        upload=name,
                        sent_bytes=sum(stored.values()),
                        size_bytes=current.size_bytes,
                        part_number=part_number,
                        parts_done=len(stored),
                        part_count=current.part_count,
                    )
                )

        report()
        failures = 0
        gate = asyncio.Semaphore(max(1, concurrency))

        async def send(part: upload_service_pb2.PartUploadUrl) -> None:
            async with gate:
                offset = (part.part_number - 1) * current.part_size_bytes
                data = await asyncio.to_thread(_read, path, offset, part.size_bytes)
                async with http.put(part.url, data=data, headers=dict(part.headers)) as reply:
                    if reply.status != 200:
                        raise PartUploadError(part.part_number, reply.status, await reply.text())
                stored[part.part_number] = part.size_bytes
                report(part.part_number)

        while current.state == Upload.STATE_UPLOADING:
            if not current.part_urls:
                current = await self.complete_upload(name)
                break
            before = len(stored)
            try:
                await _all(send(part) for part in current.part_urls)
            except (aiohttp.ClientError, TimeoutError, PartUploadError) as exc:
                if isinstance(exc, PartUploadError) and exc.status not in _RETRYABLE_STATUS:
                    raise
                failures = 0 if len(stored) > before else failures + 1
                if failures > retries:
                    raise
                await asyncio.sleep(min(10.0, 0.2 * 2**failures))
            current = await self._refresh(name, retries)
            stored = {p.part_number: p.size_bytes for p in current.uploaded_parts}
        if current.state != Upload.STATE_COMPLETED:
            raise RuntimeError(f"{name} is {Upload.State.Name(current.state)}, not completed")
        return current.object_key

    async def _refresh(self, name: str, retries: int) -> Upload:
        """GetUpload, riding out a server that is briefly unavailable."""
        for attempt in range(retries + 1):
            try:
                return await self.get_upload(name)
            except UnavailableError:
                if attempt == retries:
                    raise
                await asyncio.sleep(min(10.0, 0.2 * 2**attempt))
        raise AssertionError("unreachable")


def _read(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as src:
        src.seek(offset)
        data = src.read(size)
    if len(data) != size:
        raise ValueError(f"{path} is shorter than when it was hashed: it changed meanwhile")
    return data


async def _all(calls: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the calls together, then raise the first failure: a part that fails does not stop
    the others in flight (their bytes would be sent again). Cancelled: all are cancelled."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
