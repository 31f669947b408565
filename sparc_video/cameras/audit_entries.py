"""The audit entries of camera and recording changes (`audit_log`, written by the stores in
the transaction of the change). They say what changed, never a secret: a credential change
names the fields that changed (user name, password, a query parameter), not their values."""

from __future__ import annotations

from typing import Protocol

from sparc_video.audit import Action, AuditEntry
from sparc_video.security.stream_urls import StreamSecrets


class Recorded(Protocol):
    """What an entry says of a recording (`records.RecordingRecord`, which imports this)."""

    @property
    def name(self) -> str: ...

    object_key: str
    start_ns: int
    duration_ns: int
    sha256: str


def recording_entry(principal: str, action: Action, record: Recorded) -> AuditEntry:
    return AuditEntry(
        principal,
        action,
        record.name,
        details={
            "object_key": record.object_key,
            "start_ns": record.start_ns,
            "duration_ns": record.duration_ns,
            "sha256": record.sha256,
        },
    )


def credential_fields(old: StreamSecrets | None, new: StreamSecrets) -> list[str]:
    """Which parts of the stream's secrets differ (None: the old ones no longer decrypt, so
    every part the new ones have counts as changed)."""
    if old is None:
        return ["username", "password", *(f"query.{name}" for name in sorted(new.query))]
    changed = [n for n in ("username", "password") if getattr(old, n) != getattr(new, n)]
    for name in sorted(set(old.query) | set(new.query)):
        if old.query.get(name) != new.query.get(name):
            changed.append(f"query.{name}")
    return changed
