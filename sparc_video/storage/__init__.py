"""Where source videos and export outputs live: an S3 bucket, or a local directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sparc_video.core.settings import Settings
from sparc_video.storage.base import (
    ManagedStorage,
    ObjectInfo,
    Storage,
    UploadTarget,
    validate_key,
)
from sparc_video.storage.local import LocalStorage
from sparc_video.storage.multipart import MultipartStorage, PendingMultipart, StoredPart
from sparc_video.storage.s3 import S3Storage

__all__ = [
    "LocalStorage",
    "ManagedStorage",
    "MultipartStorage",
    "ObjectInfo",
    "PendingMultipart",
    "S3Storage",
    "Storage",
    "StoredPart",
    "UploadTarget",
    "open_storage",
    "validate_key",
]


@asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[S3Storage | LocalStorage]:
    """S3Storage when S3_BUCKET is set, else LocalStorage; closed when the context exits."""
    storage: S3Storage | LocalStorage
    if settings.s3_bucket:
        storage = await S3Storage.open(settings)
    else:
        storage = LocalStorage.from_settings(settings)
    try:
        yield storage
    finally:
        await storage.aclose()
