"""The unfinished exports of a requester, indexed apart: what the per-principal quota counts at
every CreateExport, under the requester's lock, without reading its finished exports.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_exports_requester_unfinished",
        "exports",
        ["requester"],
        postgresql_where=sa.text("state IN ('QUEUED', 'RUNNING', 'RETRYING')"),
    )


def downgrade() -> None:
    op.drop_index("ix_exports_requester_unfinished", table_name="exports")
