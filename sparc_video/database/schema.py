"""The tables of the system of record, as SQLAlchemy Core metadata (no ORM).

PostgreSQL holds the durable truth; Redis keeps the queue, leases, live progress and event
streams (DESIGN.md, "Where records live"). Each table keeps the whole domain record as JSONB in
`record` (what the stores read back) and copies into columns only what is queried, indexed or
constrained. Migrations (`migrations/versions/`) create exactly this: `tests/test_database.py`
builds the schema from empty and compares it with this metadata.

Times are `timestamptz`, except the capture times of recordings: integer nanoseconds (UTC)
as the domain keeps them, since `timestamptz` rounds to microseconds and overlap queries must be
exact at the boundaries.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP

# Constraint and index names are deterministic, so migrations can name what they alter.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# The states of an export that has not ended (ExportState's non-terminal ones; a test checks
# they agree), as the partial index on them and the queries it serves spell them.
UNFINISHED_EXPORTS = "state IN ('QUEUED', 'RUNNING', 'RETRYING')"

_TZ = TIMESTAMP(timezone=True)
_NOW = text("now()")
_EMPTY = text("'{}'::jsonb")


# exports: one row per export (CreateExport). `record` is the whole ExportRecord (request,
# operations, outputs with their hashes, manifest reference, error); the columns are what lists
# filter and page on (requester, case id, state, create time; ties broken by id). Progress never
# comes here: it lives in Redis. `revision` counts durable changes: a write names the revision
# it read and fails when another writer got there first (the fencing of state changes), and
# Redis's copy of the record is replaced only by a newer revision. A principal's request_id
# names one export (CreateExport's idempotency).
exports = Table(
    "exports",
    metadata,
    Column("id", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("requester", Text, nullable=False, server_default=""),
    Column("case_id", Text, nullable=False, server_default=""),
    Column("purpose", Text, nullable=False, server_default=""),
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("request_id", Text, nullable=False, server_default=""),
    Column("revision", BigInteger, nullable=False, server_default=text("1")),
    Column("create_time", _TZ, nullable=False),
    Column("update_time", _TZ, nullable=False),
    Column("end_time", _TZ, nullable=True),
    Column("record", JSONB, nullable=False),
    CheckConstraint(
        "state IN ('QUEUED', 'RUNNING', 'RETRYING', 'SUCCEEDED', 'FAILED', 'CANCELLED')",
        name="state",
    ),
    Index(None, "create_time", "id"),
    Index(None, "requester", "create_time", "id"),
    Index(None, "state", "create_time", "id"),
    Index(None, "case_id", "create_time", "id"),
    Index(None, "requester", "request_id", unique=True, postgresql_where=text("request_id <> ''")),
    # What the per-principal quota counts (a requester's unfinished exports), without reading
    # its finished ones. A query uses it only when its condition names these states as
    # literals (UNFINISHED_EXPORTS), not as a parameter of a prepared statement.
    Index(
        "ix_exports_requester_unfinished",
        "requester",
        postgresql_where=text(UNFINISHED_EXPORTS),
    ),
)

# export_state_changes: every transition of an export, appended in the transaction that makes
# it (QUEUED → RUNNING → SUCCEEDED, retries, cancellation). Kept with the export: the evidence
# of what happened to it and when.
export_state_changes = Table(
    "export_state_changes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "export_id",
        Text,
        ForeignKey("exports.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("from_state", Text, nullable=True),
    Column("to_state", Text, nullable=False),
    Column("at", _TZ, nullable=False, server_default=_NOW),
    Column("reason", Text, nullable=False, server_default=""),
    Index(None, "export_id", "id"),
)

# cameras: the camera catalogue. `record` is the CameraRecord: public stream URL (no
# credentials), labels, status, last probe; its `secrets` are the Fernet ciphertext of the
# stream credentials, never the plaintext. `longest_recording_ns` is the longest duration any
# of its recordings ever had, raised in the transaction that inserts a longer one: how far
# before a time range an overlapping recording can start (the lower bound of the index scan).
# The recording policy (mode, segment target, retention; NULL retention: RECORDING_RETENTION_DAYS)
# is in columns, so recorders list the cameras to record through a partial index. The recorder
# columns fence continuous recording (`recording/fencing.py`): a recorder taking the camera over
# raises `recorder_fence` and registers segments only while it still equals its token;
# `recorder_release_reason` is why the last holder let go (NULL while held, or after a death).
cameras = Table(
    "cameras",
    metadata,
    Column("id", Text, primary_key=True),
    Column("display_name", Text, nullable=False, server_default=""),
    Column("longest_recording_ns", BigInteger, nullable=False, server_default=text("0")),
    Column("record", JSONB, nullable=False),
    Column("create_time", _TZ, nullable=False),
    Column("update_time", _TZ, nullable=False),
    Column("recording_mode", Text, nullable=False, server_default="OFF"),
    Column("segment_target_ms", Integer, nullable=False, server_default=text("60000")),
    Column("retention_days", Integer, nullable=True),
    Column("recorder_fence", BigInteger, nullable=False, server_default=text("0")),
    Column("recorder_id", Text, nullable=True),
    Column("recorder_release_reason", Text, nullable=True),
    CheckConstraint("recording_mode IN ('OFF', 'CONTINUOUS')", name="recording_mode"),
    CheckConstraint("segment_target_ms > 0", name="segment_target"),
    Index(None, "recording_mode", "id", postgresql_where=text("recording_mode <> 'OFF'")),
)

# recordings: one row per recorded segment of a camera (millions: 200 cameras, one-minute
# segments, 30 days is 8.6 million). Overlap with [a, b): camera_id = c AND start_ns < b AND
# end_ns > a, read through (camera_id, start_ns) bounded below by the camera's longest segment.
# A camera with recordings cannot be deleted (RESTRICT): its recordings go first.
# `deleting_until` is set while DeleteRecording removes the object (until then no export may
# hold it); it lapses by itself if that deletion died half-way.
recordings = Table(
    "recordings",
    metadata,
    Column("id", Text, primary_key=True),
    Column(
        "camera_id",
        Text,
        ForeignKey("cameras.id", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("storage_key", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("record", JSONB, nullable=False),
    Column("create_time", _TZ, nullable=False, server_default=_NOW),
    Column("deleting_until", _TZ, nullable=True),
    CheckConstraint("end_ns >= start_ns", name="ordered"),
    UniqueConstraint("storage_key"),
    Index(None, "camera_id", "start_ns"),
)

# recording_gaps: why a continuously recorded camera has no footage over [start_ns, end_ns)
# (recording/reasons.py), written by the recorder with the segment that ends the gap. Gaps can
# be long (a camera away for a day), so ranges are read by end: end_ns > a AND start_ns < b.
recording_gaps = Table(
    "recording_gaps",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("camera_id", Text, ForeignKey("cameras.id", ondelete="CASCADE"), nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Column("recorder_id", Text, nullable=False, server_default=""),
    Column("create_time", _TZ, nullable=False, server_default=_NOW),
    CheckConstraint("end_ns > start_ns", name="ordered"),
    CheckConstraint(
        "reason IN ('camera_unreachable', 'authentication_failed', 'stream_ended', "
        "'stream_stalled', 'no_keyframe', 'recorder_failover', 'storage_unavailable', "
        "'policy_off', 'segment_changed')",
        name="reason",
    ),
    Index(None, "camera_id", "end_ns"),
)

# retention_holds: a recording read by an export that has not ended (or held for a case) cannot
# be deleted: the foreign key refuses (RESTRICT) while a hold names it. The hold of an export
# goes when the export ends (deleted by the store) or when the export row goes (CASCADE).
retention_holds = Table(
    "retention_holds",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "recording_id",
        Text,
        ForeignKey("recordings.id", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column(
        "export_id",
        Text,
        ForeignKey("exports.id", ondelete="CASCADE"),
        nullable=True,
    ),
    Column("case_id", Text, nullable=False, server_default=""),
    Column("reason", Text, nullable=False, server_default=""),
    Column("create_time", _TZ, nullable=False, server_default=_NOW),
    UniqueConstraint("recording_id", "export_id"),
    Index(None, "export_id"),
)

# download_grants: every GetExportDownloadUrl: who received links to which objects, until when.
# Never the links themselves: their signatures are bearer credentials.
download_grants = Table(
    "download_grants",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "export_id",
        Text,
        ForeignKey("exports.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("requester", Text, nullable=False),
    Column("storage_keys", ARRAY(Text), nullable=False),
    Column("grant_time", _TZ, nullable=False, server_default=_NOW),
    Column("expire_time", _TZ, nullable=False),
    Index(None, "export_id", "grant_time"),
)

# audit_log: append-only chain of custody: who created, cancelled, downloaded or deleted what;
# camera credential changes (that they changed, never the secret). The database refuses UPDATE,
# DELETE and TRUNCATE (a trigger, see migration 0001). `resource` is a resource name
# (exports/ID, cameras/ID); `case_id` lets one case's trail be read in order.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", _TZ, nullable=False, server_default=_NOW),
    Column("principal", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("case_id", Text, nullable=False, server_default=""),
    Column("details", JSONB, nullable=False, server_default=_EMPTY),
    Index(None, "resource", "id"),
    Index(None, "case_id", "id"),
)

# The function and triggers that make audit_log append-only (created by migration 0001).
AUDIT_LOG_APPEND_ONLY_FUNCTION = "audit_log_append_only"
