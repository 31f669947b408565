"""ListExports' `filter`: a conjunction of comparisons on the indexed columns, e.g.

    state = SUCCEEDED AND case_id = "case-7" AND create_time >= "2026-12-01T00:00:00Z"

Fields: `state` (`=`; NAME or STATE_NAME), `requester` and `case_id` (`=`; a quoted or bare
string), `create_time` (`>=` or `<`; an RFC 3339 time). AIP-160 in the small: written here
because no well-kept Python library parses AIP-160, and the grammar the index can serve is
this much.
"""

from __future__ import annotations

import re
from datetime import datetime

from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.exports.catalog import ExportFilter
from sparc_video.exports.models import ExportState

_TERM = re.compile(
    r'^\s*(?P<field>[a-z_]+)\s*(?P<op>>=|<|=)\s*(?:"(?P<quoted>[^"]*)"|(?P<bare>[^\s"]+))\s*$'
)
_AND = re.compile(r"\s+AND\s+")
# The comparisons each field takes.
_OPERATORS = {"state": {"="}, "requester": {"="}, "case_id": {"="}, "create_time": {">=", "<"}}
HELP = (
    'supported is `FIELD OP VALUE` joined by AND: state = NAME, requester = "ID", '
    'case_id = "CASE", create_time >= "RFC 3339 time", create_time < "RFC 3339 time"'
)


def parse_export_filter(text: str) -> ExportFilter:
    """The filter, or InvalidArgument naming the part that is not understood."""
    found = ExportFilter()
    if not text.strip():
        return found
    values: dict[str, object] = {}
    for term in _AND.split(text.strip()):
        match = _TERM.match(term)
        field, op = (match.group("field"), match.group("op")) if match else ("", "")
        if match is None or op not in _OPERATORS.get(field, ()):
            _refuse(f"{term!r} is not understood; {HELP}")
        assert match is not None
        value = match.group("quoted") if match.group("quoted") is not None else match.group("bare")
        key = f"{field}{op}"
        if key in values:
            _refuse(f"{field} {op} is given twice")
        values[key] = _value(field, value)
    return ExportFilter(
        state=values.get("state="),  # type: ignore[arg-type]
        requester=values.get("requester="),  # type: ignore[arg-type]
        case_id=values.get("case_id="),  # type: ignore[arg-type]
        created_after=values.get("create_time>="),  # type: ignore[arg-type]
        created_before=values.get("create_time<"),  # type: ignore[arg-type]
    )


def _value(field: str, text: str) -> object:
    if field == "state":
        name = text.upper().removeprefix("STATE_")
        if name not in ExportState.__members__:
            _refuse(f"state {text!r} is not one of {', '.join(ExportState.__members__)}")
        return ExportState(name)
    if field == "create_time":
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            _refuse(f"create_time {text!r} is not an RFC 3339 time such as 2026-12-01T00:00:00Z")
        assert moment is not None
        return moment.timestamp()
    return text


def _refuse(message: str) -> None:
    raise InvalidArgument([FieldViolation("filter", message)])
