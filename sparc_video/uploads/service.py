"""What the UploadService does, free of protobuf and gRPC: one method per RPC, plus the claim
an export makes on an uploaded source and the retention sweep.

An upload is a multipart upload in storage (`MultipartStorage`): the client PUTs each part to
its own expiring URL, which the storage binds to the part's exact size, so nobody can store
more than was declared (and declared within MAX_VIDEO_UPLOAD_SIZE). The object's key lies
under a prefix of the caller, `uploads/{principal hash}/{upload id}/{filename}`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time

from sparc_video.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ObjectNotFound,
    SparcVideoError,
)
from sparc_video.core.ids import new_id
from sparc_video.core.settings import Settings
from sparc_video.security.auth import Principal
from sparc_video.storage import ManagedStorage, MultipartStorage, StoredPart
from sparc_video.storage.base import validate_key
from sparc_video.uploads.models import UploadPart, UploadRecord, UploadState, UploadView
from sparc_video.uploads.records import UploadNotFound, UploadStore

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# S3's least part size (but for the last part), and its most parts per upload.
PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
# URLs for at most this many missing parts per response (keeps a 5 GB upload's response
# small); GetUpload gives the next ones.
MAX_PART_URLS = 100
UPLOAD_PREFIX = "uploads/"
SWEEP_BATCH = 100
# How often the sweep also looks in storage for multipart uploads with no record (a server
# that died between starting one and storing its record, or records lost with Redis).
ORPHAN_SCAN_INTERVAL_S = 300.0
MAX_FILENAME_BYTES = 255
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
_ID = re.compile(r"^[0-9a-f]{20}$")


def owner_segment(principal_id: str) -> str:
    """The caller's folder under `uploads/`: a hash, as principal ids may hold anything."""
    return hashlib.sha256(principal_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def valid_upload_id(upload_id: str) -> bool:
    return bool(_ID.match(upload_id))


def _visible(record: UploadRecord, caller: Principal) -> UploadRecord:
    """Another principal's upload is reported exactly as a missing one."""
    if not caller.owns(record.owner):
        raise UploadNotFound(f"upload {record.id!r} does not exist")
    return record


class Uploads:
    def __init__(
        self,
        settings: Settings,
        store: UploadStore,
        storage: ManagedStorage,
        *,
        part_size: int = PART_SIZE,
    ) -> None:
        self._settings = settings
        self._store = store
        self._storage = storage
        self._part_size = part_size
        self._next_orphan_scan = 0.0

    @property
    def _multipart(self) -> MultipartStorage:
        if not isinstance(self._storage, MultipartStorage):
            raise FailedPrecondition("this storage backend does not take uploads in parts")
        return self._storage

    async def create(
        self, caller: Principal, filename: str, size_bytes: int, sha256: str, content_type: str
    ) -> UploadView:
        violations: list[FieldViolation] = []
        limit = self._settings.max_upload_size
        if not 1 <= size_bytes <= limit:
            violations.append(
                FieldViolation(
                    "size_bytes",
                    f"must be between 1 and MAX_VIDEO_UPLOAD_SIZE ({limit} bytes), "
                    f"not {size_bytes}",
                )
            )
        sha256 = sha256.strip().lower()
        if not _SHA256.match(sha256):
            violations.append(
                FieldViolation("sha256", "must be the file's SHA-256 as 64 hex digits")
            )
        content_type = content_type.strip().lower() or "video/mp4"
        if not _CONTENT_TYPE.match(content_type):
            violations.append(
                FieldViolation("content_type", f"{content_type[:100]!r} is not a media type")
            )
        if (problem := _filename_problem(filename)) is not None:
            violations.append(FieldViolation("filename", problem))
        upload_id = new_id()
        key = f"{UPLOAD_PREFIX}{owner_segment(caller.id)}/{upload_id}/{filename}"
        if not violations:
            try:
                validate_key(key)
            except ValueError as exc:
                violations.append(FieldViolation("filename", f"makes an invalid key: {exc}"))
        if violations:
            raise InvalidArgument(violations)
        part_size = max(self._part_size, -(-size_bytes // MAX_PARTS))
        storage_id = await self._multipart.start_multipart(key, content_type, sha256)
        now = time.time()
        record = UploadRecord(
            id=upload_id,
            owner=caller.id,
            filename=filename,
            size_bytes=size_bytes,
            sha256=sha256,
            content_type=content_type,
            object_key=key,
            storage_upload_id=storage_id,
            part_size=part_size,
            create_time=now,
            expire_time=now + self._settings.upload_retention_s,
        )
        await self._store.create(record)
        return UploadView(record, [], await self._urls(record, set()))

    async def get(self, caller: Principal, upload_id: str) -> UploadView:
        record = _visible(await self._store.get(upload_id), caller)
        if record.state != UploadState.UPLOADING:
            return UploadView(record)
        try:
            stored = await self._multipart.list_parts(record.object_key, record.storage_upload_id)
        except ObjectNotFound:
            # Completed or cancelled meanwhile.
            return UploadView(await self._store.get(upload_id))
        good = {p.number for p in stored if p.size_bytes == record.part_size_of(p.number)}
        return UploadView(record, stored, await self._urls(record, good))

    async def complete(self, caller: Principal, upload_id: str) -> UploadView:
        _visible(await self._store.get(upload_id), caller)
        async with self._store.locked(upload_id):
            record = await self._store.get(upload_id)
            if record.state == UploadState.COMPLETED:
                return UploadView(record)
            if record.state == UploadState.CANCELLED:
                raise FailedPrecondition(f"upload {upload_id!r} was cancelled")
            key = record.object_key
            try:
                stored = await self._multipart.list_parts(key, record.storage_upload_id)
            except ObjectNotFound:
                # A completion that stored the object but died before saving the record.
                info = await self._storage.stat(key)
                if info.size_bytes != record.size_bytes:
                    raise FailedPrecondition(
                        f"upload {upload_id!r} is gone from storage; create a new one"
                    ) from None
                return UploadView(await self._completed(record))
            parts = self._check_parts(record, stored)
            info = await self._multipart.complete_multipart(
                key, record.storage_upload_id, parts, record.sha256
            )
            stat = await self._storage.stat(key)
            if stat.size_bytes != record.size_bytes or info.size_bytes != record.size_bytes:
                await self._storage.delete(key)
                raise FailedPrecondition(
                    f"the object assembled is {stat.size_bytes} bytes, not the "
                    f"{record.size_bytes} declared; create a new upload"
                )
            return UploadView(await self._completed(record))

    async def cancel(self, caller: Principal, upload_id: str) -> UploadView:
        _visible(await self._store.get(upload_id), caller)
        async with self._store.locked(upload_id):
            record = await self._store.get(upload_id)
            if record.state == UploadState.CANCELLED:
                return UploadView(record)
            if record.used:
                raise FailedPrecondition(
                    f"upload {upload_id!r} is the source of an export; it cannot be cancelled"
                )
            await self._remove_data(record)
            record.state = UploadState.CANCELLED
            await self._store.unschedule(upload_id)
            # Kept a while so the client sees CANCELLED, then gone.
            await self._store.save(record, keep_s=self._settings.upload_retention_s)
            return UploadView(record)

    async def claim_source(self, caller: Principal, object_key: str) -> None:
        """Called by CreateExport for every key it reads (object source, watermark images): a
        key under `uploads/` must be the object of a completed upload of the caller's; it is
        then marked used, and retention keeps it. Other keys are left alone. ObjectNotFound
        otherwise, as for a missing object, so callers cannot learn of others' uploads."""
        if not object_key.startswith(UPLOAD_PREFIX):
            return
        segments = object_key.split("/")
        missing = ObjectNotFound(object_key, what="source video")
        if len(segments) != 4 or not valid_upload_id(segments[2]):
            raise missing
        upload_id = segments[2]
        try:
            record = await self._store.get(upload_id)
        except UploadNotFound:
            raise missing from None
        if not caller.owns(record.owner) or record.object_key != object_key:
            raise missing
        if record.used:
            return
        async with self._store.locked(upload_id):
            try:
                record = await self._store.get(upload_id)
            except UploadNotFound:
                raise missing from None
            if record.state != UploadState.COMPLETED:
                raise missing
            if not record.used:
                record.used = True
                await self._store.unschedule(upload_id)
                await self._store.save(record)

    async def sweep(self, now: float | None = None, *, orphans: bool | None = None) -> int:
        """Remove the uploads whose retention ended, unless an export used them: abort the
        multipart upload (its parts) or delete the completed object, and the record.

        `orphans`: also abort multipart uploads under `uploads/` older than the retention that
        no record knows; None: every ORPHAN_SCAN_INTERVAL_S."""
        now = now or time.time()
        removed = 0
        if orphans is None:
            orphans = time.monotonic() >= self._next_orphan_scan
        if orphans:
            self._next_orphan_scan = time.monotonic() + ORPHAN_SCAN_INTERVAL_S
            try:
                removed += await self._sweep_orphans(now)
            except SparcVideoError as exc:  # storage down: the next scan
                log.warning("could not look for orphaned uploads: %s", exc)
        for upload_id in await self._store.due(now, SWEEP_BATCH):
            try:
                async with self._store.locked(upload_id, wait_s=0.1):
                    try:
                        record = await self._store.get(upload_id)
                    except UploadNotFound:
                        await self._store.delete(upload_id)
                        continue
                    if record.used:
                        await self._store.unschedule(upload_id)
                        continue
                    await self._remove_data(record)
                    await self._store.delete(upload_id)
                    removed += 1
                    log.info("removed upload %s (%s), unused", upload_id, record.state.value)
            except SparcVideoError as exc:  # busy, or storage down: next round
                log.warning("could not remove upload %s yet: %s", upload_id, exc)
        return removed

    async def _sweep_orphans(self, now: float) -> int:
        if not isinstance(self._storage, MultipartStorage):
            return 0
        cutoff = now - self._settings.upload_retention_s
        aborted = 0
        for pending in await self._storage.list_multipart(UPLOAD_PREFIX):
            if pending.start_time > cutoff:
                continue
            segments = pending.key.split("/")
            upload_id = segments[2] if len(segments) == 4 else ""
            try:
                record = await self._store.get(upload_id) if valid_upload_id(upload_id) else None
            except UploadNotFound:
                record = None
            if record is not None and record.storage_upload_id == pending.upload_id:
                continue  # the record-based sweep owns it
            await self._storage.abort_multipart(pending.key, pending.upload_id)
            aborted += 1
            log.info("aborted multipart upload of %s: no upload record", pending.key)
        return aborted

    async def _remove_data(self, record: UploadRecord) -> None:
        if record.state == UploadState.UPLOADING:
            await self._multipart.abort_multipart(record.object_key, record.storage_upload_id)
        elif record.state == UploadState.COMPLETED:
            await self._storage.delete(record.object_key)

    async def _completed(self, record: UploadRecord) -> UploadRecord:
        record.state = UploadState.COMPLETED
        record.complete_time = time.time()
        await self._store.save(record)
        return record

    def _check_parts(self, record: UploadRecord, stored: list[StoredPart]) -> list[StoredPart]:
        by_number = {p.number: p for p in stored}
        missing = [
            n
            for n in range(1, record.part_count + 1)
            if n not in by_number or by_number[n].size_bytes != record.part_size_of(n)
        ]
        if missing:
            shown = ", ".join(str(n) for n in missing[:20]) + (", ..." if len(missing) > 20 else "")
            raise FailedPrecondition(
                f"{len(missing)} of {record.part_count} parts are missing or incomplete "
                f"({shown}); GetUpload gives their URLs"
            )
        return [by_number[n] for n in range(1, record.part_count + 1)]

    async def _urls(self, record: UploadRecord, present: set[int]) -> list[UploadPart]:
        ttl_s = self._settings.download_url_ttl_s
        parts: list[UploadPart] = []
        for number in range(1, record.part_count + 1):
            if number in present:
                continue
            size = record.part_size_of(number)
            target = await self._multipart.part_upload_url(
                record.object_key, record.storage_upload_id, number, size, ttl_s
            )
            parts.append(UploadPart(number, size, target))
            if len(parts) >= MAX_PART_URLS:
                break
        return parts


def _filename_problem(filename: str) -> str | None:
    if not filename:
        return "must not be empty"
    try:
        size = len(filename.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8 text"
    if size > MAX_FILENAME_BYTES:
        return f"must be at most {MAX_FILENAME_BYTES} bytes of UTF-8 (is {size})"
    if "/" in filename or "\\" in filename:
        return "must be a file name, without '/' or '\\'"
    if filename.startswith("."):
        return "must not start with '.'"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in filename):
        return "must not contain control characters"
    return None
