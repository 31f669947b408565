"""The export domain model: validated operations, progress, outputs and the export record.

These are plain dataclasses, independent of protobuf: the server builds them from validated
requests (`validation.py`), stores them in Redis as JSON (`records.py`), the worker reads them
back and the RPC layer converts them to protos (`proto_mapping.py`).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal


class ExportState(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({ExportState.SUCCEEDED, ExportState.FAILED, ExportState.CANCELLED})


@dataclass(frozen=True)
class Timestamp:
    """A point in a video: a fraction of its duration, or seconds from its start."""

    kind: Literal["percent", "seconds"]
    value: float

    def resolve(self, duration_s: float) -> float:
        return duration_s * self.value / 100.0 if self.kind == "percent" else self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.kind == "percent" else f"{self.value:g}s"


@dataclass(frozen=True)
class TranscodeOp:
    """Re-encode the video. `width`/`height` 0 means "keep" (aspect-preserving when one is 0)."""

    codec: str = "h264"
    bitrate_bps: int | None = None
    width: int = 0
    height: int = 0
    preset: str = "medium"
    name: Literal["transcode"] = "transcode"


@dataclass(frozen=True)
class ThumbnailOp:
    """Grab still images at the given times; `width`/`height` 0 as for TranscodeOp."""

    timestamps: tuple[Timestamp, ...] = (Timestamp("percent", 50.0),)
    width: int = 0
    height: int = 0
    format: Literal["jpeg"] = "jpeg"
    name: Literal["thumbnail"] = "thumbnail"


Operation = TranscodeOp | ThumbnailOp


@dataclass
class Progress:
    percent: float = 0.0
    current_operation: str = ""
    operation_index: int = 0
    operation_count: int = 0
    timemark_s: float = 0.0
    fps: float = 0.0
    speed: float = 0.0
    eta_s: float | None = None


class OutputKind(enum.StrEnum):
    VIDEO = "VIDEO"
    THUMBNAIL = "THUMBNAIL"


@dataclass(frozen=True)
class Output:
    kind: OutputKind
    storage_key: str
    size_bytes: int
    sha256: str
    content_type: str
    operation_index: int
    width: int = 0
    height: int = 0
    duration_s: float | None = None
    timestamp_s: float | None = None
    video_codec: str = ""
    audio_codec: str = ""


@dataclass(frozen=True)
class ExportError:
    """Why an export failed: a gRPC status code (int), a stable reason and a message."""

    code: int
    reason: str
    message: str


@dataclass
class ExportRecord:
    """The truth about one export, stored in Redis and updated by the worker running it."""

    id: str
    source_key: str
    operations: list[Operation]
    state: ExportState = ExportState.QUEUED
    attempt: int = 0
    progress: Progress = field(default_factory=Progress)
    outputs: list[Output] = field(default_factory=list)
    error: ExportError | None = None
    create_time: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    update_time: float = 0.0
    request_id: str = ""
    # Attempts that ended in a transient failure: the retry budget. Attempts interrupted by a
    # worker shutdown or a lost worker are not counted here.
    failed_attempts: int = 0
    # While RETRYING: when the next attempt may start (unix seconds).
    next_attempt_time: float | None = None
    # The worker running the current attempt.
    worker_id: str = ""

    @property
    def name(self) -> str:
        return f"exports/{self.id}"

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ExportRecord:
        # Fields added later are optional in stored JSON, so older records keep loading.
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["operations"] = [_operation_from_dict(op) for op in data["operations"]]
        values["state"] = ExportState(data["state"])
        values["progress"] = Progress(**data["progress"])
        values["outputs"] = [
            Output(**{**out, "kind": OutputKind(out["kind"])}) for out in data["outputs"]
        ]
        values["error"] = ExportError(**data["error"]) if data.get("error") else None
        return cls(**values)


def _operation_from_dict(data: dict[str, Any]) -> Operation:
    if data["name"] == "transcode":
        return TranscodeOp(**data)
    if data["name"] == "thumbnail":
        stamps = tuple(Timestamp(kind=t["kind"], value=t["value"]) for t in data["timestamps"])
        return ThumbnailOp(**{**data, "timestamps": stamps})
    raise ValueError(f"unknown operation {data['name']!r}")
