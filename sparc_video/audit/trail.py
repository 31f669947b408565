"""Audit entries: appended inside a caller's transaction, read back oldest first.

The database refuses UPDATE, DELETE and TRUNCATE on `audit_log` (migration 0001's triggers), so
what is written here stays. Entries never hold secrets: a camera credential change records
that the credentials changed, never their value, and a download records which objects were
linked and until when, never the signed links.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sparc_video.database.pool import Connection, Database


class Action(StrEnum):
    """What an entry records; `resource` says on what."""

    EXPORT_CREATE = "export.create"
    EXPORT_CANCEL = "export.cancel"
    EXPORT_DOWNLOAD = "export.download"
    EXPORT_DELETE = "export.delete"
    CAMERA_CREATE = "camera.create"
    CAMERA_UPDATE = "camera.update"
    CAMERA_CREDENTIALS_CHANGE = "camera.credentials.change"
    CAMERA_DELETE = "camera.delete"
    RECORDING_CREATE = "recording.create"
    RECORDING_DELETE = "recording.delete"


@dataclass(frozen=True)
class AuditEntry:
    """One thing a principal did. `principal` is the authenticated caller's id ("" without
    authentication), or `system:<part>` for what the service does by itself (retention)."""

    principal: str
    action: Action
    resource: str
    case_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord:
    """An entry as stored: with its position in the log and the database's time."""

    id: int
    at: datetime
    entry: AuditEntry


_INSERT = (
    "INSERT INTO audit_log (principal, action, resource, case_id, details) "
    "VALUES ($1, $2, $3, $4, $5::jsonb)"
)


async def append(connection: Connection, *entries: AuditEntry) -> None:
    """Write `entries` in the caller's transaction: they commit or roll back with its change."""
    if not entries:
        return
    await connection.executemany(
        _INSERT,
        [
            (e.principal, e.action.value, e.resource, e.case_id, json.dumps(e.details))
            for e in entries
        ],
    )


class AuditLog:
    """Reads of the trail: one case's, or one resource's, oldest first, in pages."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def trail(
        self, *, case_id: str = "", resource: str = "", after_id: int = 0, limit: int = 100
    ) -> list[AuditRecord]:
        """Entries of a case or of a resource (exactly one is given) with ids above
        `after_id`, at most `limit`: the next page starts after the last id returned."""
        if bool(case_id) == bool(resource):
            raise ValueError("give exactly one of case_id and resource")
        column, value = ("case_id", case_id) if case_id else ("resource", resource)
        rows = await self._database.fetch(
            "SELECT id, at, principal, action, resource, case_id, details FROM audit_log "
            f"WHERE {column} = $1 AND id > $2 ORDER BY id LIMIT $3",
            value,
            after_id,
            limit,
        )
        return [
            AuditRecord(
                id=row["id"],
                at=row["at"],
                entry=AuditEntry(
                    principal=row["principal"],
                    action=Action(row["action"]),
                    resource=row["resource"],
                    case_id=row["case_id"],
                    details=json.loads(row["details"]),
                ),
            )
            for row in rows
        ]
