"""Edits of the picture or the timeline: watermark (with its capture clock), trim and redact."""

from __future__ import annotations

import re
import unicodedata

from sparc.video.v1 import export_pb2

from sparc_video.api.exports.requests.fields import (
    MAX_DIMENSION,
    enum_value,
    parse_media_time,
    parse_text,
    validate_key_field,
)
from sparc_video.core.errors import FieldViolation
from sparc_video.exports import enums
from sparc_video.exports.operations import (
    DEFAULT_CLOCK_FORMAT,
    Operation,
    RedactOp,
    RedactRegion,
    TrimOp,
    WatermarkClock,
    WatermarkOp,
)
from sparc_video.media import capture_clock

MAX_WATERMARK_TEXT = 200
MAX_REDACT_REGIONS = 32
DEFAULT_REDACT_STRENGTH = 0.5


# A clock's base time: 1970 to the year 9000 (datetime ends at 9999).
MIN_CLOCK_NS, MAX_CLOCK_NS = 0, 221845392000 * 10**9
_COLOR_RE = re.compile(r"^#?[0-9a-f]{6}$")


def watermark(
    options: export_pb2.WatermarkOptions, field: str, violations: list[FieldViolation]
) -> WatermarkOp | None:
    before = len(violations)
    which = options.WhichOneof("content")
    image_key = text = ""
    if which == "image_object_key":
        image_key = validate_key_field(
            options.image_object_key, f"{field}.image_object_key", violations
        )
    elif which == "text":
        text = options.text
        if not text.strip() and not options.HasField("clock"):
            violations.append(FieldViolation(f"{field}.text", "required: the text to draw"))
        elif len(text) > MAX_WATERMARK_TEXT:
            violations.append(
                FieldViolation(f"{field}.text", f"at most {MAX_WATERMARK_TEXT} characters")
            )
        elif any(unicodedata.category(c)[0] == "C" for c in text):
            violations.append(
                FieldViolation(f"{field}.text", "one line of printable characters, please")
            )
    elif not options.HasField("clock"):
        violations.append(FieldViolation(field, "set one of: image_object_key, text, clock"))
    clock = _clock(options, field, violations) if options.HasField("clock") else None
    position = enum_value(
        options.position, enums.POSITIONS.from_proto, f"{field}.position", violations
    )
    margin = options.margin if options.HasField("margin") else None
    if margin is not None and not 0 <= margin <= MAX_DIMENSION:
        violations.append(FieldViolation(f"{field}.margin", f"use 0 to {MAX_DIMENSION} pixels"))
    for name in ("offset_x", "offset_y"):
        if abs(getattr(options, name)) > MAX_DIMENSION:
            violations.append(
                FieldViolation(f"{field}.{name}", f"use -{MAX_DIMENSION} to {MAX_DIMENSION}")
            )
    opacity = options.opacity if options.HasField("opacity") else 1.0
    if not 0.0 <= opacity <= 1.0:  # also refuses NaN
        violations.append(FieldViolation(f"{field}.opacity", f"{opacity} is not within 0 to 1"))
    if not (options.scale == 0.0 or 0.0 < options.scale <= 1.0):
        violations.append(
            FieldViolation(f"{field}.scale", f"{options.scale} is not within 0 (exclusive) to 1")
        )
    color = options.text_color.strip().lower() or "#ffffff"
    if not _COLOR_RE.match(color):
        violations.append(
            FieldViolation(f"{field}.text_color", f"{options.text_color!r} is not #RRGGBB")
        )
    if len(violations) > before:
        return None
    return WatermarkOp(
        image_key=image_key,
        text=text,
        position=position or "bottom_right",
        margin=margin,
        offset_x=options.offset_x,
        offset_y=options.offset_y,
        opacity=opacity,
        scale=options.scale,
        text_color=color if color.startswith("#") else f"#{color}",
        clock=clock,
    )


def _clock(
    options: export_pb2.WatermarkOptions, field: str, violations: list[FieldViolation]
) -> WatermarkClock | None:
    before = len(violations)
    where = f"{field}.clock"
    if options.WhichOneof("content") == "image_object_key":
        violations.append(
            FieldViolation(where, "a clock is drawn as text: it cannot go with image_object_key")
        )
    clock = options.clock
    text_format = clock.format or DEFAULT_CLOCK_FORMAT
    try:
        capture_clock.parse_format(text_format)
    except ValueError as exc:
        violations.append(FieldViolation(f"{where}.format", str(exc)))
    try:
        capture_clock.time_zone(clock.time_zone)
    except ValueError as exc:
        violations.append(FieldViolation(f"{where}.time_zone", str(exc)))
    base_ns: int | None = None
    if clock.HasField("base_time"):
        base_ns = clock.base_time.ToNanoseconds()
        if not MIN_CLOCK_NS <= base_ns <= MAX_CLOCK_NS:
            violations.append(FieldViolation(f"{where}.base_time", "use a time from 1970 to 9000"))
    if len(violations) > before:
        return None
    return WatermarkClock(text_format, base_ns, clock.time_zone or "UTC")


