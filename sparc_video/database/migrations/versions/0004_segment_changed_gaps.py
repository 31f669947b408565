"""A gap reason for a recorded segment refused because its file changed on disk before upload:
`recording_gaps.reason` may be 'segment_changed'.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# Listed literally: a migration is frozen history, whatever GapReason becomes later.
_BEFORE = (
    "camera_unreachable",
    "authentication_failed",
    "stream_ended",
    "stream_stalled",
    "no_keyframe",
    "recorder_failover",
    "storage_unavailable",
    "policy_off",
)
_AFTER = (*_BEFORE, "segment_changed")


def _replace_reasons(reasons: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{reason}'" for reason in reasons)
    op.drop_constraint(op.f("ck_recording_gaps_reason"), "recording_gaps", type_="check")
    op.create_check_constraint(
        op.f("ck_recording_gaps_reason"), "recording_gaps", f"reason IN ({listed})"
    )


def upgrade() -> None:
    _replace_reasons(_AFTER)


def downgrade() -> None:
    # The older schema cannot say why these stretches have no footage. Deleting their gaps
    # shows them as that version did (a gap without a reason); relabelling them with another
    # reason would state a cause that did not happen, and refusing would make every database
    # that ever refused a segment impossible to downgrade. The refused files themselves stay
    # in the recorders' RECORDER_BUFFER_DIR/<camera>/.changed, and the refusals in their logs.
    op.execute("DELETE FROM recording_gaps WHERE reason = 'segment_changed'")
    _replace_reasons(_BEFORE)
