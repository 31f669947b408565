"""Continuous recording: each camera's recording policy and recorder fence, and the gaps of
its recorded timeline.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_GAP_REASONS = (
    "camera_unreachable",
    "authentication_failed",
    "stream_ended",
    "stream_stalled",
    "no_keyframe",
    "recorder_failover",
    "storage_unavailable",
    "policy_off",
)


def upgrade() -> None:
    op.add_column(
        "cameras", sa.Column("recording_mode", sa.Text(), server_default="OFF", nullable=False)
    )
    op.add_column(
        "cameras",
        sa.Column(
            "segment_target_ms", sa.Integer(), server_default=sa.text("60000"), nullable=False
        ),
    )
    op.add_column("cameras", sa.Column("retention_days", sa.Integer(), nullable=True))
    op.add_column(
        "cameras",
        sa.Column("recorder_fence", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("cameras", sa.Column("recorder_id", sa.Text(), nullable=True))
    op.add_column("cameras", sa.Column("recorder_release_reason", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_cameras_recording_mode"), "cameras", "recording_mode IN ('OFF', 'CONTINUOUS')"
    )
    op.create_check_constraint(
        op.f("ck_cameras_segment_target"), "cameras", "segment_target_ms > 0"
    )
    op.create_index(
        op.f("ix_cameras_recording_mode_id"),
        "cameras",
        ["recording_mode", "id"],
        postgresql_where=sa.text("recording_mode <> 'OFF'"),
    )
    reasons = ", ".join(f"'{reason}'" for reason in _GAP_REASONS)
    op.create_table(
        "recording_gaps",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("camera_id", sa.Text(), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("recorder_id", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("end_ns > start_ns", name=op.f("ck_recording_gaps_ordered")),
        sa.CheckConstraint(f"reason IN ({reasons})", name=op.f("ck_recording_gaps_reason")),
        sa.ForeignKeyConstraint(
            ["camera_id"],
            ["cameras.id"],
            name=op.f("fk_recording_gaps_camera_id_cameras"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_gaps")),
    )
    op.create_index(
        op.f("ix_recording_gaps_camera_id_end_ns"), "recording_gaps", ["camera_id", "end_ns"]
    )


def downgrade() -> None:
    op.drop_table("recording_gaps")
    op.drop_index(op.f("ix_cameras_recording_mode_id"), table_name="cameras")
    op.drop_constraint(op.f("ck_cameras_segment_target"), "cameras", type_="check")
    op.drop_constraint(op.f("ck_cameras_recording_mode"), "cameras", type_="check")
    for column in (
        "recorder_release_reason",
        "recorder_id",
        "recorder_fence",
        "retention_days",
        "segment_target_ms",
        "recording_mode",
    ):
        op.drop_column("cameras", column)
