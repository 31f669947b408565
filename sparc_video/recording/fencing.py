"""Fencing in PostgreSQL: a recorder that lost a camera can never register another segment.

The Redis lease (`leases.py`) says who should record a camera; PostgreSQL decides whose
segments count. Taking a camera over raises `cameras.recorder_fence` by one in PostgreSQL (so
the token stays monotonic even if Redis loses everything) and the new holder registers only
while the fence still equals its token. Registration reads the fence FOR SHARE: a takeover's
UPDATE waits for a registration in flight to commit, and a registration after the takeover sees
the new fence and is refused. So the new holder, reading the last registered segment after its
takeover commits, sees every segment the old holder will ever register: the failover gap starts
exactly where the old footage ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sparc_video.cameras.records import (
    INSERT_RECORDING,
    CameraNotFound,
    RecordingRecord,
    recording_row,
)
from sparc_video.core.errors import FailedPrecondition
from sparc_video.database.pool import Connection, Database
from sparc_video.recording.reasons import GapReason


class Fenced(FailedPrecondition):
    """Another recorder took the camera over: this one's segments no longer count."""

    reason = "RECORDER_FENCED"


@dataclass(frozen=True)
class Takeover:
    """A recorder's hold on a camera in PostgreSQL."""

    camera_id: str
    token: int
    # End of the camera's newest registered segment (None: it has none).
    last_end_ns: int | None
    # Why the previous holder stopped: what the gap up to this holder's first segment is.
    gap_reason: GapReason


@dataclass(frozen=True)
class PendingGap:
    """Why footage is missing before the next segment: stored with it as a gap from the end of
    the camera's newest registered segment."""

    reason: GapReason
    detail: str = ""


async def take_over(database: Database, camera_id: str, recorder_id: str) -> Takeover:
    """Raise the camera's fence and name `recorder_id` its holder."""
    async with database.transaction() as connection:
        row = await connection.fetchrow(
            "SELECT recorder_id, recorder_release_reason FROM cameras WHERE id = $1 FOR UPDATE",
            camera_id,
        )
        if row is None:
            raise CameraNotFound(f"camera cameras/{camera_id} does not exist")
        token = await connection.fetchval(
            "UPDATE cameras SET recorder_fence = recorder_fence + 1, recorder_id = $2, "
            "recorder_release_reason = NULL WHERE id = $1 RETURNING recorder_fence",
            camera_id,
            recorder_id,
        )
        last_end = await newest_end(connection, camera_id)
    released = row["recorder_release_reason"]
    # Held by nobody or released without a reason: a recorder died holding it.
    reason = GapReason(released) if released else GapReason.RECORDER_FAILOVER
    return Takeover(camera_id, int(token), last_end, reason)


async def release(database: Database, camera_id: str, token: int, reason: GapReason) -> bool:
    """Let the camera go, saying why (the next holder's first gap); False if fenced already."""
    status = await database.execute(
        "UPDATE cameras SET recorder_id = NULL, recorder_release_reason = $3 "
        "WHERE id = $1 AND recorder_fence = $2",
        camera_id,
        token,
        reason.value,
    )
    return status == "UPDATE 1"


async def register_segment(
    database: Database,
    record: RecordingRecord,
    token: int,
    gap: PendingGap | None,
    principal: str,
) -> int:
    """Insert the recording (with its audit entry), and before it the gap `gap` explains, if
    the camera's footage stopped earlier than this segment starts; the gap's length (ns, 0:
    none). Fenced if the camera was taken over since `token` was issued."""
    record.create_time = time.time()
    async with database.transaction() as connection:
        await _check_held(connection, record.camera_id, token)
        gap_ns = 0
        if gap is not None:
            gap_ns = await _store_gap_before(
                connection, record.camera_id, record.start_ns, gap, record.recorder_id
            )
        await connection.execute(INSERT_RECORDING, *recording_row(record, principal))
    return gap_ns


