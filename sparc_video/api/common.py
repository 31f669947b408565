"""What both services' request parsing and response mapping share: resource names, the
violations helper and protobuf times. Kept here so `api.exports` and `api.cameras` need not
import each other."""

from __future__ import annotations

import re

from google.protobuf import duration_pb2, timestamp_pb2

from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.core.object_keys import validate_key

# AIP-122: ids chosen by clients start with a letter (checked on create); generated ones are hex.
ANY_CAMERA_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_RECORDING_ID_RE = re.compile(r"^[0-9a-f]{20}$")
_EXPORT_ID_RE = re.compile(r"^[0-9a-f]{20}$")


def raise_if_any(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)


def required_key(key: str, field: str, what: str, violations: list[FieldViolation]) -> str:
    """A storage key a request must name (`what` says whose), checked; "" with a violation."""
    if not key:
        violations.append(FieldViolation(field, f"required: the storage key of {what}"))
        return ""
    try:
        return validate_key(key)
    except ValueError as exc:
        violations.append(FieldViolation(field, str(exc)))
        return ""


def parse_export_name(name: str, field: str = "name") -> str:
    """`exports/{id}` → id."""
    prefix, _, export_id = name.partition("/")
    if prefix != "exports" or not _EXPORT_ID_RE.fullmatch(export_id):
        raise InvalidArgument(
            [
                FieldViolation(
                    field, f"{name!r} is not an export name such as exports/0123456789abcdef0123"
                )
            ]
        )
    return export_id


def parse_camera_name(name: str, field: str = "name") -> str:
    """`cameras/{camera}` → camera id."""
    prefix, _, camera_id = name.partition("/")
    if prefix != "cameras" or not ANY_CAMERA_ID_RE.fullmatch(camera_id):
        raise InvalidArgument(
            [FieldViolation(field, f"{name[:200]!r} is not a camera name such as cameras/dock-1")]
        )
    return camera_id


def parse_recording_name(name: str, field: str = "name") -> tuple[str, str]:
    """`cameras/{camera}/recordings/{recording}` → (camera id, recording id)."""
    parts = name.split("/")
    if (
        len(parts) != 4
        or parts[0] != "cameras"
        or parts[2] != "recordings"
        or not ANY_CAMERA_ID_RE.fullmatch(parts[1])
        or not _RECORDING_ID_RE.fullmatch(parts[3])
    ):
        raise InvalidArgument(
            [
                FieldViolation(
                    field,
                    f"{name[:200]!r} is not a recording name such as "
                    "cameras/dock-1/recordings/0123456789abcdef0123",
                )
            ]
        )
    return parts[1], parts[3]


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    return timestamp_ns(int(seconds * 1e9))


def duration(seconds: float) -> duration_pb2.Duration:
    return duration_ns(int(seconds * 1e9))


def timestamp_ns(ns: int) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(ns)
    return message


def duration_ns(ns: int) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(ns)
    return message
