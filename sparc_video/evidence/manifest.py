"""The manifest of a finished export: what it read, what it did, what it produced, for whom.

The worker writes it as canonical JSON (`signing.canonical_json`) next to the outputs, at
`exports/{id}/{attempt}/manifest.json`, with a detached Ed25519 signature in
`manifest.json.sig` (see `signing.py`). Anyone holding the service's public key
(GetManifestSigningKey) can then check a downloaded bundle offline: the signature covers the
manifest's bytes, the manifest lists every output's key, size and SHA-256.

Sources are a list so an export reading several recordings (a camera time range) lists each
with its part of the timeline, plus the gaps the range had; an export of one stored object has
one entry and no gaps.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from sparc_video import __version__
from sparc_video.evidence.bundle import MANIFEST_NAME, SIGNATURE_NAME
from sparc_video.evidence.signing import canonical_json
from sparc_video.exports.models import ExportRecord, Output
from sparc_video.exports.proto import operation_to_proto

FORMAT = "sparc-video-manifest/1"
__all__ = [
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "Gap",
    "ManifestContext",
    "SourceEntry",
    "build",
    "coverage_gaps",
]
SERVICE_VERSION = __version__


@dataclass(frozen=True)
class SourceEntry:
    """One object the export read, hashed from the bytes the worker actually read."""

    storage_key: str
    size_bytes: int
    sha256: str
    # Recordings of a camera: which recording, whose camera, and the part of the timeline
    # (unix seconds) the export used.
    recording: str = ""
    camera: str = ""
    start_time: float | None = None
    end_time: float | None = None


@dataclass(frozen=True)
class Gap:
    """A stretch of a requested time range no recording covered (unix seconds)."""

    start_time: float
    end_time: float
    camera: str = ""
    # Why the recorder has no footage there (the coverage's reasons); "" when none is known.
    reason: str = ""


def coverage_gaps(record: ExportRecord) -> list[Gap]:
    """The gaps of a camera-range export's coverage, with their reasons."""
    if record.coverage is None:
        return []
    camera = f"cameras/{record.camera_range.camera_id}" if record.camera_range else ""
    return [
        Gap(gap.start_ns / 1e9, gap.end_ns / 1e9, camera, gap.reason)
        for gap in record.coverage.gaps
    ]


@dataclass(frozen=True)
class ManifestContext:
    """What the record does not hold: the sources as read, the gaps, who processed it."""

    sources: Sequence[SourceEntry]
    gaps: Sequence[Gap]
    outputs: Sequence[Output]
    storage_prefix: str
    end_time: float
    worker_id: str
    key_id: str


def build(record: ExportRecord, context: ManifestContext) -> dict[str, Any]:
    """The manifest as a JSON value; `render` turns it into the bytes that are signed."""
    return {
        "format": FORMAT,
        "export": record.name,
        "attempt": record.attempt,
        "storage_prefix": context.storage_prefix,
        "requester": record.requester,
        "case_id": record.case_id,
        "purpose": record.purpose,
        "request_id": record.request_id,
        "sources": [_source(entry) for entry in context.sources],
        "gaps": [_gap(gap) for gap in context.gaps],
        "operations": [
            json_format.MessageToDict(operation_to_proto(op), preserving_proto_field_name=True)
            for op in record.operations
        ],
        "outputs": [_output(output) for output in context.outputs],
        "create_time": rfc3339(record.create_time),
        "start_time": rfc3339(record.start_time) if record.start_time else None,
        "end_time": rfc3339(context.end_time),
        "worker_id": context.worker_id,
        "service_version": SERVICE_VERSION,
        "signing_key_id": context.key_id,
    }


def render(manifest: dict[str, Any]) -> bytes:
    return canonical_json(manifest)


def rfc3339(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _source(entry: SourceEntry) -> dict[str, Any]:
    data: dict[str, Any] = {
        "storage_key": entry.storage_key,
        "size_bytes": entry.size_bytes,
        "sha256": entry.sha256,
    }
    if entry.recording:
        data["recording"] = entry.recording
    if entry.camera:
        data["camera"] = entry.camera
    if entry.start_time is not None:
        data["start_time"] = rfc3339(entry.start_time)
    if entry.end_time is not None:
        data["end_time"] = rfc3339(entry.end_time)
    return data


def _gap(gap: Gap) -> dict[str, Any]:
    data: dict[str, Any] = {
        "start_time": rfc3339(gap.start_time),
        "end_time": rfc3339(gap.end_time),
    }
    if gap.camera:
        data["camera"] = gap.camera
    if gap.reason:
        data["reason"] = gap.reason
    return data


def _output(output: Output) -> dict[str, Any]:
    return {
        "storage_key": output.storage_key,
        "kind": output.kind.value,
        "content_type": output.content_type,
        "operation_index": output.operation_index,
        "size_bytes": output.size_bytes,
        "sha256": output.sha256,
    }
