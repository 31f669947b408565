"""A camera's recording policy: whether it is recorded, how long its segments are, how long
they are kept. Columns of the `cameras` row (not its JSON record), so recorders find the cameras
to record through a partial index and a change commits with its audit entry.

Recorders re-read the policies every RECORDER_POLL_INTERVAL: a change needs no restart and no
message to them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import asyncpg

from sparc_video.audit import Action, AuditEntry
from sparc_video.audit.trail import append
from sparc_video.cameras.records import CameraNotFound
from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.database.pool import Database

# Segment targets a policy may ask for: a keyframe interval or two at least, an hour at most.
MIN_SEGMENT_S = 0.5
MAX_SEGMENT_S = 3600.0
MAX_RETENTION_DAYS = 36500


class RecordingMode(enum.StrEnum):
    """OFF or CONTINUOUS; event-triggered modes are meant to join these (the column's check
    constraint names the values a migration must extend)."""

    OFF = "OFF"
    CONTINUOUS = "CONTINUOUS"


@dataclass(frozen=True)
class RecordingPolicy:
    mode: RecordingMode = RecordingMode.OFF
    segment_s: float = 60.0
    # None: RECORDING_RETENTION_DAYS decides.
    retention_days: int | None = None

    def check(self) -> None:
        violations: list[FieldViolation] = []
        if not MIN_SEGMENT_S <= self.segment_s <= MAX_SEGMENT_S:
            violations.append(
                FieldViolation(
                    "recording_policy.segment_duration",
                    f"must be between {MIN_SEGMENT_S:g} and {MAX_SEGMENT_S:g} s, "
                    f"not {self.segment_s:g}",
                )
            )
        if self.retention_days is not None and not 1 <= self.retention_days <= MAX_RETENTION_DAYS:
            violations.append(
                FieldViolation(
                    "recording_policy.retention_days",
                    f"must be between 1 and {MAX_RETENTION_DAYS}, not {self.retention_days}",
                )
            )
        if violations:
            raise InvalidArgument(violations)

    def details(self) -> dict[str, object]:
        return {
            "mode": self.mode.value,
            "segment_s": self.segment_s,
            "retention_days": self.retention_days,
        }


@dataclass(frozen=True)
class RecordedCamera:
    """A camera some recorder should hold, with its policy as last read."""

    camera_id: str
    policy: RecordingPolicy


_COLUMNS = "recording_mode, segment_target_ms, retention_days"


def _policy(row: asyncpg.Record) -> RecordingPolicy:
    return RecordingPolicy(
        mode=RecordingMode(row["recording_mode"]),
        segment_s=row["segment_target_ms"] / 1000,
        retention_days=row["retention_days"],
    )


async def get_policy(database: Database, camera_id: str) -> RecordingPolicy:
    row = await database.fetchrow(f"SELECT {_COLUMNS} FROM cameras WHERE id = $1", camera_id)
    if row is None:
        raise CameraNotFound(f"camera cameras/{camera_id} does not exist")
    return _policy(row)


async def get_policies(database: Database, camera_ids: list[str]) -> dict[str, RecordingPolicy]:
    """The policies of those of the cameras that exist."""
    rows = await database.fetch(
        f"SELECT id, {_COLUMNS} FROM cameras WHERE id = ANY($1::text[])", camera_ids
    )
    return {row["id"]: _policy(row) for row in rows}


async def set_policy(
    database: Database, camera_id: str, policy: RecordingPolicy, principal: str
) -> RecordingPolicy:
    """Replace the camera's policy; audited (camera.update) when it changes anything."""
    policy.check()
    async with database.transaction() as connection:
        row = await connection.fetchrow(
            f"SELECT {_COLUMNS} FROM cameras WHERE id = $1 FOR UPDATE", camera_id
        )
        if row is None:
            raise CameraNotFound(f"camera cameras/{camera_id} does not exist")
        old = _policy(row)
        if old == policy:
            return policy
        await connection.execute(
            "UPDATE cameras SET recording_mode = $2, segment_target_ms = $3, "
            "retention_days = $4, update_time = now() WHERE id = $1",
            camera_id,
            policy.mode.value,
            round(policy.segment_s * 1000),
            policy.retention_days,
        )
        await append(
            connection,
            AuditEntry(
                principal,
                Action.CAMERA_UPDATE,
                f"cameras/{camera_id}",
                details={"recording_policy": policy.details(), "previous": old.details()},
            ),
        )
    return policy


async def cameras_to_record(database: Database) -> list[RecordedCamera]:
    """Every camera whose mode is not OFF, in id order (what the recorders share out)."""
    rows = await database.fetch(
        f"SELECT id, {_COLUMNS} FROM cameras WHERE recording_mode <> 'OFF' ORDER BY id"
    )
    return [RecordedCamera(row["id"], _policy(row)) for row in rows]
