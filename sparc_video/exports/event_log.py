"""How an export's record and events are written in Redis: the record as compact JSON, and
each event (state change, progress, audit) on the export's stream with the whole record as of
that event, named by its stream id (`<ms>-<seq>`), which is what WatchExport resumes from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.exports.models import ExportRecord


class EventKind:
    STATE_CHANGED = "state"
    PROGRESS = "progress"
    # An audit entry (a download grant) was added; nothing else changed.
    AUDIT = "audit"


@dataclass(frozen=True)
class ExportEvent:
    """One entry of an export's event stream: the whole record as of the event."""

    event_id: str
    kind: str
    time: float
    record: ExportRecord


def encode_record(record: ExportRecord) -> str:
    return json.dumps(record.to_json_dict(), separators=(",", ":"))


def decode_record(raw: bytes | str) -> ExportRecord:
    return ExportRecord.from_json_dict(json.loads(raw))


def decode_event(event_id: bytes | str, fields: dict[bytes, bytes]) -> ExportEvent:
    return ExportEvent(
        event_id=event_id.decode() if isinstance(event_id, bytes) else event_id,
        kind=fields[b"kind"].decode(),
        time=float(fields[b"time"]),
        record=decode_record(fields[b"record"]),
    )


def event_id_key(event_id: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence)."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def parse_event_id(text: str) -> str:
    """Validate a client-supplied event id (`<ms>-<seq>`)."""
    try:
        ms, seq = event_id_key(text)
    except ValueError:
        ms = seq = -1
    if ms < 0 or seq < 0 or "-" not in text:
        raise InvalidArgument(
            [
                FieldViolation(
                    "after_event_id", f"{text!r} is not an event id such as 1700000000000-0"
                )
            ]
        )
    return f"{ms}-{seq}"
