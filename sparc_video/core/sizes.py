"""The one grammar of sizes in bytes, for settings (`MAX_VIDEO_UPLOAD_SIZE=5GB`) and requests
(a target size of `25MB`).

A number (decimals allowed) and an optional unit, any case, spaces allowed between:
`B`; `k`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB` (powers of 1000); `KiB`, `MiB`, `GiB`, `TiB`
(powers of 1024). `1024` is 1024 bytes, `1.5 gb` 1,500,000,000, `512MiB` 536,870,912.
"""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2,
    "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
# How format_size writes a size, largest first.
_NAMES = [("TiB", 1024**4), ("TB", 1000**4), ("GiB", 1024**3), ("GB", 1000**3),
          ("MiB", 1024**2), ("MB", 1000**2), ("KiB", 1024), ("KB", 1000)]  # fmt: skip

SIZE_HELP = "a number of bytes or e.g. 500MB, 5GB, 2GiB"


def parse_size(text: str) -> int:
    """`5GB` → 5_000_000_000, `512MiB` → 536_870_912, `500k` → 500_000, `1024` → 1024 bytes;
    ValueError naming the text otherwise."""
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size; use {SIZE_HELP}")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: int) -> str:
    """The shortest exact spelling: 5_000_000_000 → `5GB`, 4 * 1024**3 → `4GiB`; a size no
    unit divides stays a number of bytes."""
    for name, unit in _NAMES:
        if size and size % unit == 0:
            return f"{size // unit}{name}"
    return str(size)
