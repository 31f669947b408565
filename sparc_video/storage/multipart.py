"""Uploads by clients in parts: what a backend offers for them (`MultipartStorage`).

A protocol of its own, beside `Storage` and `BoundedStorage` in `base`: only the server's
backends (S3, the local directory) implement it, and the worker's storage needs none of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sparc_video.storage.base import ObjectInfo, UploadTarget


@dataclass(frozen=True)
class StoredPart:
    """One part of a multipart upload that the storage holds."""

    number: int
    size_bytes: int
    # What completing needs to name the part (S3's ETag); "" where the backend needs none.
    etag: str = ""


@dataclass(frozen=True)
class PendingMultipart:
    """A multipart upload begun and neither completed nor aborted."""

    key: str
    upload_id: str
    # When it was begun, unix seconds.
    start_time: float


@runtime_checkable
class MultipartStorage(Protocol):
    """Uploads by clients in parts, each PUT to its own expiring URL bound to its exact size,
    assembled into one object at the end: S3 multipart uploads, or hidden part files in the
    local directory. A part can be sent again (after a broken connection) until completion.
    """

    async def start_multipart(self, key: str, content_type: str, sha256: str) -> str:
        """Begin an upload that will create `key`; return the backend's upload id. `sha256`
        (hex) is recorded on the object when it is completed."""
        ...

    async def part_upload_url(
        self, key: str, upload_id: str, part_number: int, size_bytes: int, ttl_s: int
    ) -> UploadTarget:
        """A URL accepting one PUT of exactly `size_bytes` bytes as part `part_number`
        (1-based) until `ttl_s` seconds from now."""
        ...

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        """The parts stored so far, by number; ObjectNotFound when the upload is unknown
        (completed, aborted or never started)."""
        ...

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[StoredPart], sha256: str
    ) -> ObjectInfo:
        """Assemble `parts` (as list_parts returned them, in order) into the object `key`.

        The local backend hashes the bytes as it joins them and refuses (FailedPrecondition,
        nothing stored, the parts kept) a result that does not match `sha256`; S3 records
        `sha256` as declared at start."""
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Delete the parts; aborting an unknown or finished upload is not an error."""
        ...

    async def list_multipart(self, prefix: str) -> list[PendingMultipart]:
        """The unfinished multipart uploads of keys starting with `prefix` (to find those
        whose record was lost)."""
        ...
