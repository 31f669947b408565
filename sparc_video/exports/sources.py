"""What an export reads, resolved at CreateExport: a storage object, a recording, or a camera's
footage over a time range.

For a recording or a range, the recordings are chosen here and pinned in the export's record as
its coverage: the spans the worker cuts and joins, and the gaps between them. The worker reads
exactly these (they are held from deletion until the export ends, see `recording_holds.py`), so
the coverage the client sees is the footage the output shows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sparc_video.cameras.records import CameraStore, RecordingNotFound, RecordingRecord, TimeRange
from sparc_video.core.errors import FailedPrecondition, FieldViolation, InvalidArgument
from sparc_video.database.pool import Database
from sparc_video.exports.models import CameraRange, Coverage, CoverageGap, CoverageSpan
from sparc_video.recording.timeline import TimelineGap, stored_gaps

_PAGE = 1000


class NoFootage(FailedPrecondition):
    reason = "NO_FOOTAGE"


@dataclass(frozen=True)
class RecordingSource:
    """A `recording` source: `cameras/{camera}/recordings/{recording}`."""

    camera_id: str
    recording_id: str

    @property
    def name(self) -> str:
        return f"cameras/{self.camera_id}/recordings/{self.recording_id}"


@dataclass(frozen=True)
class ResolvedSource:
    """What the export record keeps about its source."""

    source_key: str = ""
    recording: str = ""
    camera_range: CameraRange | None = None
    coverage: Coverage | None = None
    capture_start_ns: int | None = None


SourceSpec = str | RecordingSource | CameraRange
"""A validated source: an object key, a recording, or a camera range."""


class ExportSources:
    def __init__(
        self, cameras: CameraStore, max_range_s: int, database: Database | None = None
    ) -> None:
        self._cameras = cameras
        self._max_range_ns = max_range_s * 10**9
        # Where the recorder's gaps are read, to give the coverage's gaps their reasons.
        self._database = database

    async def recording(self, source: RecordingSource) -> ResolvedSource:
        try:
            record = await self._cameras.get_recording(source.recording_id)
        except RecordingNotFound:
            record = None
        if record is None or record.camera_id != source.camera_id:
            await self._cameras.get_camera(source.camera_id)
            raise RecordingNotFound(f"recording {source.name} does not exist")
        span = CoverageSpan(
            recording_id=record.id,
            camera_id=record.camera_id,
            object_key=record.object_key,
            start_ns=record.start_ns,
            end_ns=record.end_ns,
            source_offset_ns=0,
            output_offset_ns=0,
        )
        return ResolvedSource(
            source_key=record.object_key,
            recording=record.name,
            coverage=Coverage(spans=(span,)),
            capture_start_ns=record.start_ns,
        )

    async def camera_range(self, wanted: CameraRange) -> ResolvedSource:
        length_ns = wanted.end_ns - wanted.start_ns
        if length_ns > self._max_range_ns:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "export.source.camera_range.end_time",
                        f"the range is {length_ns / 1e9:g} s long; at most MAX_EXPORT_RANGE "
                        f"({self._max_range_ns // 10**9} s) per export",
                    )
                ]
            )
        await self._cameras.get_camera(wanted.camera_id)
        recordings = await self._overlapping(wanted)
        coverage = plan_coverage(recordings, wanted)
        if self._database is not None and coverage.gaps:
            explained = await stored_gaps(
                self._database, wanted.camera_id, wanted.start_ns, wanted.end_ns
            )
            coverage = explain_gaps(coverage, explained)
        if not coverage.spans:
            raise NoFootage(
                f"camera cameras/{wanted.camera_id} has no recording between "
                f"{_iso(wanted.start_ns)} and {_iso(wanted.end_ns)}: there is no footage to export"
            )
        first = wanted.start_ns if wanted.gap_mode == "slate" else coverage.spans[0].start_ns
        return ResolvedSource(camera_range=wanted, coverage=coverage, capture_start_ns=first)

    async def _overlapping(self, wanted: CameraRange) -> list[RecordingRecord]:
        window = TimeRange(wanted.start_ns, wanted.end_ns)
        found: list[RecordingRecord] = []
        token = ""
        while True:
            page, token = await self._cameras.page_recordings(
                wanted.camera_id, window=window, page_size=_PAGE, page_token=token
            )
            found += page
            if not token:
                return found


def plan_coverage(recordings: list[RecordingRecord], wanted: CameraRange) -> Coverage:
    """Spans and gaps over the range. Recordings in start order; where two overlap, the one
    that started first serves until it ends (footage is never shown twice)."""
    spans: list[CoverageSpan] = []
    gaps: list[CoverageGap] = []
    cursor = wanted.start_ns
    output = 0
    slate = wanted.gap_mode == "slate"

    def gap_until(end_ns: int) -> None:
        nonlocal output
        gaps.append(CoverageGap(start_ns=cursor, end_ns=end_ns, output_offset_ns=output))
        if slate:
            output += end_ns - cursor

    for record in sorted(recordings, key=lambda r: (r.start_ns, r.end_ns, r.id)):
        start = max(record.start_ns, cursor)
        end = min(record.end_ns, wanted.end_ns)
        if end <= start:
            continue
        if start > cursor:
            gap_until(start)
        spans.append(
            CoverageSpan(
                recording_id=record.id,
                camera_id=record.camera_id,
                object_key=record.object_key,
                start_ns=start,
                end_ns=end,
                source_offset_ns=start - record.start_ns,
                output_offset_ns=output,
            )
        )
        output += end - start
        cursor = end
    if cursor < wanted.end_ns and spans:
        gap_until(wanted.end_ns)
    return Coverage(spans=tuple(spans), gaps=tuple(gaps))


def explain_gaps(coverage: Coverage, explained: list[TimelineGap]) -> Coverage:
    """The coverage with each gap's reasons: those of the stored gaps overlapping it."""

    def reason(gap: CoverageGap) -> str:
        found: list[str] = []
        for stored in explained:
            overlaps = stored.start_ns < gap.end_ns and stored.end_ns > gap.start_ns
            if overlaps and stored.reason is not None and stored.reason.value not in found:
                found.append(stored.reason.value)
        return ",".join(found)

    return replace(coverage, gaps=tuple(replace(g, reason=reason(g)) for g in coverage.gaps))


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")
