"""The export's own fields: request id (idempotency), priority, and the audit fields recorded in
the signed manifest (case id, purpose)."""

from __future__ import annotations

from sparc.video.v1 import export_pb2

from sparc_video.core.errors import FieldViolation
from sparc_video.exports import enums
from sparc_video.exports.models import Priority

MAX_REQUEST_ID_LEN = 128


def validate_request_id(request_id: str, violations: list[FieldViolation]) -> str:
    if len(request_id) > MAX_REQUEST_ID_LEN or any(ord(c) < 32 for c in request_id):
        violations.append(
            FieldViolation("request_id", f"at most {MAX_REQUEST_ID_LEN} printable characters")
        )
    return request_id


def validate_priority(
    value: export_pb2.Export.Priority.ValueType, field: str, violations: list[FieldViolation]
) -> Priority:
    if value not in enums.PRIORITIES.from_proto:
        violations.append(
            FieldViolation(field, f"{value} is not a priority; use INTERACTIVE or BATCH")
        )
        return Priority.INTERACTIVE
    return enums.PRIORITIES.from_proto[value]


MAX_CASE_ID_LEN = 128
MAX_PURPOSE_LEN = 1000


def validate_case_id(case_id: str, violations: list[FieldViolation]) -> str:
    return _audit_text(case_id, "export.case_id", MAX_CASE_ID_LEN, False, violations)


def validate_purpose(purpose: str, violations: list[FieldViolation]) -> str:
    return _audit_text(purpose, "export.purpose", MAX_PURPOSE_LEN, True, violations)


def _audit_text(
    text: str, field: str, max_len: int, line_breaks: bool, violations: list[FieldViolation]
) -> str:
    """Free text recorded in the signed manifest: bounded, and nothing a log or a terminal
    would interpret (line breaks only where `line_breaks`)."""
    if len(text) > max_len:
        violations.append(FieldViolation(field, f"at most {max_len} characters (is {len(text)})"))
    elif not (text.replace("\n", " ") if line_breaks else text).isprintable():
        rule = "but" if line_breaks else "or"
        violations.append(
            FieldViolation(
                field, f"must be printable text: no control characters {rule} line breaks"
            )
        )
    return text
