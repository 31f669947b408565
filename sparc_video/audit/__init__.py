"""The audit trail: who did what to which export or camera, appended to PostgreSQL's
append-only `audit_log` in the transaction that makes the change (so an entry exists exactly
when the change does), and read back per case or per resource.

Domain packages (exports, cameras) write entries; `api` and the CLI read trails. Below the
domain, above `database`.
"""

from sparc_video.audit.trail import Action, AuditEntry, AuditLog, AuditRecord

__all__ = ["Action", "AuditEntry", "AuditLog", "AuditRecord"]
