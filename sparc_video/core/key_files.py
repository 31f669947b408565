"""Secret key files the service creates for itself on first start (mode 0600).

Local storage's link-signing key, the camera credentials key and the manifest signing key all
default to a file in the local storage root, so a single machine works without configuration
and replicas sharing the directory agree on one key. `configured_or_kept` is the one
"the configured key, else the kept one" rule all three follow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def load_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes of the key file at `path`, writing `make()` there first if it is missing.

    The new key is written to a private temporary file and published with link(), which either
    puts the complete file in place or fails because another process got there first: no one
    ever reads a half-written key, and every process ends up with the same key.
    """
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(make())
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink()
    return path.read_bytes()


def configured_or_kept(
    configured: str | None,
    path: Path,
    *,
    make: Callable[[], bytes],
    parse: Callable[[str], T],
    variable: str,
    what: str,
    shared: bool,
) -> T:
    """The key set in `variable` (`configured`), else the one kept in the key file at `path`,
    made by `make()` on first start. `parse` reads either, raising ValueError if it is unusable.

    `shared`: other machines need the same key (S3 storage), so relying on a kept key is
    logged as a warning: processes that do not share the directory would use other keys.
    """
    if configured:
        return parse(configured)
    if shared:
        log.warning(
            "%s is not set: the %s key is kept in %s; processes that do not share that "
            "directory use other keys",
            variable,
            what,
            path.parent,
        )
    data = load_or_create(path, make)
    try:
        return parse(data.decode("utf-8", "replace"))
    except ValueError as exc:
        raise RuntimeError(f"the {what} key file {path} is damaged: {exc}") from None
