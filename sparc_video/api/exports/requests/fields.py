"""Field parsers and checks shared by the parts of a CreateExport request: sizes, rates, times,
enum values, codec names and storage keys. Each parser raises ValueError with a message for the
caller; `parse_text` turns that into a FieldViolation on the field."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import TypeVar

from sparc_video.core.errors import FieldViolation
from sparc_video.core.sizes import parse_size
from sparc_video.exports.operations import Timestamp
from sparc_video.media import codecs
from sparc_video.storage.base import validate_key

_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")

MAX_DIMENSION = 8192
MIN_FPS, MAX_FPS = 1, 240
MIN_TARGET_SIZE, MAX_TARGET_SIZE = 10_000, 100_000_000_000
_RESOLUTION_RE = re.compile(r"^\s*(-?\d+)\s*[xX]\s*(-?\d+)\s*$")
_BITRATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)(?:bps|b)?\s*$")
_CLOCK_RE = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")
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


def parse_text(
    parser: Callable[[str], _T], text: str, field: str, violations: list[FieldViolation]
) -> _T | None:
    if not text.strip():
        return None
    try:
        return parser(text)
    except ValueError as exc:
        violations.append(FieldViolation(field, str(exc)))
        return None


def enum_value(
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


def video_codec_name(text: str, field: str, violations: list[FieldViolation]) -> str:
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


def audio_codec_name(text: str, field: str, violations: list[FieldViolation]) -> str:
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


def validate_key_field(key: str, field: str, violations: list[FieldViolation]) -> str:
    try:
        return validate_key(key)
    except ValueError as exc:
        violations.append(FieldViolation(field, str(exc)))
        return ""
