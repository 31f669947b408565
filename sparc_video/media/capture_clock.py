"""The burned-in capture clock's text: a small strftime-like format of our own.

Only the fields below exist; everything else in a format is literal text. The format is
interpreted here, never handed to `strftime` (whose other fields leak locale and platform
behaviour) nor to FFmpeg (whose drawtext expansion can read files): it only ever becomes
characters that Pillow draws.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo

MAX_FORMAT_LENGTH = 64
FIELDS = {
    "Y": "year",
    "m": "month",
    "d": "day",
    "H": "hour",
    "M": "minute",
    "S": "second",
    "L": "milliseconds",
    "%": "a literal %",
}
_TIME_ZONE_RE = re.compile(r"^[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A parsed format: literal strings and one-letter fields.
Tokens = tuple[tuple[bool, str], ...]


def parse_format(text: str) -> Tokens:
    """`%Y-%m-%d %H:%M:%S.%L` → tokens; ValueError naming what is wrong."""
    if not text.strip():
        raise ValueError("empty; use e.g. %Y-%m-%d %H:%M:%S")
    if len(text) > MAX_FORMAT_LENGTH:
        raise ValueError(f"at most {MAX_FORMAT_LENGTH} characters")
    if any(unicodedata.category(c)[0] == "C" for c in text):
        raise ValueError("one line of printable characters, please")
    tokens: list[tuple[bool, str]] = []
    literal = ""
    chars = iter(text)
    for char in chars:
        if char != "%":
            literal += char
            continue
        field = next(chars, "")
        if field not in FIELDS:
            allowed = " ".join(f"%{f}" for f in FIELDS)
            shown = f"%{field}" if field else "a lone % at the end"
            raise ValueError(f"{shown} is not a clock field; use {allowed}")
        if field == "%":
            literal += "%"
            continue
        if literal:
            tokens.append((False, literal))
            literal = ""
        tokens.append((True, field))
    if literal:
        tokens.append((False, literal))
    if not any(is_field for is_field, _ in tokens):
        raise ValueError("no clock field in it; use e.g. %H:%M:%S")
    return tuple(tokens)


def time_zone(name: str) -> tzinfo:
    """An IANA time zone by name ("" or UTC: UTC); ValueError when there is no such zone."""
    if not name or name.upper() == "UTC":
        return UTC
    if len(name) > 64 or not _TIME_ZONE_RE.match(name):
        raise ValueError(f"{name!r} is not an IANA time zone name such as Europe/Berlin")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known IANA time zone, e.g. Europe/Berlin") from None


def at(base_ns: int, offset_s: float, zone: tzinfo) -> datetime:
    """The wall-clock time `offset_s` after `base_ns` (UTC nanoseconds), in `zone`, to the
    millisecond (rounded down: a clock shows a second only once it has begun)."""
    # Via microseconds: 30 / 30 must not come out as 0.999999 s and show the second before.
    millis = (base_ns // 1000 + round(offset_s * 1_000_000)) // 1000
    return (_EPOCH + timedelta(milliseconds=millis)).astimezone(zone)


def render(tokens: Tokens, when: datetime) -> str:
    values = {
        "Y": f"{when.year:04d}",
        "m": f"{when.month:02d}",
        "d": f"{when.day:02d}",
        "H": f"{when.hour:02d}",
        "M": f"{when.minute:02d}",
        "S": f"{when.second:02d}",
        "L": f"{when.microsecond // 1000:03d}",
    }
    return "".join(values[text] if is_field else text for is_field, text in tokens)
