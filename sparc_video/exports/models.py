"""The export domain model: validated operations, progress, outputs and the export record.

These are plain dataclasses, independent of protobuf: the server builds them from validated
requests (`api/exports/requests/`), stores them in Redis as JSON (`records.py`), the worker
reads them back and the RPC layer converts them to protos (`api/exports/mapping.py`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from sparc_video.core.errors import ErrorRecord
from sparc_video.exports.operations import Operation, operation_from_dict


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


class Priority(enum.StrEnum):
    """Interactive exports (someone is waiting) start before batch work queued around them."""

    INTERACTIVE = "INTERACTIVE"
    BATCH = "BATCH"


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
    SPRITE_SHEET = "SPRITE_SHEET"


@dataclass(frozen=True)
class MediaFacts:
    """What one produced file is, as the media child measured it: the facts an `Output` keeps
    beside where it was stored."""

    kind: OutputKind
    content_type: str
    operation_index: int
    width: int = 0
    height: int = 0
    duration_s: float | None = None
    timestamp_s: float | None = None
    video_codec: str = ""
    audio_codec: str = ""
    # Fast trim: source time of the keyframe the copied stream starts from.
    first_keyframe_s: float | None = None
    # FFmpeg encoder of a re-encoded video ("" when copied).
    video_encoder: str = ""
    # Sprite sheets: the grid, and each tile's media time, row by row.
    sprite_columns: int = 0
    sprite_rows: int = 0
    tile_width: int = 0
    tile_height: int = 0
    tile_times_s: tuple[float, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Output(MediaFacts):
    """A stored output of an export: its media facts and the object that holds it."""

    storage_key: str
    size_bytes: int
    sha256: str

    @classmethod
    def stored(cls, facts: MediaFacts, *, storage_key: str, size_bytes: int, sha256: str) -> Output:
        values = {f.name: getattr(facts, f.name) for f in fields(MediaFacts)}
        return cls(**values, storage_key=storage_key, size_bytes=size_bytes, sha256=sha256)


GapMode = Literal["close", "slate"]


@dataclass(frozen=True)
class CameraRange:
    """A camera's footage from `start_ns` to `end_ns` (wall clock, UTC nanoseconds)."""

    camera_id: str
    start_ns: int
    end_ns: int
    gap_mode: GapMode = "close"
    wall_clock_subtitles: bool = False


@dataclass(frozen=True)
class CoverageSpan:
    """A part of the source served by one recording. Times are integer nanoseconds: wall
    clock (`start_ns`, `end_ns`), into the recording's video (`source_offset_ns`) and into the
    joined source video the operations see (`output_offset_ns`)."""

    recording_id: str
    camera_id: str
    object_key: str
    start_ns: int
    end_ns: int
    source_offset_ns: int
    output_offset_ns: int

    @property
    def recording_name(self) -> str:
        return f"cameras/{self.camera_id}/recordings/{self.recording_id}"

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class CoverageGap:
    """A part of the range without footage; `output_offset_ns` is where its slate starts in
    the joined video, or where the footage either side of it meets when gaps are closed."""

    start_ns: int
    end_ns: int
    output_offset_ns: int
    # Why a recorder has no footage here (`recording/reasons.py` values, comma-separated in
    # time order when several explain parts of it); "" when no stored gap explains it.
    reason: str = ""

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class Coverage:
    spans: tuple[CoverageSpan, ...] = ()
    gaps: tuple[CoverageGap, ...] = ()

    @property
    def covered_ns(self) -> int:
        return sum(s.duration_ns for s in self.spans)

    @property
    def gap_ns(self) -> int:
        return sum(g.duration_ns for g in self.gaps)

    @property
    def recording_ids(self) -> list[str]:
        return list(dict.fromkeys(s.recording_id for s in self.spans))

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Coverage:
        return cls(
            spans=tuple(CoverageSpan(**_known(CoverageSpan, s)) for s in data.get("spans", ())),
            gaps=tuple(CoverageGap(**_known(CoverageGap, g)) for g in data.get("gaps", ())),
        )


# Why an export failed: a status code (int), a stable reason and a message.
ExportError = ErrorRecord


@dataclass(frozen=True)
class DownloadGrant:
    """One GetExportDownloadUrl call: who got URLs for which objects, until when. Never the
    URLs: their signatures are bearer credentials."""

    grant_time: float
    requester: str
    storage_keys: tuple[str, ...]
    expire_time: float


