"""Turn CreateExport requests into validated domain operations.

Every problem is collected as a FieldViolation naming the field (AIP-193 style paths such as
`export.operations[1].transcode.bitrate`), so one call reports everything wrong at once.
"""

from __future__ import annotations

import re

from sparc.video.v1 import export_pb2

from sparc_video.errors import FieldViolation, InvalidArgument
from sparc_video.models import Operation, ThumbnailOp, Timestamp, TranscodeOp
from sparc_video.storage.base import validate_key

# Codec names clients use → the encoder the worker opens.
VIDEO_ENCODERS = {"h264": "libx264"}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
MAX_OPERATIONS = 16
MAX_THUMBNAILS = 100
MAX_DIMENSION = 8192
MAX_REQUEST_ID_LEN = 128

_RESOLUTION_RE = re.compile(r"^\s*(-?\d+)\s*[xX]\s*(-?\d+)\s*$")
_BITRATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)(?:bps|b)?\s*$")
_CLOCK_RE = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")


def parse_resolution(text: str) -> tuple[int, int]:
    """`1280x720` → (1280, 720); 0 or -1 on one side keeps the aspect ratio (returned as 0)."""
    match = _RESOLUTION_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size; use WIDTHxHEIGHT such as 1280x720 or 1280x0")
    width, height = (int(v) for v in match.groups())
    if width < -1 or height < -1:
        raise ValueError(f"{text!r}: a side may be -1 or 0 (keep aspect) or positive, not less")
    width, height = max(width, 0), max(height, 0)
    if width == 0 and height == 0:
        raise ValueError(f"{text!r}: at most one side may be 0 or -1")
    if width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise ValueError(f"{text!r}: sides are limited to {MAX_DIMENSION} pixels")
    if width == 1 or height == 1:
        raise ValueError(f"{text!r}: sides must be at least 2 pixels")
    return width, height


def parse_bitrate(text: str) -> int:
    """`1000k` → 1_000_000, `2.5M` → 2_500_000, `800000` → 800_000 bits per second."""
    match = _BITRATE_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a bitrate; use e.g. 1000k, 2.5M or 800000")
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    if not 10_000 <= value <= 500_000_000:
        raise ValueError(f"{text!r} is out of range; use 10k to 500M")
    return int(value)


def parse_timestamp(text: str) -> Timestamp:
    """`50%`, `12.5` (seconds) or `HH:MM:SS(.ms)` / `MM:SS(.ms)`."""
    stripped = text.strip()
    if stripped.endswith("%"):
        try:
            percent = float(stripped[:-1])
        except ValueError:
            percent = -1.0
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"{text!r}: a percentage must be between 0% and 100%")
        return Timestamp("percent", percent)
    clock = _CLOCK_RE.match(stripped)
    if clock:
        hours, minutes, seconds = clock.groups()
        if int(minutes) >= 60 or float(seconds) >= 60:
            raise ValueError(f"{text!r}: minutes and seconds must be below 60")
        return Timestamp("seconds", int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds))
    try:
        seconds_value = float(stripped)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time; use 50%, seconds such as 12.5, or HH:MM:SS.mmm"
        ) from None
    if not 0.0 <= seconds_value < 1e7:
        raise ValueError(f"{text!r}: seconds must be 0 or more")
    return Timestamp("seconds", seconds_value)


def validate_operations(
    operations: list[export_pb2.Operation], prefix: str, violations: list[FieldViolation]
) -> list[Operation]:
    result: list[Operation] = []
    if not operations:
        violations.append(
            FieldViolation(prefix, "at least one operation is required (transcode or thumbnail)")
        )
    if len(operations) > MAX_OPERATIONS:
        violations.append(FieldViolation(prefix, f"at most {MAX_OPERATIONS} operations"))
    for index, op in enumerate(operations):
        field = f"{prefix}[{index}]"
        which = op.WhichOneof("operation")
        if which == "transcode":
            parsed: Operation | None = _transcode(op.transcode, f"{field}.transcode", violations)
        elif which == "thumbnail":
            parsed = _thumbnail(op.thumbnail, f"{field}.thumbnail", violations)
        else:
            violations.append(FieldViolation(field, "set one of: transcode, thumbnail"))
            parsed = None
        if parsed is not None:
            result.append(parsed)
    return result


def _transcode(
    options: export_pb2.TranscodeOptions, field: str, violations: list[FieldViolation]
) -> TranscodeOp | None:
    before = len(violations)
    codec = options.codec.strip().lower() or "h264"
    if codec not in VIDEO_ENCODERS:
        available = ", ".join(sorted(VIDEO_ENCODERS))
        violations.append(
            FieldViolation(f"{field}.codec", f"{options.codec!r} is not available; use {available}")
        )
    bitrate = None
    if options.bitrate.strip():
        try:
            bitrate = parse_bitrate(options.bitrate)
        except ValueError as exc:
            violations.append(FieldViolation(f"{field}.bitrate", str(exc)))
    width = height = 0
    if options.resolution.strip():
        try:
            width, height = parse_resolution(options.resolution)
        except ValueError as exc:
            violations.append(FieldViolation(f"{field}.resolution", str(exc)))
    preset = options.preset.strip().lower() or "medium"
    if preset not in PRESETS:
        violations.append(
            FieldViolation(
                f"{field}.preset", f"{options.preset!r} is not one of {', '.join(PRESETS)}"
            )
        )
    if len(violations) > before:
        return None
    return TranscodeOp(codec=codec, bitrate_bps=bitrate, width=width, height=height, preset=preset)


def _thumbnail(
    options: export_pb2.ThumbnailOptions, field: str, violations: list[FieldViolation]
) -> ThumbnailOp | None:
    before = len(violations)
    stamps: list[Timestamp] = []
    if len(options.timestamps) > MAX_THUMBNAILS:
        violations.append(
            FieldViolation(f"{field}.timestamps", f"at most {MAX_THUMBNAILS} per operation")
        )
    for index, text in enumerate(options.timestamps):
        try:
            stamps.append(parse_timestamp(text))
        except ValueError as exc:
            violations.append(FieldViolation(f"{field}.timestamps[{index}]", str(exc)))
    width = height = 0
    if options.size.strip():
        try:
            width, height = parse_resolution(options.size)
        except ValueError as exc:
            violations.append(FieldViolation(f"{field}.size", str(exc)))
    if len(violations) > before:
        return None
    if not stamps:
        return ThumbnailOp(width=width, height=height)
    return ThumbnailOp(timestamps=tuple(stamps), width=width, height=height)


def validate_source_key(key: str, field: str, violations: list[FieldViolation]) -> str:
    if not key:
        violations.append(FieldViolation(field, "required: the storage key of the source video"))
        return ""
    try:
        return validate_key(key)
    except ValueError as exc:
        violations.append(FieldViolation(field, str(exc)))
        return ""


def validate_request_id(request_id: str, violations: list[FieldViolation]) -> str:
    if len(request_id) > MAX_REQUEST_ID_LEN or any(ord(c) < 32 for c in request_id):
        violations.append(
            FieldViolation("request_id", f"at most {MAX_REQUEST_ID_LEN} printable characters")
        )
    return request_id


def raise_if_any(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)


def parse_export_name(name: str, field: str = "name") -> str:
    """`exports/{id}` → id."""
    prefix, _, export_id = name.partition("/")
    if prefix != "exports" or not re.fullmatch(r"[0-9a-f]{20}", export_id):
        raise InvalidArgument(
            [
                FieldViolation(
                    field, f"{name!r} is not an export name such as exports/0123456789abcdef0123"
                )
            ]
        )
    return export_id