async def register_refused(
    database: Database,
    camera_id: str,
    start_ns: int,
    end_ns: int,
    token: int,
    gap: PendingGap | None,
    refused: PendingGap,
    recorder_id: str,
) -> int | None:
    """Store a recorded segment that was refused (not catalogued) as a gap of its own span
    [start_ns, end_ns) explained by `refused`, after the gap `gap` it would have closed, so
    its time is explained exactly: the length of the gap before it (ns, 0: none; None: stored
    already, by a run that died before setting the segment aside). Fenced as
    `register_segment`."""
    async with database.transaction() as connection:
        await _check_held(connection, camera_id, token)
        stored = await connection.fetchval(
            "SELECT 1 FROM recording_gaps WHERE camera_id = $1 AND end_ns = $2 "
            "AND start_ns = $3 AND reason = $4",
            camera_id,
            end_ns,
            start_ns,
            refused.reason.value,
        )
        if stored is not None:
            return None
        gap_ns = 0
        if gap is not None:
            gap_ns = await _store_gap_before(connection, camera_id, start_ns, gap, recorder_id)
        await _insert_gap(connection, camera_id, start_ns, end_ns, refused, recorder_id)
    return gap_ns


async def _check_held(connection: Connection, camera_id: str, token: int) -> None:
    held = await connection.fetchval(
        "SELECT 1 FROM cameras WHERE id = $1 AND recorder_fence = $2 FOR SHARE",
        camera_id,
        token,
    )
    if held is None:
        raise Fenced(f"camera cameras/{camera_id} was taken over (fence {token} is stale)")


async def _store_gap_before(
    connection: Connection, camera_id: str, start_ns: int, gap: PendingGap, recorder_id: str
) -> int:
    """The gap `gap` explains, from where the camera's time is accounted for up to
    `start_ns`, if it ends earlier; its length (ns, 0: none)."""
    last_end = await accounted_end(connection, camera_id)
    if last_end is None or last_end >= start_ns:
        return 0
    await _insert_gap(connection, camera_id, last_end, start_ns, gap, recorder_id)
    return start_ns - last_end


async def _insert_gap(
    connection: Connection,
    camera_id: str,
    start_ns: int,
    end_ns: int,
    gap: PendingGap,
    recorder_id: str,
) -> None:
    await connection.execute(
        "INSERT INTO recording_gaps (camera_id, start_ns, end_ns, reason, detail, "
        "recorder_id) VALUES ($1, $2, $3, $4, $5, $6)",
        camera_id,
        start_ns,
        end_ns,
        gap.reason.value,
        gap.detail,
        recorder_id,
    )


async def superseded(database: Database, camera_id: str, start_ns: int) -> bool:
    """Whether footage registered for the camera ends after `start_ns`: a segment recorded
    under an earlier hold (left in a buffer) that starts there lies in the time a later holder
    recorded or explained with its failover gap, and is never registered."""
    end = await newest_end(database, camera_id)
    return end is not None and end > start_ns


# The end of camera $1's newest registered segment (NULL: it has none).
_NEWEST_END = "SELECT end_ns FROM recordings WHERE camera_id = $1 ORDER BY start_ns DESC LIMIT 1"


async def newest_end(connection: Connection | Database, camera_id: str) -> int | None:
    """The end of the camera's newest registered segment (None: it has none)."""
    end = await connection.fetchval(_NEWEST_END, camera_id)
    return None if end is None else int(end)


async def accounted_end(connection: Connection | Database, camera_id: str) -> int | None:
    """Where the camera's accounted-for time ends: its newest registered segment, or a stored
    gap ending later (a refused segment's, `register_refused`); None: neither. A later gap
    starts here, so it never covers (and hides) a refused segment's own gap."""
    end = await connection.fetchval(
        f"SELECT GREATEST(({_NEWEST_END}), "
        "(SELECT max(end_ns) FROM recording_gaps WHERE camera_id = $1))",
        camera_id,
    )
    return None if end is None else int(end)
