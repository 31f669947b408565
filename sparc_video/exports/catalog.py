"""Exports in PostgreSQL, the system of record (DESIGN.md, "Where records live").

Every durable change of an export (its creation, each state change, outputs, a download grant,
its deletion) is committed here before Redis sees it; progress never comes here. A row keeps
the whole record as JSONB and, as columns, what lists filter and page on.

Fencing: `save` names the revision it read and changes the row only if it is still that one,
so of two writers that read the same record exactly one wins, whatever Redis says meanwhile.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sparc_video.audit import AuditEntry, trail
from sparc_video.audit.trail import append
from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.database.pool import Connection, Database
from sparc_video.database.schema import UNFINISHED_EXPORTS
from sparc_video.exports.event_log import decode_record, encode_record
from sparc_video.exports.models import DownloadGrant, ExportRecord, ExportState, Priority


@dataclass(frozen=True)
class ExportFilter:
    """What a listing keeps: each given field must match (all indexed columns)."""

    state: ExportState | None = None
    requester: str | None = None
    case_id: str | None = None
    # Unix seconds: created at or after, and before.
    created_after: float | None = None
    created_before: float | None = None


# More work inside a durable write's transaction (a download grant's row).
InTransaction = Callable[[Connection], Awaitable[None]]


# A create in one statement: the export's row, its first state change and its audit entry,
# all or none (a statement is atomic on its own, so the common create needs no transaction and
# pays one round trip). A request_id its requester used before inserts nothing and returns no
# row: the caller then reads the export it names (a concurrent create of the same id waits here
# for the other one's commit, then conflicts).
_CREATE = f"""
WITH new AS (
    INSERT INTO exports (id, state, requester, case_id, purpose, priority, attempt, request_id,
                         revision, create_time, update_time, end_time, record)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10), to_timestamp($11),
            to_timestamp($12), $13::jsonb)
    ON CONFLICT (requester, request_id) WHERE request_id <> '' DO NOTHING
    RETURNING id
), change AS (
    INSERT INTO export_state_changes (export_id, attempt, from_state, to_state, reason)
    SELECT id, $7, NULL, $2, 'created' FROM new
), audit AS (
    INSERT INTO audit_log ({trail.COLUMNS}) SELECT $14, $15, $16, $17, $18::jsonb FROM new
)
SELECT count(*) FROM new
"""

_SAVE = """
UPDATE exports SET state = $3, attempt = $4, revision = $5, update_time = to_timestamp($6),
                   end_time = to_timestamp($7), record = $8::jsonb