# Grants kept per export (the newest). Every event on the export's stream carries the whole
# record, so each grant also costs an event of the record's size: 100 keeps a record under
# about 30 KB and the stream of an export downloaded over and over to a few MB.
MAX_DOWNLOAD_GRANTS = 100


@dataclass(frozen=True)
class ManifestRef:
    """Where an export's signed manifest is stored (see `sparc_video.evidence.manifest`)."""

    storage_key: str
    sha256: str
    signature_storage_key: str
    key_id: str
    signature_sha256: str = ""


@dataclass
class ExportRecord:
    """The truth about one export: durable in PostgreSQL, with a live copy (and its progress)
    in Redis; updated by the worker running it."""

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
    # W3C traceparent of the span that queued the export: every attempt's worker span joins
    # that trace. Empty when tracing is off (and in records written before it existed).
    trace_context: str = ""
    # Attempts that ended in a transient failure: the retry budget. Attempts interrupted by a
    # worker shutdown or a lost worker are not counted here.
    failed_attempts: int = 0
    # While RETRYING: when the next attempt may start (unix seconds).
    next_attempt_time: float | None = None
    # The worker running the current attempt.
    worker_id: str = ""
    priority: Priority = Priority.INTERACTIVE
    # Who asked for the export (the authenticated caller; "" without authentication).
    requester: str = ""
    # Given at CreateExport, recorded in the signed manifest.
    case_id: str = ""
    purpose: str = ""
    # Every download URL handed out, newest MAX_DOWNLOAD_GRANTS kept.
    download_grants: list[DownloadGrant] = field(default_factory=list)
    manifest: ManifestRef | None = None
    # A `recording` source: its name (`source_key` is then its object).
    recording: str = ""
    # A `camera_range` source (`source_key` is then "").
    camera_range: CameraRange | None = None
    # Recording or camera range: the recordings chosen at creation, and the gaps between them.
    # The worker reads exactly these spans; the recordings are held (see `recording_holds`).
    coverage: Coverage | None = None
    # Recording or camera range: wall-clock capture time (UTC ns) of the source video's
    # first frame (`Export.capture_start_time`); a frame's own capture time comes from the
    # coverage (`workers.pipeline.wall_clock`), which also accounts for closed gaps.
    capture_start_ns: int | None = None
    # Durable changes so far (PostgreSQL's `exports.revision`): a state-changing write names
    # the revision it read, and loses to any other writer that committed first.
    revision: int = 0

    @property
    def name(self) -> str:
        return f"exports/{self.id}"

    @property
    def recording_holds(self) -> list[str]:
        """Ids of the recordings this export reads: none may be deleted until it ends."""
        return self.coverage.recording_ids if self.coverage is not None else []

    def to_json_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values: what `asdict` gives, with sequences as lists."""
        plain: dict[str, Any] = _plain(self)
        return plain

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ExportRecord:
        # Fields added later are optional in stored JSON, so older records keep loading.
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["operations"] = [operation_from_dict(op) for op in data["operations"]]
        values["state"] = ExportState(data["state"])
        values["priority"] = Priority(data.get("priority", Priority.INTERACTIVE))
        values["progress"] = Progress(**data["progress"])
        values["outputs"] = [_output_from_dict(out) for out in data["outputs"]]
        values["error"] = ExportError(**data["error"]) if data.get("error") else None
        values["download_grants"] = [
            DownloadGrant(**{**grant, "storage_keys": tuple(grant["storage_keys"])})
            for grant in data.get("download_grants", ())
        ]
        values["manifest"] = ManifestRef(**data["manifest"]) if data.get("manifest") else None
        if data.get("camera_range"):
            values["camera_range"] = CameraRange(**_known(CameraRange, data["camera_range"]))
        if data.get("coverage"):
            values["coverage"] = Coverage.from_json_dict(data["coverage"])
        return cls(**values)


def _plain(value: Any) -> Any:
    """Dataclasses as dicts, sequences as lists, recursively; everything else as it is.

    `dataclasses.asdict` does the same but deep-copies every leaf value, which made it most of
    the cost of encoding a record, and every record write encodes one."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    names = _FIELD_NAMES.get(kind)
    if names is None and hasattr(kind, "__dataclass_fields__"):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    return value


_LEAVES = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _known(kind: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in data.items() if k in names}


def _output_from_dict(data: dict[str, Any]) -> Output:
    values = _known(Output, data)
    values["kind"] = OutputKind(data["kind"])
    values["tile_times_s"] = tuple(data.get("tile_times_s", ()))
    return Output(**values)
