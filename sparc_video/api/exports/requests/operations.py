"""A CreateExport request's operation list: each operation by kind (`outputs`, `edits`), then the
list as a whole (`sparc_video.exports.plan`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparc.video.v1 import export_pb2

from sparc_video.api.exports.requests.edits import redact, trim, watermark
from sparc_video.api.exports.requests.outputs import compress, convert, thumbnail, transcode
from sparc_video.core.errors import FieldViolation
from sparc_video.exports.operations import Operation
from sparc_video.exports.plan import check_plan

MAX_OPERATIONS = 16


def validate_operations(
    operations: list[export_pb2.Operation], prefix: str, violations: list[FieldViolation]
) -> list[Operation]:
    """Each operation's options, then (when they are all valid) the list as a whole: the
    composition rules of `sparc_video.exports.plan` refuse contradictory lists."""
    result: list[Operation] = []
    before = len(violations)
    if not operations:
        violations.append(
            FieldViolation(prefix, f"at least one operation is required ({', '.join(_KINDS)})")
        )
    if len(operations) > MAX_OPERATIONS:
        violations.append(FieldViolation(prefix, f"at most {MAX_OPERATIONS} operations"))
    for index, op in enumerate(operations):
        field = f"{prefix}[{index}]"
        which = op.WhichOneof("operation") or ""
        parse = _PARSERS.get(which)
        if parse is None:
            violations.append(FieldViolation(field, f"set one of: {', '.join(_KINDS)}"))
            continue
        parsed = parse(getattr(op, which), f"{field}.{which}", violations)
        if parsed is not None:
            result.append(parsed)
    if len(violations) == before:
        check_plan(result, prefix, violations)
    return result


# Each kind of the Operation oneof and its options' parser (the parser gets the field of the
# same name); the order is the one the violations list them in.
_PARSERS: dict[str, Callable[[Any, str, list[FieldViolation]], Operation | None]] = {
    "transcode": transcode,
    "convert": convert,
    "compress": compress,
    "watermark": watermark,
    "trim": trim,
    "redact": redact,
    "thumbnail": thumbnail,
}
_KINDS = tuple(_PARSERS)
