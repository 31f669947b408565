"""The initial schema: exports and their state changes, cameras, recordings, retention holds,
download grants, and the append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_TZ = postgresql.TIMESTAMP(timezone=True)
_JSONB = postgresql.JSONB(astext_type=sa.Text())

# The audit log is append-only in the database itself: whatever the service's code does, rows
# cannot be changed or removed through an ordinary connection (only by a superuser who drops
# the triggers, which is itself visible in the schema).
_APPEND_ONLY_FUNCTION = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""
_APPEND_ONLY_TRIGGERS = (
    "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
)


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("requester", sa.Text(), server_default="", nullable=False),
        sa.Column("case_id", sa.Text(), server_default="", nullable=False),
        sa.Column("purpose", sa.Text(), server_default="", nullable=False),
        sa.Column("priority", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("request_id", sa.Text(), server_default="", nullable=False),
        sa.Column("revision", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("create_time", _TZ, nullable=False),
        sa.Column("update_time", _TZ, nullable=False),
        sa.Column("end_time", _TZ, nullable=True),
        sa.Column("record", _JSONB, nullable=False),
        sa.CheckConstraint(
            "state IN ('QUEUED', 'RUNNING', 'RETRYING', 'SUCCEEDED', 'FAILED', 'CANCELLED')",
            name=op.f("ck_exports_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exports")),
    )
    for columns in (
        ["create_time", "id"],
        ["requester", "create_time", "id"],
        ["state", "create_time", "id"],
        ["case_id", "create_time", "id"],
    ):
        op.create_index(op.f(f"ix_exports_{'_'.join(columns)}"), "exports", columns)
    op.create_index(
        op.f("ix_exports_requester_request_id"),
        "exports",
        ["requester", "request_id"],
        unique=True,
        postgresql_where=sa.text("request_id <> ''"),
    )

    op.create_table(
        "export_state_changes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("export_id", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("at", _TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["export_id"],
            ["exports.id"],
            name=op.f("fk_export_state_changes_export_id_exports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_state_changes")),
    )
    op.create_index(
        op.f("ix_export_state_changes_export_id_id"), "export_state_changes", ["export_id", "id"]
    )

    op.create_table(
        "cameras",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "longest_recording_ns", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("record", _JSONB, nullable=False),
        sa.Column("create_time", _TZ, nullable=False),
        sa.Column("update_time", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cameras")),
    )

    op.create_table(
        "recordings",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("camera_id", sa.Text(), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("record", _JSONB, nullable=False),
        sa.Column("create_time", _TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("deleting_until", _TZ, nullable=True),
        sa.CheckConstraint("end_ns >= start_ns", name=op.f("ck_recordings_ordered")),
        sa.ForeignKeyConstraint(
            ["camera_id"],
            ["cameras.id"],
            name=op.f("fk_recordings_camera_id_cameras"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_recordings_storage_key")),
    )
    op.create_index(
        op.f("ix_recordings_camera_id_start_ns"), "recordings", ["camera_id", "start_ns"]
    )

    op.create_table(
        "retention_holds",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("recording_id", sa.Text(), nullable=False),
        sa.Column("export_id", sa.Text(), nullable=True),
        sa.Column("case_id", sa.Text(), server_default="", nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("create_time", _TZ, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["export_id"],
            ["exports.id"],
            name=op.f("fk_retention_holds_export_id_exports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_retention_holds_recording_id_recordings"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_holds")),
        sa.UniqueConstraint(
            "recording_id", "export_id", name=op.f("uq_retention_holds_recording_id_export_id")
        ),
    )
    op.create_index(op.f("ix_retention_holds_export_id"), "retention_holds", ["export_id"])

    op.create_table(
        "download_grants",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("export_id", sa.Text(), nullable=False),
        sa.Column("requester", sa.Text(), nullable=False),
        sa.Column("storage_keys", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("grant_time", _TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("expire_time", _TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["export_id"],
            ["exports.id"],
            name=op.f("fk_download_grants_export_id_exports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_download_grants")),
    )
    op.create_index(
        op.f("ix_download_grants_export_id_grant_time"),
        "download_grants",
        ["export_id", "grant_time"],
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", _TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("case_id", sa.Text(), server_default="", nullable=False),
        sa.Column("details", _JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_resource_id"), "audit_log", ["resource", "id"])
    op.create_index(op.f("ix_audit_log_case_id_id"), "audit_log", ["case_id", "id"])
    op.execute(_APPEND_ONLY_FUNCTION)
    for trigger in _APPEND_ONLY_TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    op.drop_table("audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table("download_grants")
    op.drop_table("retention_holds")
    op.drop_table("recordings")
    op.drop_table("cameras")
    op.drop_table("export_state_changes")
    op.drop_table("exports")
