"""Secret key files the service creates for itself on first start (mode 0600).

Local storage's link-signing key, the camera credentials key and the manifest signing key all
default to a file in the local storage root, so a single machine works without configuration
and replicas sharing the directory agree on one key.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path


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
