"""Cameras and recordings in PostgreSQL, the system of record (DESIGN.md, "Where records
live"); Redis holds none of them, so losing it loses no camera, recording or hold.

A camera is a `cameras` row (the CameraRecord as JSONB, its secrets an encrypted token, see
credentials.py); a recording a `recordings` row, times in integer nanoseconds, its storage key
unique. Recordings overlapping [a, b) (`start_ns < b AND end_ns > a`) are read through the
(camera_id, start_ns) index from `a - longest` on, `longest` being the camera's longest
recording (raised in the insert's transaction): the scan touches only the range's surroundings.
A recording's insert locks its camera row (FOR KEY SHARE, by the foreign key) and a camera's
deletion takes it FOR UPDATE first: one waits for the other, and the deletion then sees the new
recording. Every change commits with its audit entries in the same transaction.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import asyncpg

from sparc_video.audit import Action, AuditEntry, trail
from sparc_video.audit.trail import append
from sparc_video.cameras.audit_entries import recording_entry
from sparc_video.cameras.page_tokens import decode_token, encode_token, position
from sparc_video.core.errors import (
    AlreadyExists,
    ErrorRecord,
    FailedPrecondition,
    NotFound,
)
from sparc_video.database.pool import Database
from sparc_video.media.probe import StreamInfo

# Cameras read per query while a page is filled by a filter evaluated here.
_BATCH = 200


class CameraNotFound(NotFound):
    reason = "CAMERA_NOT_FOUND"


class RecordingNotFound(NotFound):
    reason = "RECORDING_NOT_FOUND"


class CameraHasRecordings(FailedPrecondition):
    reason = "CAMERA_HAS_RECORDINGS"


class RecordingInUse(FailedPrecondition):
    """A hold (an unfinished export, a case) keeps the recording: it cannot be deleted."""

    reason = "RECORDING_IN_USE"


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
    last_error: ErrorRecord | None = None
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
        values["last_error"] = ErrorRecord(**data["last_error"]) if data.get("last_error") else None
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
    # Set by a recorder (sparc_video/recording): its id, and where the start time came from
    # ("rtcp": the camera's sender reports, "receive": the recorder's clock). "" when uploaded.
    recorder_id: str = ""
    clock_source: str = ""

    @property
    def name(self) -> str:
        return f"cameras/{self.camera_id}/recordings/{self.id}"

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

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


# A recording, its camera's bound and its audit entry in one statement: atomic by itself and
# one round trip (registration rate is what a recorder of many cameras needs). The bound is
# raised only when longer, so most inserts leave the camera row unlocked; a reader that sees
# the recording sees the bound that covers it.
INSERT_RECORDING = f"""
WITH bound AS (
    UPDATE cameras SET longest_recording_ns = $4::bigint - $3::bigint
    WHERE id = $2 AND longest_recording_ns < $4::bigint - $3::bigint
), audit AS (
    INSERT INTO audit_log ({trail.COLUMNS}) VALUES ($9, $10, $11, $12, $13::jsonb)
)
INSERT INTO recordings (id, camera_id, start_ns, end_ns, storage_key, sha256, record,
                        create_time)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, to_timestamp($8))
