"""The source of an export: a storage object, a recording, or a camera time range."""

from __future__ import annotations

from sparc.video.v1 import export_pb2

from sparc_video.api.common import parse_camera_name, parse_recording_name, required_key
from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.exports import enums
from sparc_video.exports.models import (
    CameraRange,
)
from sparc_video.exports.sources import RecordingSource, SourceSpec


def validate_source(
    source: export_pb2.ExportSource, field: str, violations: list[FieldViolation]
) -> SourceSpec:
    """The source oneof: an object key, a recording name or a camera time range."""
    which = source.WhichOneof("source")
    if which == "recording":
        try:
            camera_id, recording_id = parse_recording_name(source.recording, f"{field}.recording")
        except InvalidArgument as exc:
            violations.extend(exc.violations)
            return ""
        return RecordingSource(camera_id, recording_id)
    if which == "camera_range":
        return _camera_range(source.camera_range, f"{field}.camera_range", violations)
    if which is None:
        violations.append(
            FieldViolation(
                f"{field}.object_key",
                "required: the storage key of the source video (or a recording or camera_range)",
            )
        )
        return ""
    return validate_source_key(source.object_key, f"{field}.object_key", violations)


def validate_source_key(key: str, field: str, violations: list[FieldViolation]) -> str:
    return required_key(key, field, "the source video", violations)


def _camera_range(
    wanted: export_pb2.CameraTimeRange, field: str, violations: list[FieldViolation]
) -> SourceSpec:
    before = len(violations)
    camera_id = ""
    try:
        camera_id = parse_camera_name(wanted.camera, f"{field}.camera")
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    bounds: list[int] = []
    for name in ("start_time", "end_time"):
        if not wanted.HasField(name):
            violations.append(FieldViolation(f"{field}.{name}", "required: a UTC time"))
            continue
        ns = getattr(wanted, name).ToNanoseconds()
        if ns < 0:
            violations.append(FieldViolation(f"{field}.{name}", "must not be before 1970"))
        bounds.append(ns)
    if len(bounds) == 2 and bounds[1] <= bounds[0]:
        violations.append(FieldViolation(f"{field}.end_time", "must be after start_time"))
    gap_mode = enums.GAP_MODES.from_proto.get(wanted.gap_mode)
    if gap_mode is None:
        violations.append(
            FieldViolation(f"{field}.gap_mode", "use GAP_MODE_CLOSE or GAP_MODE_SLATE")
        )
    if len(violations) > before or gap_mode is None:
        return ""
    return CameraRange(
        camera_id=camera_id,
        start_ns=bounds[0],
        end_ns=bounds[1],
        gap_mode=gap_mode,
        wall_clock_subtitles=wanted.wall_clock_subtitles,
    )
