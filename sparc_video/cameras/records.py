"""Camera and recording records in Redis, under the service's key prefix (names in keys.py).

A camera is one JSON record (its secrets an encrypted token, see credentials.py) and an entry in
the id-ordered index of cameras. A recording is one JSON record, an entry in its camera's index
and a claim on its storage object. The camera index holds `START_NS:END_NS:ID`, zero-padded,
so listing by start time and finding the recordings that overlap a time range are lexicographic
range reads; the camera's longest recording bounds how far before a range an overlapping
recording can start. Writes that must agree (a recording and its camera, a camera deleted while
recordings are added) run in WATCH/MULTI/EXEC transactions.
"""

from __future__ import annotations

import base64
import enum
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from sparc_video.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from sparc_video.core.keys import Keys
from sparc_video.core.transactions import watched
from sparc_video.exports.models import ExportError
from sparc_video.media.probe import StreamInfo

# Digits of a zero-padded nanosecond time in an index entry: enough until the year 5138.
_NS_DIGITS = 20
_BATCH = 200


class CameraNotFound(NotFound):
    reason = "CAMERA_NOT_FOUND"


class RecordingNotFound(NotFound):
    reason = "RECORDING_NOT_FOUND"


class CameraHasRecordings(FailedPrecondition):
    reason = "CAMERA_HAS_RECORDINGS"


class CameraStatus(enum.StrEnum):
    UNKNOWN = "UNKNOWN"
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


@dataclass
class CameraRecord:
    id: str
    # The public form of the URL: no user information, secret query values "***".
    stream_url: str
    display_name: str = ""
    site: str = ""
    location: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    # Fernet token of the camera's StreamSecrets; "" when it has none.
    secrets: str = ""
    # Whether the secrets hold a log-in, so responses show `***@` without decrypting.
    has_userinfo: bool = False
    status: CameraStatus = CameraStatus.UNKNOWN
    last_seen_time: float | None = None
    last_probe_time: float | None = None
    stream: StreamInfo | None = None
    last_error: ExportError | None = None
    create_time: float = 0.0
    update_time: float = 0.0

    @property
    def name(self) -> str:
        return f"cameras/{self.id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> CameraRecord:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        values["status"] = CameraStatus(data.get("status", CameraStatus.UNKNOWN))
        values["stream"] = StreamInfo(**data["stream"]) if data.get("stream") else None
        values["last_error"] = ExportError(**data["last_error"]) if data.get("last_error") else None
        return cls(**values)


@dataclass
class RecordingRecord:
    id: str
    camera_id: str
    object_key: str
    # Capture time of the first frame and the duration, in integer nanoseconds: exact.
    start_ns: int
    duration_ns: int
    stream: StreamInfo
    frame_count: int
    size_bytes: int
    sha256: str
    create_time: float = 0.0

    @property
    def name(self) -> str:
        return f"cameras/{self.camera_id}/recordings/{self.id}"

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

    @property
    def index_entry(self) -> str:
        return f"{self.start_ns:0{_NS_DIGITS}d}:{self.end_ns:0{_NS_DIGITS}d}:{self.id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> RecordingRecord:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        values["stream"] = StreamInfo(**data["stream"])
        return cls(**values)


@dataclass(frozen=True)
class TimeRange:
    """Recordings ending after `start_ns` and starting before `end_ns`; None: unbounded."""

    start_ns: int | None = None
    end_ns: int | None = None


class DeletionGuard(Protocol):
    """Refuses to delete a recording that something still reads.

    Exports hold the recordings they read (`exports.holds`); the guard is handed in by the
    wiring (`app.py`) so the camera catalogue does not depend on the exports that use it.
    """

    async def begin_delete(self, recording_id: str, recording_name: str) -> None: ...

    async def end_delete(self, recording_id: str, *, deleted: bool) -> None: ...


class CameraStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, holds: DeletionGuard) -> None:
        self._redis = redis
        self.keys = keys
        self.holds = holds

    # Cameras

    async def create_camera(self, record: CameraRecord) -> CameraRecord:
        record.create_time = record.update_time = time.time()
        key = self.keys.camera(record.id)

        async def create(pipe: Pipeline) -> CameraRecord:
            if await pipe.exists(key):
                raise AlreadyExists(f"camera {record.name} exists already")
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(key, record.to_json())
            pipe.zadd(self.keys.all_cameras, {record.id: 0})
            return record

        return await watched(self._redis, [key], create)

    async def get_camera(self, camera_id: str) -> CameraRecord:
        raw = await self._redis.get(self.keys.camera(camera_id))
        if raw is None:
            raise CameraNotFound(f"camera cameras/{camera_id} does not exist")
        return CameraRecord.from_json(raw)

    async def update_camera(
        self, camera_id: str, change: Callable[[CameraRecord], bool]
    ) -> CameraRecord:
        """Apply `change` (mutating the record; False to write nothing) atomically, re-running
        it when the record changed meanwhile."""
        key = self.keys.camera(camera_id)

        async def update(pipe: Pipeline) -> CameraRecord:
            raw = await pipe.get(key)
            if raw is None:
                raise CameraNotFound(f"camera cameras/{camera_id} does not exist")
            record = CameraRecord.from_json(raw)
            if not change(record):
                return record
            record.update_time = time.time()
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(key, record.to_json())
            return record

        return await watched(self._redis, [key], update)

    async def page_cameras(
        self,
        *,
        page_size: int,
        page_token: str,
        scope: str,
        keep: Callable[[CameraRecord], bool],
    ) -> tuple[list[CameraRecord], str]:
        """Cameras in id order that `keep` accepts. The token is bound to `scope` (the filter)."""
        after = _decode_token(page_token, scope) if page_token else None
        found: list[CameraRecord] = []
        lower = f"({after}" if after else "-"
        while len(found) <= page_size:
            ids = await self._redis.zrangebylex(self.keys.all_cameras, lower, "+", 0, _BATCH)
            if not ids:
                break
            raws = await self._redis.mget([self.keys.camera(i.decode()) for i in ids])
            for raw in raws:
                # None: deleted between the two reads.
                if raw is not None and keep(record := CameraRecord.from_json(raw)):
                    found.append(record)
            lower = f"({ids[-1].decode()}"
        page = found[:page_size]
        next_token = _encode_token(page[-1].id, scope) if len(found) > page_size else ""
        return page, next_token

    async def delete_camera(
        self, camera_id: str, recordings: list[RecordingRecord], *, force: bool
    ) -> None:
        """Delete the camera and these recordings, which must be all it has.

        When they are not: CameraHasRecordings, or with `force` RecordingsChanged, so the
        caller can delete the objects of the new ones first and try again.
        """
        key = self.keys.camera(camera_id)
        index = self.keys.camera_recordings(camera_id)

        async def delete(pipe: Pipeline) -> None:
            if not await pipe.exists(key):
                raise CameraNotFound(f"camera cameras/{camera_id} does not exist")
            entries = {e.decode() for e in await pipe.zrange(index, 0, -1)}
            if entries != {r.index_entry for r in recordings}:
                if not force:
                    raise CameraHasRecordings(
                        f"camera cameras/{camera_id} has {len(entries)} recording(s); "
                        "delete them first, or pass force to delete them with it"
                    )
                raise RecordingsChanged()
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.delete(key, index, self.keys.camera_longest_recording(camera_id))
            pipe.zrem(self.keys.all_cameras, camera_id)
            for recording in recordings:
                pipe.delete(
                    self.keys.recording(recording.id),
                    self.keys.recording_object(recording.object_key),
                )

        await watched(self._redis, [key, index], delete)

    # Recordings

    async def create_recording(self, record: RecordingRecord) -> RecordingRecord:
        record.create_time = time.time()
        camera = self.keys.camera(record.camera_id)
        claim = self.keys.recording_object(record.object_key)
        longest = self.keys.camera_longest_recording(record.camera_id)

        async def create(pipe: Pipeline) -> RecordingRecord:
            if not await pipe.exists(camera):
                raise CameraNotFound(f"camera cameras/{record.camera_id} does not exist")
            owner = await pipe.get(claim)
            if owner is not None:
                await pipe.reset()  # type: ignore[no-untyped-call]
                raise await self._registered(record.object_key, owner.decode())
            current = int(await pipe.get(longest) or 0)
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(self.keys.recording(record.id), record.to_json())
            pipe.set(claim, record.id)
            pipe.zadd(self.keys.camera_recordings(record.camera_id), {record.index_entry: 0})
            if record.duration_ns > current:
                pipe.set(longest, record.duration_ns)
            return record

        return await watched(self._redis, [camera, claim, longest], create)

    async def recording_for_object(self, object_key: str) -> str | None:
        owner = await self._redis.get(self.keys.recording_object(object_key))
        return owner.decode() if owner is not None else None

    async def already_registered(self, object_key: str) -> AlreadyExists | None:
        owner = await self.recording_for_object(object_key)
        return await self._registered(object_key, owner) if owner else None

    async def _registered(self, object_key: str, recording_id: str) -> AlreadyExists:
        try:
            name = (await self.get_recording(recording_id)).name
        except RecordingNotFound:
            name = f"recording {recording_id}"
        return AlreadyExists(f"object {object_key!r} is registered already, as {name}")

    async def get_recording(self, recording_id: str) -> RecordingRecord:
        raw = await self._redis.get(self.keys.recording(recording_id))
        if raw is None:
            raise RecordingNotFound(f"recording {recording_id} does not exist")
        return RecordingRecord.from_json(raw)

    async def page_recordings(
        self,
        camera_id: str,
        *,
        window: TimeRange,
        page_size: int,
        page_token: str,
    ) -> tuple[list[RecordingRecord], str]:
        """Recordings overlapping `window`, by start time; the token is bound to the query."""
        scope = f"{camera_id}:{window.start_ns}:{window.end_ns}"
        after = _decode_token(page_token, scope) if page_token else None
        index = self.keys.camera_recordings(camera_id)
        if after is not None:
            lower = f"({after}"
        elif window.start_ns is not None:
            longest = int(await self._redis.get(self.keys.camera_longest_recording(camera_id)) or 0)
            lower = f"[{max(0, window.start_ns - longest):0{_NS_DIGITS}d}"
        else:
            lower = "-"
        # Entries sort by start time first: "(START" excludes every entry starting at or after
        # the end of the window.
        upper = f"({window.end_ns:0{_NS_DIGITS}d}" if window.end_ns is not None else "+"
        entries: list[str] = []
        more = False
        while not more:
            batch = [
                e.decode() for e in await self._redis.zrangebylex(index, lower, upper, 0, _BATCH)
            ]
            for entry in batch:
                if window.start_ns is not None and int(entry.split(":")[1]) <= window.start_ns:
                    continue
                if len(entries) == page_size:
                    more = True
                    break
                entries.append(entry)
            if len(batch) < _BATCH:
                break
            lower = f"({batch[-1]}"
        ids = [entry.rsplit(":", 1)[1] for entry in entries]
        raws = await self._redis.mget([self.keys.recording(i) for i in ids]) if ids else []
        records = [RecordingRecord.from_json(raw) for raw in raws if raw is not None]
        next_token = _encode_token(entries[-1], scope) if more and entries else ""
        return records, next_token

    async def all_recordings(self, camera_id: str) -> list[RecordingRecord]:
        entries = await self._redis.zrange(self.keys.camera_recordings(camera_id), 0, -1)
        ids = [e.decode().rsplit(":", 1)[1] for e in entries]
        records: list[RecordingRecord] = []
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            raws = await self._redis.mget([self.keys.recording(i) for i in batch])
            records += [RecordingRecord.from_json(raw) for raw in raws if raw is not None]
        return records

    async def delete_recording(self, record: RecordingRecord) -> None:
        claim = self.keys.recording_object(record.object_key)

        async def delete(pipe: Pipeline) -> None:
            owner = await pipe.get(claim)
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.delete(self.keys.recording(record.id))
            pipe.zrem(self.keys.camera_recordings(record.camera_id), record.index_entry)
            if owner is not None and owner.decode() == record.id:
                pipe.delete(claim)

        await watched(self._redis, [claim], delete)


class RecordingsChanged(Exception):
    """A camera's recordings changed while it was being deleted with them."""


# Page tokens are opaque to clients (AIP-158) but bound to the query they page through, so a
# token cannot be replayed against another filter, camera or time range.
def _encode_token(last: str, scope: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([last, scope]).encode()).decode()


def _decode_token(token: str, scope: str) -> str:
    try:
        last, token_scope = json.loads(base64.urlsafe_b64decode(token.encode()))
        if token_scope != scope or not isinstance(last, str) or not last:
            raise ValueError
        return last
    except (ValueError, TypeError):
        raise InvalidArgument(
            [FieldViolation("page_token", "not a token from a previous call with the same query")]
        ) from None
