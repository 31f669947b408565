"""Objects as files under one directory, with HMAC-signed links (`local_links`).

Key `a/b.mp4` is the file ROOT/a/b.mp4. Path segments starting with "." are reserved for the
backend's own files (the signing key, files being written) and are refused as keys, so no link
can ever serve them. Every write goes to a hidden temporary file that is renamed into place, so
readers, including other replicas sharing the directory, never see a partial object.

Each object's SHA-256, computed while the object is written, is kept in a hidden sidecar file
next to it, `.NAME.sha256` (hex and a newline): portable to any filesystem, unlike extended
attributes, and out of reach of keys and links like the backend's other own files.

Filesystem calls run in worker threads to keep the event loop free.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
import stat
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from sparc_video.core import key_files
from sparc_video.core.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    ObjectNotFound,
    ObjectTooLarge,
    Unavailable,
)
from sparc_video.core.settings import Settings, reveal
from sparc_video.storage.base import (
    Capacity,
    ObjectInfo,
    UploadTarget,
    checked_key,
    checked_prefix,
)
from sparc_video.storage.local_files import (
    COPY_BUFFER,
    Hashing,
    Writer,
    copy_stream,
    link_atomic,
    read_sidecar,
    sidecar_name,
    sidecar_path,
    write_atomic,
    write_exactly,
    write_sidecar,
)
from sparc_video.storage.local_links import LinkSigner
from sparc_video.storage.local_multipart import LocalMultipart

SIGNING_KEY_FILE = ".signing-key"


class LocalStorage(LocalMultipart):
    """Objects under `root`; download links point at `base_url`/files/KEY (see http_routes).
    Uploads by clients in parts: `LocalMultipart`.

    Content types are not stored: the download route derives them from the key's extension.
    """

    backend_name = "local"

    def __init__(self, root: Path, signing_key: str | None, base_url: str) -> None:
        """`signing_key` None: use ROOT/.signing-key, created (mode 0600) if missing.

        Replicas that share the directory thereby sign and verify links with the same key.
        """
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.base_url = base_url.rstrip("/")
        key = key_files.configured_or_kept(
            signing_key,
            self.root / SIGNING_KEY_FILE,
            make=lambda: (secrets.token_hex(32) + "\n").encode("ascii"),
            parse=_hmac_key,
            variable="LOCAL_STORAGE_SIGNING_KEY",
            what="local storage signing",
            shared=False,
        )
        self.links = LinkSigner(key, self.base_url)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalStorage:
        return cls(
            settings.local_storage_dir, reveal(settings.local_signing_key), settings.http_base_url
        )

    async def aclose(self) -> None:
        """Nothing to release: files are opened per call."""

    async def stat(self, key: str) -> ObjectInfo:
        _check_local_key(key)

        def find() -> ObjectInfo:
            path, size = self._find(key)
            return ObjectInfo(key, size, read_sidecar(path))

        return await asyncio.to_thread(find)

    async def local_path(self, key: str) -> Path:
        """The file holding `key`; ObjectNotFound unless it is an existing regular file."""
        _check_local_key(key)
        path, _ = await asyncio.to_thread(self._find, key)
        return path

    async def download_file(self, key: str, path: Path, max_bytes: int = 0) -> int:
        _check_local_key(key)

        def copy() -> int:
            source = self._resolve(key)
            try:
                src = source.open("rb")
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise ObjectNotFound(key) from None
            with src:
                info = os.fstat(src.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise ObjectNotFound(key)
                if max_bytes and info.st_size > max_bytes:
                    raise ObjectTooLarge(key, info.st_size, max_bytes)
                # A scratch copy for the worker: no fsync, a crash loses it anyway.
                return write_atomic(path, lambda out: copy_stream(src, out), durable=False)

        return await asyncio.to_thread(copy)

    async def upload_file(
        self,
        path: Path,
        key: str,
        content_type: str,
        sha256: str | None = None,
        *,
        give_up: bool = False,
    ) -> ObjectInfo:
        """Hashes the bytes as it copies them; with `sha256` given, a file that does not
        match it (changed since it was hashed) is refused and nothing is stored. A file given
        up on the same filesystem is linked, not copied: a recorder's segments are written to
        disk once, which matters when fifty cameras' segments end at once."""
        _check_local_key(key)

        def copy() -> ObjectInfo:
            if give_up:
                linked = self._store_linked(key, path, sha256)
                if linked is not None:
                    return ObjectInfo(key, *linked)
            with path.open("rb") as src:
                size, digest = self._store(key, lambda out: copy_stream(src, out), sha256)
            return ObjectInfo(key, size, digest)

        return await asyncio.to_thread(copy)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        _check_local_key(key)

        def write(out: Writer) -> int:
            out.write(data)
            return len(data)

        def store() -> ObjectInfo:
            size, digest = self._store(key, write)
            return ObjectInfo(key, size, digest)

        return await asyncio.to_thread(store)

    async def delete_prefix(self, prefix: str) -> int:
        checked_prefix(prefix)
        if any(part.startswith(".") for part in prefix.split("/")[:-1]):
            return 0

        def delete() -> int:
            # Walk only the folder the prefix points into: "exports/abc/" and "exports/ab" both
            # start at ROOT/exports or deeper, never at the whole tree.
            folder = prefix.rpartition("/")[0]
            top = self._resolve(folder) if folder else self.root
            if not top.is_dir():
                return 0
            deleted = 0
            folders: list[str] = []
            for dirpath, dirnames, filenames in os.walk(top):
                relative = Path(dirpath).relative_to(self.root).as_posix()
                base = "" if relative == "." else relative + "/"
                dirnames[:] = [
                    name
                    for name in dirnames
                    if not name.startswith(".") and (base + name + "/").startswith(prefix)
                ]
                if base.startswith(prefix):
                    folders.append(dirpath)
                for name in filenames:
                    if not name.startswith(".") and (base + name).startswith(prefix):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(dirpath, name))
                            deleted += 1
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(dirpath, sidecar_name(name)))
            for dirpath in reversed(folders):
                # Fails harmlessly when the folder still holds other files, e.g. a write in
                # progress.
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
            return deleted

        return await asyncio.to_thread(delete)

    async def download_url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        _check_local_key(key)
        return self.links.download_url(key, ttl_s, filename)

    async def upload_url(
        self, key: str, ttl_s: int, size_bytes: int, content_type: str
    ) -> UploadTarget:
        """A signed `PUT /uploads/KEY` link on the HTTP port (see http_routes)."""
        _check_local_key(key)
        return self.links.upload_url(key, ttl_s, size_bytes, content_type)

    async def delete(self, key: str) -> None:
        _check_local_key(key)

        def delete() -> None:
            path = self._resolve(key)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                if path.is_file():
                    path.unlink()
                    sidecar_path(path).unlink(missing_ok=True)
            # Drop the folders it leaves empty, as delete_prefix does; a folder still in use
            # (another object, a write in progress) stays.
            for folder in path.parents:
                if folder == self.root or not folder.is_relative_to(self.root):
                    break
                try:
                    folder.rmdir()
                except OSError:
                    break

        await asyncio.to_thread(delete)

    async def create_from_stream(
        self, key: str, chunks: AsyncIterator[bytes], size_bytes: int
    ) -> ObjectInfo:
        """Store exactly `size_bytes` bytes from `chunks` as a new object.

        AlreadyExists when `key` exists (it is never replaced); BodySizeMismatch when the
        stream is longer or shorter, in which case nothing is stored.
        """
        _check_local_key(key)
        path = await asyncio.to_thread(self._resolve, key)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")

        def open_temp() -> BinaryIO:
            path.parent.mkdir(parents=True, exist_ok=True)
            return temp.open("xb")

        try:
            out = await asyncio.to_thread(open_temp)
        except (NotADirectoryError, FileExistsError) as exc:
            raise _collision(key) from exc
        try:
            digest = hashlib.sha256()
            with out:
                await write_exactly(out, chunks, size_bytes, "upload", digest)
            # link() fails when the key exists: a replayed upload link cannot replace the object.
            await asyncio.to_thread(os.link, temp, path)
            # Only now: a refused upload must not overwrite the existing object's hash.
            await asyncio.to_thread(write_sidecar, path, digest.hexdigest())
        except FileExistsError:
            raise AlreadyExists(f"object {key!r} exists already") from None
        except IsADirectoryError as exc:
            raise _collision(key) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(temp.unlink)
        return ObjectInfo(key, size_bytes, digest.hexdigest())

    async def capacity(self) -> Capacity:
        usage = await asyncio.to_thread(shutil.disk_usage, self.root)
        return Capacity(total_bytes=usage.total, free_bytes=usage.free)

    async def check(self) -> None:
        def probe() -> None:
            if not self.root.is_dir():
                raise Unavailable(f"local storage directory {self.root} does not exist")
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            try:
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                raise Unavailable(
                    f"local storage directory {self.root} is not writable: {exc.strerror or exc}"
                ) from exc

        await asyncio.to_thread(probe)

    def _checked_key(self, key: str) -> str:
        return _check_local_key(key)

    def _resolve(self, key: str) -> Path:
        path = self.root.joinpath(*key.split("/")).resolve()
        # A symlink inside the root could otherwise lead anywhere on the machine.
        if not path.is_relative_to(self.root):
            raise InvalidArgument(
                [FieldViolation("key", f"{key!r} resolves outside the storage directory")]
            )
        return path

    def _find(self, key: str) -> tuple[Path, int]:
        path = self._resolve(key)
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        if not stat.S_ISREG(info.st_mode):
            raise ObjectNotFound(key)
        return path, info.st_size

    def _store(
        self, key: str, write: Callable[[Writer], int], expected: str | None = None
    ) -> tuple[int, str]:
        """Write the object and its sidecar; (size, hex SHA-256 of the bytes written)."""
        path = self._resolve(key)
        digest = hashlib.sha256()

        def hashed(out: Writer) -> int:
            return write(Hashing(out, digest))

        with _collisions(key):
            size = write_atomic(
                path,
                hashed,
                durable=True,
                before_publish=lambda: _publish_hash(key, path, digest, expected),
            )
            return size, digest.hexdigest()

    def _store_linked(self, key: str, source: Path, expected: str | None) -> tuple[int, str] | None:
        """`source` itself as the object, hashed as it is read once; None: not linkable."""
        path = self._resolve(key)
        digest = hashlib.sha256()

        def check(linked: BinaryIO) -> None:
            while chunk := linked.read(COPY_BUFFER):
                digest.update(chunk)
            _publish_hash(key, path, digest, expected)

        with _collisions(key):
            size = link_atomic(path, source, check)
        return None if size is None else (size, digest.hexdigest())


