"""Extra storage objects a plan reads (watermark images), and where the worker puts them.

The worker downloads them into the job's temp dir before the media child starts; the child
finds them at the same deterministic paths, so nothing but the operations has to travel to it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from sparc_video.core.errors import (
    MediaError,
    ObjectNotFound,
    ObjectTooLarge,
    PermanentProcessingError,
)
from sparc_video.exports.operations import Operation, WatermarkOp

if TYPE_CHECKING:
    # Not at run time: the media child imports this module, and the storage backends bring
    # boto and friends (tens of MB) that it never uses.
    from sparc_video.storage import Storage


# A watermark is a logo: far smaller than this. Its pixel count is checked again on decoding.
MAX_IMAGE_BYTES = 32 * 1024 * 1024


def asset_keys(operations: Sequence[Operation]) -> list[str]:
    """Storage keys the operations read besides the source, each once, in order."""
    keys: list[str] = []
    for op in operations:
        if isinstance(op, WatermarkOp) and op.image_key and op.image_key not in keys:
            keys.append(op.image_key)
    return keys


def asset_path(workdir: Path, key: str) -> Path:
    """Where the object `key` lives during a job: named by a hash, never by the key itself."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    suffix = PurePosixPath(key).suffix.lower()
    if not suffix[1:].isalnum() or len(suffix) > 6:
        suffix = ""
    return workdir / "assets" / f"{digest}{suffix}"


def asset_paths(workdir: Path, operations: Sequence[Operation]) -> dict[str, Path]:
    return {key: asset_path(workdir, key) for key in asset_keys(operations)}


async def download_assets(
    storage: Storage, workdir: Path, operations: Sequence[Operation]
) -> dict[str, Path]:
    """Download the extra objects next to the source; a vanished one fails the export."""
    paths = asset_paths(workdir, operations)
    for key, path in paths.items():
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        try:
            await storage.download_file(key, path, max_bytes=MAX_IMAGE_BYTES)
        except ObjectTooLarge as exc:
            raise MediaError(
                f"the watermark image {key!r} is {exc.size_bytes} bytes; at most "
                f"{MAX_IMAGE_BYTES} are accepted",
                reason="INVALID_WATERMARK",
            ) from exc
        except ObjectNotFound as exc:
            raise PermanentProcessingError(
                f"the watermark image {key!r} no longer exists in storage",
                reason="WATERMARK_NOT_FOUND",
            ) from exc
    return paths