"""


def recording_row(record: RecordingRecord, principal: str) -> tuple[Any, ...]:
    """The arguments of INSERT_RECORDING."""
    return (
        record.id,
        record.camera_id,
        record.start_ns,
        record.end_ns,
        record.object_key,
        record.sha256,
        record.to_json(),
        record.create_time,
        *trail.row(recording_entry(principal, Action.RECORDING_CREATE, record)),
    )


class CameraStore:
    def __init__(self, database: Database, holds: DeletionGuard) -> None:
        self._database = database
        self.holds = holds

    # Cameras

    async def create_camera(self, record: CameraRecord, principal: str) -> CameraRecord:
        record.create_time = record.update_time = time.time()
        async with self._database.transaction() as connection:
            status = await connection.execute(
                "INSERT INTO cameras (id, display_name, record, create_time, update_time) "
                "VALUES ($1, $2, $3::jsonb, to_timestamp($4), to_timestamp($4)) "
                "ON CONFLICT (id) DO NOTHING",
                record.id,
                record.display_name,
                record.to_json(),
                record.create_time,
            )
            if status != "INSERT 0 1":
                raise AlreadyExists(f"camera {record.name} exists already")
            await append(
                connection,
                AuditEntry(
                    principal,
                    Action.CAMERA_CREATE,
                    record.name,
                    details={
                        "stream_url": record.stream_url,
                        "has_credentials": bool(record.secrets),
                    },
                ),
            )
        return record

    async def get_camera(self, camera_id: str) -> CameraRecord:
        raw = await self._database.fetchval("SELECT record FROM cameras WHERE id = $1", camera_id)
        if raw is None:
            raise CameraNotFound(f"camera cameras/{camera_id} does not exist")
        return CameraRecord.from_json(raw)

    async def update_camera(
        self,
        camera_id: str,
        change: Callable[[CameraRecord], bool],
        audit: Callable[[CameraRecord], Iterable[AuditEntry]] | None = None,
    ) -> CameraRecord:
        """Apply `change` (mutating the record; False to write nothing) to the row, locked
        until the write commits with the `audit` entries made from the changed record."""
        async with self._database.transaction() as connection:
            raw = await connection.fetchval(
                "SELECT record FROM cameras WHERE id = $1 FOR UPDATE", camera_id
            )
            if raw is None:
                raise CameraNotFound(f"camera cameras/{camera_id} does not exist")
            record = CameraRecord.from_json(raw)
            if not change(record):
                return record
            record.update_time = time.time()
            await connection.execute(
                "UPDATE cameras SET display_name = $2, record = $3::jsonb, "
                "update_time = to_timestamp($4) WHERE id = $1",
                camera_id,
                record.display_name,
                record.to_json(),
                record.update_time,
            )
            if audit is not None:
                await append(connection, *audit(record))
        return record

    async def page_cameras(
        self,
        *,
        page_size: int,
        page_token: str,
        scope: str,
        keep: Callable[[CameraRecord], bool],
    ) -> tuple[list[CameraRecord], str]:
        """Cameras in id order that `keep` accepts. The token is bound to `scope` (the filter)."""
        after = decode_token(page_token, scope) if page_token else ""
        found: list[CameraRecord] = []
        while len(found) <= page_size:
            rows = await self._database.fetch(
                "SELECT id, record FROM cameras WHERE id > $1 ORDER BY id LIMIT $2",
                after,
                _BATCH,
            )
            found += [r for r in (CameraRecord.from_json(row["record"]) for row in rows) if keep(r)]
            if len(rows) < _BATCH:
                break
            after = rows[-1]["id"]
        page = found[:page_size]
        next_token = encode_token(page[-1].id, scope) if len(found) > page_size else ""
        return page, next_token

    async def delete_camera(
        self, camera_id: str, recordings: list[RecordingRecord], *, force: bool, principal: str
    ) -> None:
        """Delete the camera and these recordings, which must be all it has.

        When they are not: CameraHasRecordings, or with `force` RecordingsChanged, so the
        caller can delete the objects of the new ones first and try again.
        """
        async with self._database.transaction() as connection:
            # Locked first: a recording inserted from now on waits for this transaction (its
            # foreign key check), then fails because the camera is gone.
            if (
                await connection.fetchval(
                    "SELECT 1 FROM cameras WHERE id = $1 FOR UPDATE", camera_id
                )
                is None
            ):
                raise CameraNotFound(f"camera cameras/{camera_id} does not exist")
            ids = {
                row["id"]
                for row in await connection.fetch(
                    "SELECT id FROM recordings WHERE camera_id = $1", camera_id
                )
            }
            if ids != {r.id for r in recordings}:
                if not force:
                    raise CameraHasRecordings(
                        f"camera cameras/{camera_id} has {len(ids)} recording(s); "
                        "delete them first, or pass force to delete them with it"
                    )
                raise RecordingsChanged()
            try:
                await connection.execute("DELETE FROM recordings WHERE camera_id = $1", camera_id)
            except asyncpg.ForeignKeyViolationError:
                raise RecordingInUse(
                    f"a recording of camera cameras/{camera_id} is held; try again once the "
                    "exports reading it end"
                ) from None
            await connection.execute("DELETE FROM cameras WHERE id = $1", camera_id)
            await append(
                connection,
                *(recording_entry(principal, Action.RECORDING_DELETE, r) for r in recordings),
                AuditEntry(
                    principal,
                    Action.CAMERA_DELETE,
                    f"cameras/{camera_id}",
                    details={"recordings": len(recordings)},
                ),
            )

    # Recordings

    async def create_recording(self, record: RecordingRecord, principal: str) -> RecordingRecord:
        record.create_time = time.time()
        try:
            await self._database.execute(INSERT_RECORDING, *recording_row(record, principal))
        except asyncpg.ForeignKeyViolationError:
            raise CameraNotFound(f"camera cameras/{record.camera_id} does not exist") from None
        except asyncpg.UniqueViolationError:
            owner = await self.recording_for_object(record.object_key)
            if owner is None:  # deleted meanwhile: the caller may simply try again
                raise
            raise await self._registered(record.object_key, owner) from None
        return record

    async def recording_for_object(self, object_key: str) -> str | None:
        owner = await self._database.fetchval(
            "SELECT id FROM recordings WHERE storage_key = $1", object_key
        )
        return None if owner is None else str(owner)

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
        raw = await self._database.fetchval(
            "SELECT record FROM recordings WHERE id = $1", recording_id
        )
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
        args: list[Any] = [camera_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        where = ["camera_id = $1"]
        if window.end_ns is not None:
            where.append(f"start_ns < {arg(window.end_ns)}")
        if window.start_ns is not None:
            start = arg(window.start_ns)
            # The lower bound makes this an index range scan: nothing starting earlier than
            # the camera's longest recording before the window can reach into it.
            where.append(
                f"end_ns > {start} AND start_ns >= {start} - "
                "(SELECT longest_recording_ns FROM cameras WHERE id = $1)"
            )
        if page_token:
            last_start, last_id = position(decode_token(page_token, scope))
            first = arg(last_start)
            where.append(f"start_ns >= {first} AND (start_ns, id) > ({first}, {arg(last_id)})")
        rows = await self._database.fetch(
            f"SELECT record FROM recordings WHERE {' AND '.join(where)} "
            f"ORDER BY start_ns, id LIMIT {arg(page_size + 1)}",
            *args,
        )
        records = [RecordingRecord.from_json(row["record"]) for row in rows[:page_size]]
        next_token = ""
        if len(rows) > page_size:
            next_token = encode_token(f"{records[-1].start_ns}:{records[-1].id}", scope)
        return records, next_token

    async def all_recordings(self, camera_id: str) -> list[RecordingRecord]:
        rows = await self._database.fetch(
            "SELECT record FROM recordings WHERE camera_id = $1 ORDER BY start_ns, id", camera_id
        )
        return [RecordingRecord.from_json(row["record"]) for row in rows]

    async def delete_recording(self, record: RecordingRecord, principal: str) -> None:
        async with self._database.transaction() as connection:
            try:
                status = await connection.execute("DELETE FROM recordings WHERE id = $1", record.id)
            except asyncpg.ForeignKeyViolationError:
                # The guard (begin_delete) refuses first; this is the database's own refusal.
                raise RecordingInUse(f"recording {record.name} is held") from None
            if status == "DELETE 1":
                await append(
                    connection, recording_entry(principal, Action.RECORDING_DELETE, record)
                )


class RecordingsChanged(Exception):
    """A camera's recordings changed while it was being deleted with them."""