WHERE id = $1 AND revision = $2
"""

_STATE_CHANGE = """
INSERT INTO export_state_changes (export_id, attempt, from_state, to_state, reason)
VALUES ($1, $2, $3, $4, $5)
"""


class ExportCatalog:
    """Reads and writes of the `exports` table and what hangs off it."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- writes --------------------------------------------------------------------------

    async def insert(
        self,
        record: ExportRecord,
        encoded: str,
        audit: AuditEntry,
        connection: Connection | None = None,
    ) -> bool:
        """The new export's row (`encoded`: the record as `encode_record` makes it), its first
        state change and `audit`, in one statement (in the caller's transaction, if given);
        False, writing nothing, when its requester's request_id names an export already."""
        fetchval = self.database.fetchval if connection is None else connection.fetchval
        created = await fetchval(
            _CREATE,
            record.id,
            record.state.value,
            record.requester,
            record.case_id,
            record.purpose,
            # The column orders priorities as the enum declares them (interactive first).
            list(Priority).index(record.priority),
            record.attempt,
            record.request_id,
            record.revision,
            record.create_time,
            record.update_time,
            record.end_time,
            encoded,
            *trail.row(audit),
        )
        return bool(created)

    async def hold_recordings(
        self, connection: Connection, export_id: str, recording_ids: Iterable[str]
    ) -> str | None:
        """Hold the recordings the new export reads, in its transaction; the id of one that is
        gone or being deleted (nothing held then: the caller rolls back), else None.

        FOR SHARE waits for a DeleteRecording that locked the row to mark it, and then reads
        the mark; a later one waits for this transaction and then finds the hold.
        """
        wanted = sorted(set(recording_ids))
        if not wanted:
            return None
        rows = await connection.fetch(
            "SELECT id FROM recordings WHERE id = ANY($1::text[]) "
            "AND (deleting_until IS NULL OR deleting_until <= now()) ORDER BY id FOR SHARE",
            wanted,
        )
        available = {row["id"] for row in rows}
        missing = [i for i in wanted if i not in available]
        if missing:
            return missing[0]
        await connection.execute(
            "INSERT INTO retention_holds (recording_id, export_id) SELECT unnest($1::text[]), $2",
            wanted,
            export_id,
        )
        return None

    async def lock_requester(self, connection: Connection, requester: str) -> None:
        """Serialise one principal's creates until the transaction ends, so its request ids
        and its unfinished-exports quota are checked and written without a race."""
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"exports:{requester}"
        )

    async def request_owner(self, requester: str, request_id: str) -> str | None:
        """The id of the export a principal's request_id created, if any."""
        value = await self.database.fetchval(
            "SELECT id FROM exports WHERE requester = $1 AND request_id = $2", requester, request_id
        )
        return None if value is None else str(value)

    async def owner_and_unfinished(
        self, connection: Connection, requester: str, request_id: str
    ) -> tuple[str | None, int]:
        """In one round trip: the export `request_id` names ("" names none) and how many
        unfinished exports `requester` has (what its quota counts)."""
        row = await connection.fetchrow(
            "SELECT (SELECT id FROM exports WHERE requester = $1 AND request_id = $2 "
            "AND request_id <> '') AS owner, (SELECT count(*) FROM exports "
            f"WHERE requester = $1 AND {UNFINISHED_EXPORTS}) AS unfinished",
            requester,
            request_id,
        )
        assert row is not None  # a SELECT without FROM returns its one row
        owner = row["owner"]
        return (None if owner is None else str(owner)), int(row["unfinished"])

    async def save(
        self,
        record: ExportRecord,
        *,
        read_revision: int,
        old_state: ExportState,
        reason: str = "",
        audit: Iterable[AuditEntry] = (),
        also: InTransaction | None = None,
    ) -> bool:
        """Write `record` (its `revision` already the next one) if the row is still at
        `read_revision`, with a state-change row when the state changed and `audit` entries;
        False, writing nothing, when another writer changed the row first. An export that
        ends lets go of its recordings' holds in the same transaction."""
        async with self.database.transaction() as connection:
            status = await connection.execute(
                _SAVE,
                record.id,
                read_revision,
                record.state.value,
                record.attempt,
                record.revision,
                record.update_time,
                record.end_time,
                encode_record(record),
            )
            if status != "UPDATE 1":
                return False
            if old_state != record.state:
                await connection.execute(
                    _STATE_CHANGE,
                    record.id,
                    record.attempt,
                    old_state.value,
                    record.state.value,
                    reason or (record.error.reason if record.error else ""),
                )
            if record.state.terminal:
                await connection.execute(
                    "DELETE FROM retention_holds WHERE export_id = $1", record.id
                )
            await append(connection, *audit)
            if also is not None:
                await also(connection)
        return True

    async def delete(self, export_id: str, audit: AuditEntry) -> bool:
        """Remove the export's row (its state changes and grants go with it; its audit entries
        stay) with an audit entry saying so. False when it was gone already."""
        async with self.database.transaction() as connection:
            status = await connection.execute("DELETE FROM exports WHERE id = $1", export_id)
            if status != "DELETE 1":
                return False
            await append(connection, audit)
        return True

    # -- reads ---------------------------------------------------------------------------

    async def get(self, export_id: str) -> ExportRecord | None:
        raw = await self.database.fetchval("SELECT record FROM exports WHERE id = $1", export_id)
        return None if raw is None else decode_record(raw)

    async def revision(self, export_id: str) -> int | None:
        value = await self.database.fetchval(
            "SELECT revision FROM exports WHERE id = $1", export_id
        )
        return None if value is None else int(value)

    async def page(
        self,
        *,
        page_size: int,
        page_token: str,
        keep: ExportFilter,
    ) -> tuple[list[ExportRecord], str]:
        """A page of exports, newest first, and the next page's token ("" on the last).

        Each filter is an indexed column; the token is bound to the filters it was made with.
        """
        filters: dict[str, Any] = asdict(keep)
        bound = json.dumps(filters, sort_keys=True)
        created_after, created_before = keep.created_after, keep.created_before
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        for column in ("state", "requester", "case_id"):
            if filters[column] is not None:
                where.append(f"{column} = {arg(str(filters[column]))}")
        if created_after is not None:
            where.append(f"create_time >= to_timestamp({arg(created_after)})")
        if created_before is not None:
            where.append(f"create_time < to_timestamp({arg(created_before)})")
        if page_token:
            last_us, last_id = _decode_page_token(page_token, bound)
            where.append(
                f"(create_time, id) < ({_FROM_MICROS.format(arg(last_us))}, {arg(last_id)})"
            )
        sql = f"SELECT record, {_TO_MICROS} AS us FROM exports"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY create_time DESC, id DESC LIMIT {arg(page_size + 1)}"
        rows = await self.database.fetch(sql, *args)
        records = [decode_record(row["record"]) for row in rows[:page_size]]
        token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            token = _encode_page_token(int(last["us"]), records[-1].id, bound)
        return records, token

    async def count_by_state(self) -> dict[ExportState, int]:
        rows = await self.database.fetch("SELECT state, count(*) AS n FROM exports GROUP BY state")
        counts = dict.fromkeys(ExportState, 0)
        for row in rows:
            counts[ExportState(row["state"])] = int(row["n"])
        return counts

    async def oldest(self, state: ExportState, count: int) -> list[ExportRecord]:
        """Up to `count` exports in `state`, oldest first."""
        rows = await self.database.fetch(
            "SELECT record FROM exports WHERE state = $1 ORDER BY create_time, id LIMIT $2",
            state.value,
            count,
        )
        return [decode_record(row["record"]) for row in rows]

    async def ids(self, states: Iterable[ExportState]) -> list[str]:
        rows = await self.database.fetch(
            "SELECT id FROM exports WHERE state = ANY($1::text[]) ORDER BY create_time, id",
            [s.value for s in states],
        )
        return [str(row["id"]) for row in rows]


