"""The local backend's multipart uploads by clients (`MultipartStorage`): each part arrives
through a signed part link on the HTTP port (`http_routes`) as a hidden file under
ROOT/.multipart/{upload id}/, and completion joins them into the object, hashing the bytes.

`ROOT/.multipart/{upload id}/` holds the parts (`part-00001`...) and `key`, the key the upload
will create. Hidden, as every backend's own file: no key or link reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from sparc_video.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ObjectNotFound,
)
from sparc_video.storage.base import ObjectInfo, UploadTarget, checked_prefix
from sparc_video.storage.local_files import (
    Hashing,
    copy_stream,
    write_atomic,
    write_exactly,
    write_sidecar,
)
from sparc_video.storage.multipart import PendingMultipart, StoredPart

if TYPE_CHECKING:
    from sparc_video.storage.local_links import LinkSigner

MULTIPART_DIR = ".multipart"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


class LocalMultipart:
    """Mixed into LocalStorage, which provides the root, the link signer and key checks."""

    if TYPE_CHECKING:
        root: Path
        links: LinkSigner

        def _checked_key(self, key: str) -> str: ...

        def _resolve(self, key: str) -> Path: ...

    async def start_multipart(self, key: str, content_type: str, sha256: str) -> str:
        self._checked_key(key)
        upload_id = uuid.uuid4().hex

        def start() -> None:
            folder = self._multipart_folder(upload_id)
            folder.mkdir(parents=True)
            (folder / "key").write_text(key, "utf-8")

        await asyncio.to_thread(start)
        return upload_id

    async def part_upload_url(
        self, key: str, upload_id: str, part_number: int, size_bytes: int, ttl_s: int
    ) -> UploadTarget:
        """A signed `PUT /uploads/KEY?upload_id=...&part=N` link on the HTTP port."""
        self._checked_key(key)
        return self.links.part_upload_url(key, upload_id, part_number, ttl_s, size_bytes)

    async def write_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        chunks: AsyncIterator[bytes],
        size_bytes: int,
    ) -> None:
        """Store exactly `size_bytes` bytes as the part, replacing an earlier copy of it (a
        part sent again after a broken connection). ObjectNotFound when the upload is unknown;
        BodySizeMismatch when the stream is longer or shorter (nothing stored)."""
        self._checked_key(key)
        folder = await asyncio.to_thread(self._upload_folder, key, upload_id)
        final = folder / f"part-{part_number:05d}"
        temp = folder / f".part-{part_number:05d}.{uuid.uuid4().hex}.tmp"
        try:
            out = await asyncio.to_thread(temp.open, "xb")
        except FileNotFoundError:
            raise ObjectNotFound(key, what="upload of") from None
        try:
            with out:
                await write_exactly(out, chunks, size_bytes, "part")
            await asyncio.to_thread(os.replace, temp, final)
        except FileNotFoundError:
            # Aborted (or completed) while the part was arriving.
            raise ObjectNotFound(key, what="upload of") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(temp.unlink)

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        self._checked_key(key)

        def listing() -> list[StoredPart]:
            folder = self._upload_folder(key, upload_id)
            parts: list[StoredPart] = []
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                raise ObjectNotFound(key, what="upload of") from None
            for entry in entries:
                name = entry.name
                if name.startswith("part-") and name[5:].isdigit():
                    with contextlib.suppress(FileNotFoundError):
                        parts.append(StoredPart(int(name[5:]), entry.stat().st_size))
            return sorted(parts, key=lambda p: p.number)

        return await asyncio.to_thread(listing)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[StoredPart], sha256: str
    ) -> ObjectInfo:
        """Joins the part files into the object, hashing them: a result that does not match
        `sha256` is refused (FailedPrecondition) and the parts are kept to be sent again."""
        self._checked_key(key)

        def assemble() -> ObjectInfo:
            folder = self._upload_folder(key, upload_id)
            path = self._resolve(key)
            digest = hashlib.sha256()

            def write(out: BinaryIO) -> int:
                total = 0
                for part in parts:
                    try:
                        src = (folder / f"part-{part.number:05d}").open("rb")
                    except FileNotFoundError:
                        raise FailedPrecondition(
                            f"part {part.number} of {key!r} is missing; send it again"
                        ) from None
                    with src:
                        total += copy_stream(src, Hashing(out, digest))
                return total

            def publish_hash() -> None:
                if digest.hexdigest() != sha256:
                    raise FailedPrecondition(
                        f"the parts of {key!r} hash to sha256 {digest.hexdigest()}, not the "
                        f"{sha256} declared; send the parts that differ again"
                    )
                write_sidecar(path, sha256)

            if not folder.is_dir():
                raise ObjectNotFound(key, what="upload of")
            try:
                size = write_atomic(path, write, durable=True, before_publish=publish_hash)
            except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
                raise _collision(key) from exc
            shutil.rmtree(folder, ignore_errors=True)
            return ObjectInfo(key, size, sha256)

        return await asyncio.to_thread(assemble)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        self._checked_key(key)
        if not _UPLOAD_ID.match(upload_id):
            return
        await asyncio.to_thread(
            shutil.rmtree, self._multipart_folder(upload_id), ignore_errors=True
        )

    async def list_multipart(self, prefix: str) -> list[PendingMultipart]:
        checked_prefix(prefix)

        def listing() -> list[PendingMultipart]:
            pending: list[PendingMultipart] = []
            try:
                folders = list(os.scandir(self.root / MULTIPART_DIR))
            except FileNotFoundError:
                return []
            for folder in folders:
                if not _UPLOAD_ID.match(folder.name):
                    continue
                marker = Path(folder.path) / "key"
                try:
                    key = marker.read_text("utf-8")
                    started = marker.stat().st_mtime
                except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
                    continue
                if key.startswith(prefix):
                    pending.append(PendingMultipart(key, folder.name, started))
            return pending

        return await asyncio.to_thread(listing)

    def _multipart_folder(self, upload_id: str) -> Path:
        return self.root / MULTIPART_DIR / upload_id

    def _upload_folder(self, key: str, upload_id: str) -> Path:
        """The folder of upload `upload_id`, which must be creating `key`."""
        if not _UPLOAD_ID.match(upload_id):
            raise ObjectNotFound(key, what="upload of")
        folder = self._multipart_folder(upload_id)
        try:
            owner = (folder / "key").read_text("utf-8")
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key, what="upload of") from None
        if owner != key:
            raise ObjectNotFound(key, what="upload of")
        return folder


def _collision(key: str) -> InvalidArgument:
    return InvalidArgument(
        [
            FieldViolation(
                "key", f"{key!r} collides with an existing object or folder in local storage"
            )
        ]
    )
