"""File mechanics of the local backend: atomic writes and the SHA-256 sidecars.

Every write goes to a hidden temporary file in the object's folder and is renamed into place,
so readers (other replicas sharing the directory included) never see a partial object. Each
object's SHA-256 sits in a hidden sidecar `.NAME.sha256` next to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from sparc_video.core.errors import FieldViolation, InvalidArgument

COPY_BUFFER = 1024 * 1024


def flush_durably(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


class Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...


class Hashing:
    """Passes writes through, hashing them on the way."""

    def __init__(self, out: Writer, digest: hashlib._Hash) -> None:
        self._out = out
        self._digest = digest

    def write(self, data: bytes, /) -> int:
        self._digest.update(data)
        return self._out.write(data)


def sidecar_name(name: str) -> str:
    return f".{name}.sha256"


def sidecar_path(path: Path) -> Path:
    return path.with_name(sidecar_name(path.name))


def write_sidecar(path: Path, sha256: str) -> None:
    sidecar = sidecar_path(path)
    temp = sidecar.with_name(f"{sidecar.name}.{uuid.uuid4().hex}.tmp")
    try:
        temp.write_text(sha256 + "\n", "ascii")
        os.replace(temp, sidecar)
    finally:
        temp.unlink(missing_ok=True)


def read_sidecar(path: Path) -> str:
    try:
        return sidecar_path(path).read_text("ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def copy_stream(src: BinaryIO, out: Writer) -> int:
    copied = 0
    while chunk := src.read(COPY_BUFFER):
        out.write(chunk)
        copied += len(chunk)
    return copied


def write_atomic(
    path: Path,
    write: Callable[[BinaryIO], int],
    *,
    durable: bool,
    before_publish: Callable[[], None] | None = None,
) -> int:
    """Write through a hidden temporary file in the same folder and rename it into place.

    `before_publish` runs once the bytes are written, before the rename; raising refuses them.
    """
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    for attempt in range(2):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            out = temp.open("xb")
            break
        except FileNotFoundError:
            # delete_prefix removed the emptied folder between mkdir and open: once more.
            if attempt:
                raise
    with _published(temp, path):
        with out:
            size = write(out)
            if durable:
                flush_durably(out)
        if before_publish is not None:
            before_publish()
    return size


@contextlib.contextmanager
def _published(temp: Path, path: Path) -> Iterator[None]:
    """Renames `temp` to `path` once the block succeeds; removes it if anything fails."""
    try:
        yield
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def link_atomic(path: Path, source: Path, check: Callable[[BinaryIO], None]) -> int | None:
    """Publish the file `source` itself under `path`: a hard link to a hidden temporary name,
    `check` (reading it; raising refuses it), fsync, then the rename, as write_atomic does but
    with no byte copied. None, with nothing done, when no link can be made (another
    filesystem): the caller copies instead."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, temp)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            return None
        raise
    with _published(temp, path), temp.open("rb") as linked:
        check(linked)
        os.fsync(linked.fileno())
        size = os.fstat(linked.fileno()).st_size
    return size


class BodySizeMismatch(InvalidArgument):
    """A PUT's body is not the size its signed link was issued for."""

    def __init__(self, what: str, description: str) -> None:
        super().__init__([FieldViolation("body", f"the {what} sent {description}")])


async def write_exactly(
    out: BinaryIO,
    chunks: AsyncIterator[bytes],
    size_bytes: int,
    what: str,
    digest: hashlib._Hash | None = None,
) -> None:
    """Write `chunks` to `out` (hashing them into `digest`) and flush them to disk; a stream
    longer or shorter than `size_bytes` raises BodySizeMismatch naming `what` was sent."""
    written = 0
    async for chunk in chunks:
        written += len(chunk)
        if written > size_bytes:
            raise BodySizeMismatch(what, f"more than the {size_bytes} bytes announced")
        await asyncio.to_thread(out.write, chunk)
        if digest is not None:
            digest.update(chunk)
    if written != size_bytes:
        raise BodySizeMismatch(what, f"{written} of the {size_bytes} bytes announced")
    await asyncio.to_thread(flush_durably, out)
