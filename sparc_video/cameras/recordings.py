"""What CameraService does with recordings, free of protobuf and gRPC: one method per RPC.

A recording registers a video object already in storage (uploaded through
CreateRecordingUploadUrl or written by a recorder) as footage of a camera from a capture time
on. Registration reads the whole object in a media child (`media_probe.py`): its exact
duration from the video packets, codecs, size and SHA-256, so later exports can cut by
wall-clock time and prove what they used.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sparc_video.cameras.records import (
    CameraStore,
    RecordingNotFound,
    RecordingRecord,
    TimeRange,
)
from sparc_video.core.errors import (
    FieldViolation,
    InvalidArgument,
    MediaError,
    MediaLimitExceeded,
    ObjectNotFound,
    Unavailable,
)
from sparc_video.core.ids import new_id
from sparc_video.core.settings import Settings
from sparc_video.media.probe import FileRead, MediaProber
from sparc_video.security import confinement
from sparc_video.storage import LocalStorage, ManagedStorage

# Reading a recording: a minute, plus time at a conservative 25 MB/s for hashing and demuxing.
READ_BASE_S = 60.0
READ_BYTES_PER_S = 25 * 1000**2
# Upload content types and the extension their object keys get.
UPLOAD_TYPES = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/x-matroska": "mkv",
    "video/webm": "webm",
    "video/mp2t": "ts",
    "video/x-msvideo": "avi",
}


@dataclass(frozen=True)
class UploadLink:
    object_key: str
    url: str
    headers: dict[str, str]
    expire_time: float


class Recordings:
    def __init__(
        self,
        settings: Settings,
        store: CameraStore,
        storage: ManagedStorage,
        prober: MediaProber,
    ) -> None:
        self._settings = settings
        self._store = store
        self._storage = storage
        self._prober = prober

    async def create(
        self, camera_id: str, object_key: str, start_ns: int, principal: str
    ) -> RecordingRecord:
        owner = object_key.split("/")[1] if object_key.startswith("cameras/") else camera_id
        if owner != camera_id:
            # Deleting camera `owner` deletes everything under its folder.
            raise _bad_object(
                f"{object_key!r} is in the folder of camera cameras/{owner}; register it there"
            )
        confinement.check_source_keys(
            [("recording.object_key", object_key)], self._settings, camera_id=camera_id
        )
        await self._store.get_camera(camera_id)
        # Checked again when the record is written; this saves reading a large object twice.
        if (registered := await self._store.already_registered(object_key)) is not None:
            raise registered
        try:
            info = await self._storage.stat(object_key)
        except ObjectNotFound:
            raise ObjectNotFound(object_key, what="recording object") from None
        if info.size_bytes > self._settings.max_upload_size:
            raise _bad_object(
                f"{object_key!r} is {info.size_bytes} bytes, above MAX_VIDEO_UPLOAD_SIZE "
                f"({self._settings.max_upload_size} bytes)"
            )
        if info.size_bytes == 0:
            raise _bad_object(f"{object_key!r} is empty")
        timeout_s = READ_BASE_S + info.size_bytes / READ_BYTES_PER_S
        async with self._readable(object_key) as path:
            try:
                read = await self._prober.read_file(path, timeout_s)
            except MediaError as exc:
                raise MediaError(f"{object_key!r}: {exc.message}", reason=exc.reason) from None
        if read.size_bytes != info.size_bytes:
            raise Unavailable(f"{object_key!r} changed while it was read; try again")
        self._check_limits(object_key, read)
        record = RecordingRecord(
            id=new_id(),
            camera_id=camera_id,
            object_key=object_key,
            start_ns=start_ns,
            duration_ns=round(read.duration_s * 1e9),
            stream=read.info,
            frame_count=read.frame_count,
            size_bytes=read.size_bytes,
            sha256=read.sha256,
        )
        return await self._store.create_recording(record, principal)

    def _check_limits(self, object_key: str, read: FileRead) -> None:
        """The media limits exports apply, so a registered recording can be exported."""
        pixels = read.info.width * read.info.height
        limit = self._settings.max_frame_pixels
        if pixels > limit:
            raise MediaLimitExceeded(
                f"{object_key!r} is {read.info.width}x{read.info.height} ({pixels:,} pixels per "
                f"frame), above MAX_FRAME_PIXELS ({limit:,})",
                reason="FRAME_TOO_LARGE",
            )
        longest = self._settings.max_source_duration_s
        if longest and read.duration_s > longest:
            raise MediaLimitExceeded(
                f"{object_key!r} lasts {read.duration_s:.1f} s, above MAX_SOURCE_DURATION "
                f"({longest:g} s)",
                reason="SOURCE_TOO_LONG",
            )

    async def get(self, camera_id: str, recording_id: str) -> RecordingRecord:
        name = f"cameras/{camera_id}/recordings/{recording_id}"
        try:
            record = await self._store.get_recording(recording_id)
        except RecordingNotFound:
            record = None
        # One of another camera does not exist under this name either.
        if record is None or record.camera_id != camera_id:
            await self._store.get_camera(camera_id)
            raise RecordingNotFound(f"recording {name} does not exist")
        return record

    async def page(
        self, camera_id: str, window: TimeRange, page_size: int, page_token: str
    ) -> tuple[list[RecordingRecord], str]:
        await self._store.get_camera(camera_id)
        return await self._store.page_recordings(
            camera_id, window=window, page_size=page_size, page_token=page_token
        )

    async def delete(self, camera_id: str, recording_id: str, principal: str) -> None:
        record = await self.get(camera_id, recording_id)
        # Refused while an unfinished export reads it; from here on no new export can.
        await self._store.holds.begin_delete(record.id, record.name)
        deleted = False
        try:
            # Object first: if that fails, the record still points at it and the call can be
            # repeated; the other order could leave an object no record knows about.
            await self._storage.delete(record.object_key)
            await self._store.delete_recording(record, principal)
            deleted = True
        finally:
            await self._store.holds.end_delete(record.id, deleted=deleted)

    async def upload_link(
        self, camera_id: str, size_bytes: int, content_type: str, ttl_s: int
    ) -> UploadLink:
        violations: list[FieldViolation] = []
        limit = self._settings.max_upload_size
        if not 0 < size_bytes <= limit:
            violations.append(
                FieldViolation(
                    "size_bytes",
                    f"must be between 1 and MAX_VIDEO_UPLOAD_SIZE ({limit} bytes), "
                    f"not {size_bytes}",
                )
            )
        content_type = content_type.strip().lower() or "video/mp4"
        if content_type not in UPLOAD_TYPES:
            violations.append(
                FieldViolation(
                    "content_type",
                    f"{content_type!r} is not one of {', '.join(UPLOAD_TYPES)}",
                )
            )
        cap = self._settings.download_url_max_ttl_s
        if not 0 <= ttl_s <= cap:
            violations.append(
                FieldViolation(
                    "ttl",
                    f"{ttl_s} s is above DOWNLOAD_URL_MAX_TTL ({cap} s); ask for {cap} or less",
                )
            )
        if violations:
            raise InvalidArgument(violations)
        await self._store.get_camera(camera_id)
        ttl_s = ttl_s or self._settings.download_url_ttl_s
        key = f"cameras/{camera_id}/uploads/{new_id()}.{UPLOAD_TYPES[content_type]}"
        target = await self._storage.upload_url(key, ttl_s, size_bytes, content_type)
        return UploadLink(key, target.url, target.headers, target.expire_time)

    @contextlib.asynccontextmanager
    async def _readable(self, object_key: str) -> AsyncIterator[Path]:
        """A local file holding the object: the file itself in local storage, else a copy
        in VIDEO_TEMP_DIR deleted afterwards."""
        if isinstance(self._storage, LocalStorage):
            yield await self._storage.local_path(object_key)
            return
        folder = self._settings.temp_dir / "recordings" / uuid.uuid4().hex
        try:
            path = folder / "object"
            await self._storage.download_file(
                object_key, path, max_bytes=self._settings.max_upload_size
            )
            yield path
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)


def _bad_object(description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation("recording.object_key", description)])
