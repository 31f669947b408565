"""Audit entries: appended inside a caller's transaction, read back oldest first.

The database refuses UPDATE, DELETE and TRUNCATE on `audit_log` (migration 0001's triggers), so
what is written here stays. Entries never hold secrets: a camera credential change records
that the credentials changed, never their value, and a download records which objects were
linked and until when, never the signed links.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sparc_video.core.errors import FieldViolation, InvalidArgument
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


COLUMNS = "principal, action, resource, case_id, details"
_INSERT = f"INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5::jsonb)"


def row(entry: AuditEntry) -> tuple[str, str, str, str, str]:
    """The entry as values of COLUMNS (`details` as JSON text, cast with `::jsonb`), for a
    statement that writes a change and its entry at once (one round trip where it counts:
    `cameras.records.CameraStore.create_recording`)."""
    return (
        entry.principal,
        entry.action.value,
        entry.resource,
        entry.case_id,
        json.dumps(entry.details),
    )


async def append(connection: Connection, *entries: AuditEntry) -> None:
    """Write `entries` in the caller's transaction: they commit or roll back with its change."""
    if not entries:
        return
    await connection.executemany(_INSERT, [row(e) for e in entries])


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

    async def page(
        self, *, case_id: str = "", resource: str = "", page_size: int, page_token: str
    ) -> tuple[list[AuditRecord], str]:
        """A page of a trail (as `trail`) and the next page's token ("" on the last). The
        token is bound to the trail it pages through."""
        scope = f"case:{case_id}" if case_id else f"resource:{resource}"
        after_id = _decode_token(page_token, scope) if page_token else 0
        records = await self.trail(
            case_id=case_id, resource=resource, after_id=after_id, limit=page_size + 1
        )
        if len(records) <= page_size:
            return records, ""
        records = records[:page_size]
        return records, _encode_token(records[-1].id, scope)


def _encode_token(after_id: int, scope: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([after_id, scope]).encode()).decode()


def _decode_token(token: str, scope: str) -> int:
    try:
        after_id, token_scope = json.loads(base64.urlsafe_b64decode(token.encode()))
        if token_scope != scope or type(after_id) is not int:
            raise ValueError
        return after_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(
            [FieldViolation("page_token", "not a token from a previous call for the same trail")]
        ) from None
