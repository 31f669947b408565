"""Uploads of source videos by clients through expiring per-part URLs (UploadService)."""

from __future__ import annotations

from sparc_video.uploads.models import UploadPart, UploadRecord, UploadState, UploadView
from sparc_video.uploads.records import UploadStore
from sparc_video.uploads.service import Uploads

__all__ = ["UploadPart", "UploadRecord", "UploadState", "UploadStore", "UploadView", "Uploads"]
