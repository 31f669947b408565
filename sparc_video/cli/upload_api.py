"""The logic of `sparc-video upload FILE` through the API (UploadService): no storage
credentials needed. The command itself (arguments, the progress bar) is wired in `cli`;
this module only uploads and reports progress."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sparc_video.client.uploads import AsyncUploadClient, UploadProgress


async def upload_via_api(
    client: AsyncUploadClient,
    path: Path,
    progress: Callable[[UploadProgress], None] | None = None,
    *,
    resume: str | None = None,
    filename: str | None = None,
    content_type: str | None = None,
) -> str:
    """Upload `path` and return the object key to export (`export create KEY`).

    `progress` is called after the upload is declared and after every part (`sent_bytes` of
    `size_bytes`; `upload` is the name to pass as `resume` after an interruption, so that
    only the parts storage lacks are sent)."""
    return await client.upload_file(
        path,
        upload=resume,
        filename=filename,
        content_type=content_type,
        on_progress=progress,
    )
