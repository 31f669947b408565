"""Fetching an attempt's sources into its scratch directory, each hashed as read.

The SHA-256 and size of every source as the worker read it go into the evidence manifest; a
camera range's recordings are fetched once each, and their spans (with slates for the gaps, if
asked) become the join the media child performs first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from sparc_video.core.errors import (
    MediaLimitExceeded,
    ObjectNotFound,
    ObjectTooLarge,
    PermanentProcessingError,
)
from sparc_video.core.file_hashes import file_sha256
from sparc_video.evidence import manifest
from sparc_video.exports.models import Coverage, CoverageSpan
from workers.job.context import WorkerContext
from workers.pipeline.join import JoinSegment, JoinSpec


async def download_source(worker: WorkerContext, key: str, path: Path) -> tuple[int, str]:
    """Fetch a source; its size and SHA-256 as read, for the manifest."""
    try:
        # Checked at CreateExport too; the object may have been replaced since.
        size = await worker.storage.download_file(
            key, path, max_bytes=worker.settings.max_upload_size
        )
    except ObjectTooLarge as exc:
        raise MediaLimitExceeded(
            f"the source {key!r} is {exc.size_bytes} bytes, above MAX_VIDEO_UPLOAD_SIZE "
            f"({exc.max_bytes} bytes); it was not downloaded",
            reason="SOURCE_TOO_LARGE",
        ) from exc
    except ObjectNotFound as exc:
        raise PermanentProcessingError(
            f"the source video {key!r} no longer exists in storage",
            reason="SOURCE_NOT_FOUND",
        ) from exc
    return size, await asyncio.to_thread(file_sha256, path)


async def download_spans(
    worker: WorkerContext, coverage: Coverage, slates: bool, workdir: Path
) -> tuple[JoinSpec, list[manifest.SourceEntry]]:
    """Fetch each recording once; the spans (and with `slates` the gaps) in output order, and
    the sources as read."""
    paths: dict[str, Path] = {}
    read: dict[str, tuple[int, str]] = {}
    for span in coverage.spans:
        if span.object_key not in paths:
            path = workdir / f"recording-{len(paths)}{Path(span.object_key).suffix[:8]}"
            read[span.object_key] = await download_source(worker, span.object_key, path)
            paths[span.object_key] = path
    sources = [
        source_entry(span.object_key, *read[span.object_key], (span,)) for span in coverage.spans
    ]
    pieces: list[tuple[int, JoinSegment]] = [
        (
            span.output_offset_ns,
            JoinSegment(
                path=paths[span.object_key],
                start_ns=span.start_ns,
                duration_s=span.duration_ns / 1e9,
                source_offset_s=span.source_offset_ns / 1e9,
            ),
        )
        for span in coverage.spans
    ]
    if slates:
        pieces += [
            (gap.output_offset_ns, JoinSegment(None, gap.start_ns, gap.duration_ns / 1e9))
            for gap in coverage.gaps
        ]
    return JoinSpec(tuple(segment for _, segment in sorted(pieces, key=lambda p: p[0]))), sources


def source_entry(
    key: str, size: int, sha256: str, spans: Sequence[CoverageSpan]
) -> manifest.SourceEntry:
    """A source object as read; for a recording, which one and the wall-clock part used."""
    if not spans:
        return manifest.SourceEntry(key, size, sha256)
    return manifest.SourceEntry(
        key,
        size,
        sha256,
        recording=spans[0].recording_name,
        camera=f"cameras/{spans[0].camera_id}",
        start_time=spans[0].start_ns / 1e9,
        end_time=spans[-1].end_ns / 1e9,
    )
