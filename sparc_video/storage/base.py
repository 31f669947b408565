"""What every storage backend offers, and the key rules they share.

Keys are validated the same way for S3 and the local directory, so an export that works on a
laptop works against a bucket, and a key can never name a path outside the storage root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote

from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.core.object_keys import MAX_KEY_BYTES as MAX_KEY_BYTES
from sparc_video.core.object_keys import validate_key as validate_key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size_bytes: int
    # Hex SHA-256 recorded on the object when it was written (S3 user metadata `sha256`, a
    # sidecar file in local storage); "" for objects written without one (e.g. uploaded
    # straight to the bucket by others).
    sha256: str = ""


class Storage(Protocol):
    """Objects addressed by key, in an S3 bucket or a local directory."""

    # Label of the backend in metrics and logs: "s3" or "local".
    backend_name: str

    async def stat(self, key: str) -> ObjectInfo:
        """Size (and recorded SHA-256) of the object; ObjectNotFound(key) when it does not
        exist."""
        ...

    async def download_file(self, key: str, path: Path, max_bytes: int = 0) -> int:
        """Stream the object to `path` (replaced only once complete); return its size.

        ObjectTooLarge, before any byte is copied, when the object is larger than `max_bytes`
        (0: no limit)."""
        ...

    async def upload_file(
        self,
        path: Path,
        key: str,
        content_type: str,
        sha256: str | None = None,
        *,
        give_up: bool = False,
    ) -> ObjectInfo:
        """Store the file at `path` under `key`, streaming it (multipart on S3), with its
        SHA-256 recorded on the object and returned in the ObjectInfo.

        `sha256`: the hash the caller already knows; the backend then records it (and the
        local backend, which hashes while copying, refuses a file that does not match).
        None: the backend computes it. `give_up`: the caller never changes the file again
        (it only deletes it), so the local backend may hard-link it into place instead of
        copying it.
        """
        ...

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        """Store a small object held in memory, with its SHA-256 recorded on the object."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix`; return how many were deleted."""
        ...

    async def download_url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        """A GET URL valid for `ttl_s` seconds; with `filename`, browsers save under that name."""
        ...

    async def check(self) -> None:
        """Raise Unavailable(message) when the bucket or directory cannot be used."""
        ...

    async def aclose(self) -> None:
        """Release connections; the storage is unusable afterwards."""
        ...


@dataclass(frozen=True)
class Capacity:
    """Size of the file system a backend writes to, in bytes."""

    total_bytes: int
    free_bytes: int


@runtime_checkable
class BoundedStorage(Protocol):
    """A backend on a file system that can fill up (the local directory). Object stores such
    as S3 have no capacity to report, so this is a protocol of its own, not part of Storage."""

    async def capacity(self) -> Capacity:
        """Total and free bytes of the file system holding the objects."""
        ...


@dataclass(frozen=True)
class UploadTarget:
    """Where and how a client uploads one object: an HTTP PUT of exactly the declared size."""

    url: str
    # Headers the PUT must send as they are (they are part of the signature).
    headers: dict[str, str]
    expire_time: float


class ManagedStorage(Storage, Protocol):
    """What the server's own backends add: uploads by clients and deleting single objects.

    Kept out of `Storage` so wrappers of the worker's storage need not implement them.
    """

    async def delete(self, key: str) -> None:
        """Delete exactly this object; deleting one that does not exist is not an error."""
        ...

    async def upload_url(
        self, key: str, ttl_s: int, size_bytes: int, content_type: str
    ) -> UploadTarget:
        """A URL that accepts one PUT of `size_bytes` bytes creating `key` (never replacing
        an existing object) until `ttl_s` seconds from now."""
        ...


def validate_prefix(prefix: str) -> str:
    """A prefix to delete under: a valid key, optionally ending in '/'.

    An empty prefix is refused because it would delete the whole bucket or directory.
    """
    if not prefix:
        raise ValueError("must not be empty: that would delete every object")
    validate_key(prefix.removesuffix("/"))
    return prefix


def checked_key(key: str, field: str = "key") -> str:
    """validate_key, raising InvalidArgument for the storage methods' callers."""
    try:
        return validate_key(key)
    except ValueError as exc:
        raise InvalidArgument([FieldViolation(field, str(exc))]) from None


def checked_prefix(prefix: str) -> str:
    try:
        return validate_prefix(prefix)
    except ValueError as exc:
        raise InvalidArgument([FieldViolation("prefix", str(exc))]) from None


def content_disposition(filename: str) -> str:
    """`attachment` header value that survives any filename (RFC 6266 with an ASCII fallback)."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\/' else "_" for c in filename)
    encoded = quote(filename, safe="")
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{encoded}"