def grant_row(export_id: str, grant: DownloadGrant) -> InTransaction:
    """The `download_grants` row of a grant, written in the transaction that logs it on the
    export (never the links: their signatures are bearer credentials)."""

    async def write(connection: Connection) -> None:
        await connection.execute(
            "INSERT INTO download_grants (export_id, requester, storage_keys, grant_time, "
            "expire_time) VALUES ($1, $2, $3, to_timestamp($4), to_timestamp($5))",
            export_id,
            grant.requester,
            list(grant.storage_keys),
            grant.grant_time,
            grant.expire_time,
        )

    return write


# Page tokens are opaque to clients (AIP-158) but bound to the filters they page through, so a
# token from one listing cannot be replayed against another.
# The position is the last row's create time in whole microseconds (timestamptz's precision):
# exact, where a float of seconds could land a microsecond off and skip or repeat a row.
_TO_MICROS = "(extract(epoch FROM create_time) * 1000000)::bigint"
_FROM_MICROS = "(timestamptz 'epoch' + {} * interval '1 microsecond')"


def _encode_page_token(last_us: int, last_id: str, bound: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([last_us, last_id, bound]).encode()).decode()


def _decode_page_token(token: str, bound: str) -> tuple[int, str]:
    try:
        last_us, last_id, token_bound = json.loads(base64.urlsafe_b64decode(token.encode()))
        if token_bound != bound or not isinstance(last_id, str) or type(last_us) is not int:
            raise ValueError
        return last_us, last_id
    except (ValueError, TypeError, json.JSONDecodeError):
        raise InvalidArgument(
            [FieldViolation("page_token", "not a token from a previous call with the same filter")]
        ) from None
