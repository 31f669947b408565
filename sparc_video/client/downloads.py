"""Fetching a SUCCEEDED export's outputs (and its signed manifest) from their expiring URLs,
each verified against the size and SHA-256 the export recorded before it is kept."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.core.file_hashes import file_sha256

if TYPE_CHECKING:
    import aiohttp


class DownloadError(Exception):
    """An output could not be fetched from its URL."""


class ChecksumMismatchError(DownloadError):
    """The bytes fetched are not the bytes the export recorded; nothing was kept."""

    def __init__(self, storage_key: str, expected: str, actual: str, size: int) -> None:
        self.storage_key = storage_key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{storage_key}: sha256 {actual} ({size} bytes) does not match the export's "
            f"{expected}; the download was discarded"
        )


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    storage_key: str
    size_bytes: int
    sha256: str
    # The file was already there with the right bytes, so nothing was fetched.
    already_present: bool = False


class DownloadProgress(Protocol):
    """Told about each output while `download_outputs` fetches it."""

    def started(self, output: export_pb2.Output, path: Path) -> None: ...

    def advanced(self, done_bytes: int) -> None: ...

    def finished(self, result: DownloadedFile) -> None: ...


class ExportReader(Protocol):
    """The two calls a download needs (AsyncExportClient has them)."""

    async def get_export(self, name: str) -> export_pb2.Export: ...

    async def get_export_download_url(
        self, name: str
    ) -> export_service_pb2.GetExportDownloadUrlResponse: ...


async def download_outputs(
    client: ExportReader,
    name: str,
    directory: Path,
    *,
    progress: DownloadProgress | None = None,
    chunk_size: int = 256 * 1024,
) -> list[DownloadedFile]:
    """See `AsyncExportClient.download_outputs`."""
    # Imported here: only downloads need it, and it doubles the import time of the client.
    import aiohttp

    urls = await client.get_export_download_url(name)
    export = await client.get_export(name)
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    results: list[DownloadedFile] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for link in urls.urls:
            output = export.outputs[link.output_index]
            path = _local_path(directory, export.name, link.storage_key)
            if progress is not None:
                progress.started(output, path)
            expected = _Expected(output.storage_key, output.sha256, output.size_bytes)
            result = await asyncio.to_thread(_already_present, path, expected)
            if result is None:
                result = await _fetch(session, link.url, path, expected, progress, chunk_size)
            if progress is not None:
                progress.finished(result)
            results.append(result)
        if urls.HasField("manifest_url") and urls.HasField("manifest_signature_url"):
            for link, sha256 in (
                (urls.manifest_url, export.manifest.sha256),
                (urls.manifest_signature_url, export.manifest.signature_sha256),
            ):
                path = _local_path(directory, export.name, link.storage_key)
                expected = _Expected(link.storage_key, sha256 or None, None)
                result = await asyncio.to_thread(_already_present, path, expected)
                if result is None:
                    result = await _fetch(session, link.url, path, expected, None, chunk_size)
                results.append(result)
    return results


def _local_path(directory: Path, export: str, storage_key: str) -> Path:
    """Where an output goes: its key below the export's prefix (`video.mp4`, `2/video.mp4`)."""
    relative = storage_key.removeprefix(f"{export}/")
    parts = relative.split("/")
    # The key comes from the server; never let it point outside the target directory.
    for part in parts:
        if part in ("", ".", "..") or "\\" in part or "\0" in part:
            raise DownloadError(f"refusing to write output {storage_key!r}: unsafe path")
    return directory.joinpath(*parts)


@dataclass(frozen=True)
class _Expected:
    """What a download must turn out to be; None: not known in advance."""

    storage_key: str
    sha256: str | None
    size_bytes: int | None


def _already_present(path: Path, expected: _Expected) -> DownloadedFile | None:
    if not path.is_file() or expected.sha256 is None:
        return None
    if expected.size_bytes is not None and path.stat().st_size != expected.size_bytes:
        return None
    if file_sha256(path) != expected.sha256:
        return None
    return DownloadedFile(path, expected.storage_key, path.stat().st_size, expected.sha256, True)


async def _fetch(
    session: aiohttp.ClientSession,
    url: str,
    path: Path,
    output: _Expected,
    progress: DownloadProgress | None,
    chunk_size: int,
) -> DownloadedFile:
    import aiohttp

    partial = path.with_name(path.name + ".part")
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    done = 0
    try:
        async with session.get(url) as response:
            if response.status != 200:
                body = (await response.text())[:200]
                raise DownloadError(
                    f"{output.storage_key}: HTTP {response.status} from the download URL: {body}"
                )
            file = await asyncio.to_thread(partial.open, "wb")
            try:
                async for chunk in response.content.iter_chunked(chunk_size):
                    await asyncio.to_thread(file.write, chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress.advanced(done)
            finally:
                file.close()
    except aiohttp.ClientError as exc:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{output.storage_key}: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    wrong_hash = output.sha256 is not None and actual != output.sha256
    if wrong_hash or (output.size_bytes is not None and done != output.size_bytes):
        partial.unlink(missing_ok=True)
        raise ChecksumMismatchError(output.storage_key, output.sha256 or "", actual, done)
    await asyncio.to_thread(partial.replace, path)
    return DownloadedFile(path, output.storage_key, done, actual)