def _publish_hash(key: str, path: Path, digest: hashlib._Hash, expected: str | None) -> None:
    if expected is not None and digest.hexdigest() != expected:
        raise Unavailable(
            f"{key!r}: the file changed while it was stored (sha256 "
            f"{digest.hexdigest()}, expected {expected}); nothing was stored"
        )
    # Before the object appears: whoever sees it also finds its hash.
    write_sidecar(path, digest.hexdigest())


@contextlib.contextmanager
def _collisions(key: str) -> Iterator[None]:
    try:
        yield
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        # S3 can hold both "a" and "a/b"; a directory tree cannot.
        raise _collision(key) from exc


def _collision(key: str) -> InvalidArgument:
    return InvalidArgument(
        [
            FieldViolation(
                "key", f"{key!r} collides with an existing object or folder in local storage"
            )
        ]
    )


def _check_local_key(key: str) -> str:
    if any(part.startswith(".") for part in checked_key(key).split("/")):
        raise InvalidArgument(
            [
                FieldViolation(
                    "key",
                    "path segments starting with '.' are reserved in local storage",
                )
            ]
        )
    return key


def _hmac_key(text: str) -> bytes:
    key = text.strip().encode("utf-8")
    if not key:
        raise ValueError("is empty; delete it to make a new one")
    return key