def require_capture_times(
    operations: list[Operation],
    prefix: str,
    violations: list[FieldViolation],
    *,
    source_has_capture_time: bool,
) -> None:
    """A clock without a base time counts from the source's capture start: refuse it for a
    source that has none (an object in storage), rather than burn in a made-up 1970 date."""
    if source_has_capture_time:
        return
    for index, op in enumerate(operations):
        if isinstance(op, WatermarkOp) and op.clock is not None and op.clock.base_time_ns is None:
            violations.append(
                FieldViolation(
                    f"{prefix}[{index}].watermark.clock.base_time",
                    "required: an object source has no capture time to count from",
                )
            )


def _span(
    options: export_pb2.TrimOptions | export_pb2.RedactOptions,
    field: str,
    violations: list[FieldViolation],
) -> tuple[float | None, float | None, float | None]:
    """start, end, duration of a trim or a redaction's span, checked against each other."""
    before = len(violations)
    start = parse_text(parse_media_time, options.start, f"{field}.start", violations)
    end = parse_text(parse_media_time, options.end, f"{field}.end", violations)
    duration = parse_text(parse_media_time, options.duration, f"{field}.duration", violations)
    if len(violations) == before:
        if end is not None and duration is not None:
            violations.append(FieldViolation(f"{field}.duration", "set end or duration, not both"))
        elif end is not None and end <= (start or 0.0):
            violations.append(
                FieldViolation(f"{field}.end", f"{options.end!r} is not after the start")
            )
        elif duration is not None and duration <= 0:
            violations.append(FieldViolation(f"{field}.duration", "must be more than 0"))
    return start, end, duration


def trim(
    options: export_pb2.TrimOptions, field: str, violations: list[FieldViolation]
) -> TrimOp | None:
    before = len(violations)
    start, end, duration = _span(options, field, violations)
    mode = enum_value(options.mode, enums.TRIM_MODES.from_proto, f"{field}.mode", violations)
    if len(violations) == before and start is None and end is None and duration is None:
        violations.append(FieldViolation(field, "set start, end or duration"))
    if len(violations) > before:
        return None
    return TrimOp(
        start_s=start or 0.0,
        end_s=end,
        duration_s=duration,
        mode=mode or "exact",
    )


def redact(
    options: export_pb2.RedactOptions, field: str, violations: list[FieldViolation]
) -> RedactOp | None:
    before = len(violations)
    if not options.regions:
        violations.append(
            FieldViolation(f"{field}.regions", "at least one region {x, y, width, height} (0-1)")
        )
    elif len(options.regions) > MAX_REDACT_REGIONS:
        violations.append(
            FieldViolation(f"{field}.regions", f"at most {MAX_REDACT_REGIONS} regions")
        )
    regions: list[RedactRegion] = []
    for number, region in enumerate(options.regions[:MAX_REDACT_REGIONS]):
        where = f"{field}.regions[{number}]"
        checked = _region(region, where, violations)
        if checked is not None:
            regions.append(checked)
    mode = enum_value(options.mode, enums.REDACT_MODES.from_proto, f"{field}.mode", violations)
    strength = options.strength if options.HasField("strength") else DEFAULT_REDACT_STRENGTH
    if not 0.0 < strength <= 1.0:  # also refuses NaN
        violations.append(
            FieldViolation(f"{field}.strength", f"{strength} is not within 0 (exclusive) to 1")
        )
    start, end, duration = _span(options, field, violations)
    if len(violations) > before:
        return None
    return RedactOp(
        regions=tuple(regions),
        mode=mode or "blur",
        strength=strength,
        start_s=start or 0.0,
        end_s=end,
        duration_s=duration,
    )


def _region(
    region: export_pb2.RedactOptions.Region, field: str, violations: list[FieldViolation]
) -> RedactRegion | None:
    before = len(violations)
    for name in ("x", "y"):
        value = getattr(region, name)
        if not 0.0 <= value < 1.0:
            violations.append(
                FieldViolation(f"{field}.{name}", f"{value} is not within 0 to 1 (exclusive)")
            )
    for name, origin in (("width", region.x), ("height", region.y)):
        value = getattr(region, name)
        if not 0.0 < value <= 1.0:
            violations.append(
                FieldViolation(
                    f"{field}.{name}",
                    f"{value} is not within 0 (exclusive) to 1: a region must not be empty",
                )
            )
        elif origin + value > 1.0 + 1e-9:
            axis = "x" if name == "width" else "y"
            violations.append(
                FieldViolation(
                    f"{field}.{name}",
                    f"{axis} + {name} is {origin + value:g}: the region must lie inside the "
                    "frame (at most 1)",
                )
            )
    if len(violations) > before:
        return None
    return RedactRegion(region.x, region.y, region.width, region.height)
