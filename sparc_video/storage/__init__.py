"""Where source videos and export outputs live: an S3 bucket, or a local directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sparc_video.settings import Settings
from sparc_video.storage.base import ObjectInfo, Storage, validate_key
from sparc_video.storage.local import LocalStorage
from sparc_video.storage.s3 import S3Storage

__all__ = ["LocalStorage", "ObjectInfo", "S3Storage", "Storage", "open_storage", "validate_key"]


@asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    """S3Storage when S3_BUCKET is set, else LocalStorage; closed when the context exits."""
    storage: Storage
    if settings.s3_bucket:
        storage = await S3Storage.open(settings)
    else:
        storage = LocalStorage.from_settings(settings)
    try:
        yield storage
    finally:
        await storage.aclose()
