"""Where a request may take the service: which storage keys it may read, how long links last.

Sources, watermark images and recordings are read from the configured bucket (or local storage
root) only, by keys `storage.base.validate_key` accepts (no `..`, absolute paths, URLs,
backslashes or control characters). On top of that, SOURCE_KEY_PREFIXES names the prefixes
they may come from; unset, any key outside the service's own outputs is allowed, so an export
cannot re-read another export's outputs or a camera's snapshots by naming their keys.
"""

from __future__ import annotations

import re

from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.core.settings import Settings

# Prefixes of what the service writes itself; never an input unless SOURCE_KEY_PREFIXES says so.
OUTPUT_PREFIX = "exports/"
_SNAPSHOT_RE = re.compile(r"^cameras/[^/]+/snapshots/")


def source_key_problem(key: str, settings: Settings, *, camera_id: str = "") -> str | None:
    """Why `key` (already a valid key) may not be read as an input, or None.

    `camera_id`: reading a recording of that camera, whose own folder (where its upload links
    point) is always allowed.
    """
    if camera_id and key.startswith(f"cameras/{camera_id}/") and not _SNAPSHOT_RE.match(key):
        return None
    allowed = settings.source_key_prefixes
    if allowed:
        if any(key.startswith(prefix) for prefix in allowed):
            return None
        return (
            f"{key[:200]!r} is outside the prefixes inputs may come from "
            f"(SOURCE_KEY_PREFIXES={','.join(allowed)})"
        )
    if key.startswith(OUTPUT_PREFIX) or _SNAPSHOT_RE.match(key):
        return (
            f"{key[:200]!r} is an output of this service, not an input; inputs may come from "
            "any other key (set SOURCE_KEY_PREFIXES to choose)"
        )
    return None


def check_source_keys(keys: list[tuple[str, str]], settings: Settings, camera_id: str = "") -> None:
    """InvalidArgument naming every (field, key) that may not be read."""
    violations = [
        FieldViolation(field, problem)
        for field, key in keys
        if (problem := source_key_problem(key, settings, camera_id=camera_id)) is not None
    ]
    if violations:
        raise InvalidArgument(violations)


def check_ttl(ttl_s: int, settings: Settings, field: str) -> None:
    """A link lifetime a client asked for (0: the default) must stay within the cap: a longer
    one is refused rather than shortened, so no client believes its link lasts longer."""
    cap = settings.download_url_max_ttl_s
    if not 0 <= ttl_s <= cap:
        raise InvalidArgument(
            [
                FieldViolation(
                    field,
                    f"{ttl_s} s is above DOWNLOAD_URL_MAX_TTL ({cap} s); ask for {cap} or less",
                )
            ]
        )
