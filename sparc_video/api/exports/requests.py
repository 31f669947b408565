"""Turn CreateExport requests into validated domain operations.

Every problem is collected as a FieldViolation naming the field (AIP-193 style paths such as
`export.operations[1].transcode.bitrate`), so one call reports everything wrong at once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import TypeVar

from sparc.video.v1 import export_pb2

from sparc_video.api.cameras import requests as camera_validation
from sparc_video.api.enums import (
    CONTAINERS,
    GAP_MODES,
    HARDWARE,
    IMAGE_FORMATS,
    POSITIONS,
    PRIORITIES,
    QUALITIES,
    REDACT_MODES,
    TRIM_MODES,
)
from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.core.sizes import parse_size
from sparc_video.exports.models import (
    DEFAULT_CLOCK_FORMAT,
    CameraRange,
    CompressOp,
    ConvertOp,
    Operation,
    Priority,
    RedactOp,
    RedactRegion,
    ThumbnailOp,
    Timestamp,
    TranscodeOp,
    TrimOp,
    WatermarkClock,
    WatermarkOp,
)
from sparc_video.exports.plan import DEFAULT_TILE_WIDTH, check_plan, sprite_grid
from sparc_video.exports.sources import RecordingSource, SourceSpec
from sparc_video.media import capture_clock, codecs
from sparc_video.media.codecs import PRESETS
from sparc_video.storage.base import validate_key

_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")

MAX_OPERATIONS = 16
MAX_THUMBNAILS = 100
MAX_DIMENSION = 8192
MAX_REQUEST_ID_LEN = 128
MAX_WATERMARK_TEXT = 200
MAX_REDACT_REGIONS = 32
DEFAULT_REDACT_STRENGTH = 0.5
# A clock's base time: 1970 to the year 9000 (datetime ends at 9999).
MIN_CLOCK_NS, MAX_CLOCK_NS = 0, 221845392000 * 10**9
MIN_FPS, MAX_FPS = 1, 240
MIN_AUDIO_BITRATE, MAX_AUDIO_BITRATE = 16_000, 512_000
MIN_TARGET_SIZE, MAX_TARGET_SIZE = 10_000, 100_000_000_000
DEFAULT_SPRITE_FRAMES = 16

_RESOLUTION_RE = re.compile(r"^\s*(-?\d+)\s*[xX]\s*(-?\d+)\s*$")
_BITRATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)(?:bps|b)?\s*$")
_CLOCK_RE = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")
_COLOR_RE = re.compile(r"^#?[0-9a-f]{6}$")
_NTSC_RATES = {
    "23.976": Fraction(24000, 1001),
    "29.97": Fraction(30000, 1001),
    "59.94": Fraction(60000, 1001),
}


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


def parse_fps(text: str) -> Fraction:
    """`30`, `29.97` or `30000/1001` → a frame rate (NTSC decimals become their exact rates)."""
    stripped = text.strip()
    exact = _NTSC_RATES.get(stripped)
    try:
        rate = exact if exact is not None else Fraction(stripped)
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"{text!r} is not a frame rate; use e.g. 30, 29.97 or 30000/1001"
        ) from None
    if not MIN_FPS <= rate <= MAX_FPS:
        raise ValueError(f"{text!r} is out of range; use {MIN_FPS} to {MAX_FPS} frames per second")
    return rate


def parse_size_bytes(text: str) -> int:
    """A target size in the one size grammar (`sparc_video.core.sizes`): `25MB`, `500k`,
    `1.5G` (powers of 1000), `10MiB` (of 1024) or `1000000` → bytes, 10k to 100G."""
    value = parse_size(text)
    if not MIN_TARGET_SIZE <= value <= MAX_TARGET_SIZE:
        raise ValueError(f"{text!r} is out of range; use 10k to 100G")
    return value


def parse_media_time(text: str) -> float:
    """A time in a video: seconds (`12.5`) or `HH:MM:SS(.ms)`; no percentages."""
    if text.strip().endswith("%"):
        raise ValueError(f"{text!r}: use seconds such as 12.5 or HH:MM:SS.mmm, not a percentage")
    stamp = parse_timestamp(text)
    return stamp.value


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
        which = op.WhichOneof("operation")
        parsed: Operation | None
        if which == "transcode":
            parsed = _transcode(op.transcode, f"{field}.transcode", violations)
        elif which == "thumbnail":
            parsed = _thumbnail(op.thumbnail, f"{field}.thumbnail", violations)
        elif which == "convert":
            parsed = _convert(op.convert, f"{field}.convert", violations)
        elif which == "compress":
            parsed = _compress(op.compress, f"{field}.compress", violations)
        elif which == "watermark":
            parsed = _watermark(op.watermark, f"{field}.watermark", violations)
        elif which == "trim":
            parsed = _trim(op.trim, f"{field}.trim", violations)
        elif which == "redact":
            parsed = _redact(op.redact, f"{field}.redact", violations)
        else:
            violations.append(FieldViolation(field, f"set one of: {', '.join(_KINDS)}"))
            parsed = None
        if parsed is not None:
            result.append(parsed)
    if len(violations) == before:
        check_plan(result, prefix, violations)
    return result


_KINDS = ("transcode", "convert", "compress", "watermark", "trim", "redact", "thumbnail")


def _enum_value(
    value: _K, names: Mapping[_K, _V], field: str, violations: list[FieldViolation]
) -> _V | None:
    name = names.get(value)
    if name is None:
        violations.append(
            FieldViolation(
                field, f"unknown value {value}; use one of {', '.join(map(str, names.values()))}"
            )
        )
    return name


def _video_codec_name(text: str, field: str, violations: list[FieldViolation]) -> str:
    codec = codecs.video_codec(text)
    if codec is None:
        violations.append(
            FieldViolation(
                field,
                f"{text!r} is not available; the video encoders of this build are: "
                + ", ".join(
                    f"{c.name} (hevc)" if c.name == "h265" else c.name
                    for c in codecs.VIDEO_CODECS.values()
                ),
            )
        )
        return ""
    return codec.name


def _audio_codec_name(text: str, field: str, violations: list[FieldViolation]) -> str:
    name = text.strip().lower()
    if name not in codecs.AUDIO_CODECS:
        violations.append(
            FieldViolation(
                field,
                f"{text!r} is not available; the audio encoders of this build are: "
                + ", ".join(codecs.AUDIO_CODECS),
            )
        )
        return ""
    return name


def _parse(
    parser: Callable[[str], _T], text: str, field: str, violations: list[FieldViolation]
) -> _T | None:
    if not text.strip():
        return None
    try:
        return parser(text)
    except ValueError as exc:
        violations.append(FieldViolation(field, str(exc)))
        return None


def _transcode(
    options: export_pb2.TranscodeOptions, field: str, violations: list[FieldViolation]
) -> TranscodeOp | None:
    before = len(violations)
    codec = ""
    if options.codec.strip():
        codec = _video_codec_name(options.codec, f"{field}.codec", violations)
    bitrate = _parse(parse_bitrate, options.bitrate, f"{field}.bitrate", violations)
    size = _parse(parse_resolution, options.resolution, f"{field}.resolution", violations)
    preset = options.preset.strip().lower()
    if preset and preset not in PRESETS:
        violations.append(
            FieldViolation(
                f"{field}.preset", f"{options.preset!r} is not one of {', '.join(PRESETS)}"
            )
        )
    fps = _parse(parse_fps, options.fps, f"{field}.fps", violations)
    pixel_format = options.pixel_format.strip().lower()
    if pixel_format and pixel_format not in codecs.PIXEL_FORMATS:
        violations.append(
            FieldViolation(
                f"{field}.pixel_format",
                f"{options.pixel_format!r} is not one of {', '.join(codecs.PIXEL_FORMATS)}",
            )
        )
    audio_codec = ""
    if options.audio_codec.strip():
        audio_codec = _audio_codec_name(options.audio_codec, f"{field}.audio_codec", violations)
    audio_bitrate = _parse(
        parse_bitrate, options.audio_bitrate, f"{field}.audio_bitrate", violations
    )
    if audio_bitrate is not None and not MIN_AUDIO_BITRATE <= audio_bitrate <= MAX_AUDIO_BITRATE:
        violations.append(
            FieldViolation(f"{field}.audio_bitrate", f"{options.audio_bitrate!r}: use 16k to 512k")
        )
    if options.remove_audio and (options.audio_codec.strip() or options.audio_bitrate.strip()):
        violations.append(
            FieldViolation(
                f"{field}.remove_audio",
                "remove_audio leaves no audio to encode: drop audio_codec/audio_bitrate or it",
            )
        )
    hardware = _enum_value(options.hardware, HARDWARE.from_proto, f"{field}.hardware", violations)
    if len(violations) > before:
        return None
    width, height = size or (0, 0)
    return TranscodeOp(
        codec=codec,
        bitrate_bps=bitrate,
        width=width,
        height=height,
        preset=preset,
        fps=str(fps) if fps is not None else "",
        pixel_format=pixel_format,
        audio_codec=audio_codec,
        audio_bitrate_bps=audio_bitrate,
        remove_audio=options.remove_audio,
        hardware=hardware or "",
    )


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
    size = _parse(parse_resolution, options.size, f"{field}.size", violations)
    image_format = _enum_value(
        options.format, IMAGE_FORMATS.from_proto, f"{field}.format", violations
    )
    sprite = options.HasField("sprite_sheet")
    count = columns = 0
    if sprite:
        sheet = options.sprite_sheet
        count, columns = sheet.frame_count, sheet.columns
        if stamps and count:
            violations.append(
                FieldViolation(
                    f"{field}.sprite_sheet.frame_count",
                    "frame_count spaces frames evenly; with timestamps leave it 0",
                )
            )
        elif not 0 <= count <= MAX_THUMBNAILS:
            violations.append(
                FieldViolation(
                    f"{field}.sprite_sheet.frame_count", f"use 1 to {MAX_THUMBNAILS} (0: 16)"
                )
            )
        if not 0 <= columns <= MAX_THUMBNAILS:
            violations.append(
                FieldViolation(
                    f"{field}.sprite_sheet.columns", f"use 1 to {MAX_THUMBNAILS} (0: automatic)"
                )
            )
        if not stamps and not count:
            count = DEFAULT_SPRITE_FRAMES
    width, height = size or (0, 0)
    if sprite and len(violations) == before:
        cols, rows = sprite_grid(len(stamps) or count, columns)
        tile_w = width or (DEFAULT_TILE_WIDTH if not height else 0)
        if tile_w * cols > MAX_DIMENSION or height * rows > MAX_DIMENSION:
            violations.append(
                FieldViolation(
                    f"{field}.size",
                    f"a {cols}x{rows} grid of {options.size or tile_w} tiles "
                    f"is larger than {MAX_DIMENSION} pixels; use smaller tiles or fewer frames",
                )
            )
    if len(violations) > before:
        return None
    return ThumbnailOp(
        timestamps=tuple(stamps) if stamps else ThumbnailOp.timestamps,
        width=width,
        height=height,
        format=image_format or "jpeg",
        sprite=sprite,
        sprite_frame_count=count if sprite and not stamps else 0,
        sprite_columns=columns,
    )


def _convert(
    options: export_pb2.ConvertOptions, field: str, violations: list[FieldViolation]
) -> ConvertOp | None:
    before = len(violations)
    container = CONTAINERS.from_proto.get(options.container)
    if container is None:
        violations.append(
            FieldViolation(
                f"{field}.container",
                "required: one of "
                + ", ".join(f"CONTAINER_{c.upper()}" for c in codecs.CONTAINERS),
            )
        )
    video_codec = audio_codec = ""
    if options.video_codec.strip():
        video_codec = _video_codec_name(options.video_codec, f"{field}.video_codec", violations)
    if options.audio_codec.strip():
        audio_codec = _audio_codec_name(options.audio_codec, f"{field}.audio_codec", violations)
    if container is not None:
        box = codecs.CONTAINERS[container]
        if video_codec and codecs.VIDEO_CODECS[video_codec].canonical not in box.video_codecs:
            violations.append(
                FieldViolation(
                    f"{field}.video_codec",
                    f"{container} cannot hold {video_codec}; it holds "
                    + ", ".join(codecs.video_codecs_in(box)),
                )
            )
        if audio_codec and codecs.AUDIO_CODECS[audio_codec].canonical not in box.audio_codecs:
            violations.append(
                FieldViolation(
                    f"{field}.audio_codec",
                    f"{container} cannot hold {audio_codec}; it holds "
                    + ", ".join(codecs.audio_codecs_in(box)),
                )
            )
    if len(violations) > before or container is None:
        return None
    return ConvertOp(container=container, video_codec=video_codec, audio_codec=audio_codec)


def _compress(
    options: export_pb2.CompressOptions, field: str, violations: list[FieldViolation]
) -> CompressOp | None:
    before = len(violations)
    quality = _enum_value(options.quality, QUALITIES.from_proto, f"{field}.quality", violations)
    crf = options.crf if options.HasField("crf") else None
    if crf is not None and not 0 <= crf <= codecs.CRF_MAX:
        violations.append(
            FieldViolation(f"{field}.crf", f"{crf} is out of range; use 0 to {codecs.CRF_MAX}")
        )
    max_bitrate = _parse(parse_bitrate, options.max_bitrate, f"{field}.max_bitrate", violations)
    buffer_size = _parse(parse_bitrate, options.buffer_size, f"{field}.buffer_size", violations)
    if buffer_size is not None and max_bitrate is None and options.max_bitrate.strip() == "":
        violations.append(
            FieldViolation(f"{field}.buffer_size", "buffer_size goes with max_bitrate; set both")
        )
    target = _parse(parse_size_bytes, options.target_size, f"{field}.target_size", violations)
    if options.target_size.strip() and (crf is not None or quality):
        violations.append(
            FieldViolation(
                f"{field}.target_size",
                "target_size sets an average bitrate; it cannot be combined with crf or quality",
            )
        )
    if len(violations) > before:
        return None
    return CompressOp(
        quality=quality or "",
        crf=crf,
        max_bitrate_bps=max_bitrate,
        buffer_size_bits=buffer_size,
        target_size_bytes=target,
    )


def _watermark(
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
    position = _enum_value(options.position, POSITIONS.from_proto, f"{field}.position", violations)
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
    start = _parse(parse_media_time, options.start, f"{field}.start", violations)
    end = _parse(parse_media_time, options.end, f"{field}.end", violations)
    duration = _parse(parse_media_time, options.duration, f"{field}.duration", violations)
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


def _trim(
    options: export_pb2.TrimOptions, field: str, violations: list[FieldViolation]
) -> TrimOp | None:
    before = len(violations)
    start, end, duration = _span(options, field, violations)
    mode = _enum_value(options.mode, TRIM_MODES.from_proto, f"{field}.mode", violations)
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


def _redact(
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
    mode = _enum_value(options.mode, REDACT_MODES.from_proto, f"{field}.mode", violations)
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


def validate_key_field(key: str, field: str, violations: list[FieldViolation]) -> str:
    try:
        return validate_key(key)
    except ValueError as exc:
        violations.append(FieldViolation(field, str(exc)))
        return ""


def validate_source_key(key: str, field: str, violations: list[FieldViolation]) -> str:
    if not key:
        violations.append(FieldViolation(field, "required: the storage key of the source video"))
        return ""
    try:
        return validate_key(key)
    except ValueError as exc:
        violations.append(FieldViolation(field, str(exc)))
        return ""


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


def validate_source(
    source: export_pb2.ExportSource, field: str, violations: list[FieldViolation]
) -> SourceSpec:
    """The source oneof: an object key, a recording name or a camera time range."""
    which = source.WhichOneof("source")
    if which == "recording":
        try:
            camera_id, recording_id = camera_validation.parse_recording_name(
                source.recording, f"{field}.recording"
            )
        except InvalidArgument as exc:
            violations.extend(exc.violations)
            return ""
        return RecordingSource(camera_id, recording_id)
    if which == "camera_range":
        return _camera_range(source.camera_range, f"{field}.camera_range", violations)
    if which is None:
        violations.append(
            FieldViolation(
                f"{field}.object_key",
                "required: the storage key of the source video (or a recording or camera_range)",
            )
        )
        return ""
    return validate_source_key(source.object_key, f"{field}.object_key", violations)


def _camera_range(
    wanted: export_pb2.CameraTimeRange, field: str, violations: list[FieldViolation]
) -> SourceSpec:
    before = len(violations)
    camera_id = ""
    try:
        camera_id = camera_validation.parse_camera_name(wanted.camera, f"{field}.camera")
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    bounds: list[int] = []
    for name in ("start_time", "end_time"):
        if not wanted.HasField(name):
            violations.append(FieldViolation(f"{field}.{name}", "required: a UTC time"))
            continue
        ns = getattr(wanted, name).ToNanoseconds()
        if ns < 0:
            violations.append(FieldViolation(f"{field}.{name}", "must not be before 1970"))
        bounds.append(ns)
    if len(bounds) == 2 and bounds[1] <= bounds[0]:
        violations.append(FieldViolation(f"{field}.end_time", "must be after start_time"))
    gap_mode = GAP_MODES.from_proto.get(wanted.gap_mode)
    if gap_mode is None:
        violations.append(
            FieldViolation(f"{field}.gap_mode", "use GAP_MODE_CLOSE or GAP_MODE_SLATE")
        )
    if len(violations) > before or gap_mode is None:
        return ""
    return CameraRange(
        camera_id=camera_id,
        start_ns=bounds[0],
        end_ns=bounds[1],
        gap_mode=gap_mode,
        wall_clock_subtitles=wanted.wall_clock_subtitles,
    )


def validate_request_id(request_id: str, violations: list[FieldViolation]) -> str:
    if len(request_id) > MAX_REQUEST_ID_LEN or any(ord(c) < 32 for c in request_id):
        violations.append(
            FieldViolation("request_id", f"at most {MAX_REQUEST_ID_LEN} printable characters")
        )
    return request_id


def validate_priority(
    value: export_pb2.Export.Priority.ValueType, field: str, violations: list[FieldViolation]
) -> Priority:
    if value not in PRIORITIES.from_proto:
        violations.append(
            FieldViolation(field, f"{value} is not a priority; use INTERACTIVE or BATCH")
        )
        return Priority.INTERACTIVE
    return PRIORITIES.from_proto[value]


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
