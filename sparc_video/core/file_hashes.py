"""SHA-256 of files on disk: the one reading loop behind the outputs' hashes, the sources read
by a worker, recordings probed at registration, downloads and bundle verification."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 1 << 20


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, hex SHA-256) of the file's content, read once in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def file_sha256(path: Path) -> str:
    return file_digest(path)[1]
