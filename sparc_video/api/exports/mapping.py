"""Domain records → protobuf messages (the other direction is `requests/`; the enum tables both
use are in `exports/enums.py`, operations as messages in `exports/proto.py`)."""

from __future__ import annotations

from sparc.video.v1 import export_pb2

from sparc_video.api.common import duration as duration
from sparc_video.api.common import duration_ns
from sparc_video.api.common import timestamp as timestamp
from sparc_video.api.status import ERROR_DOMAIN as ERROR_DOMAIN
from sparc_video.api.status import error_status as error_status
from sparc_video.exports import enums
from sparc_video.exports.models import (
    Coverage,
    ExportRecord,
    ExportState,
    Output,
    OutputKind,
    Progress,
)
from sparc_video.exports.proto import operation_to_proto as operation_to_proto


def state_to_proto(state: ExportState) -> export_pb2.Export.State.ValueType:
    return enums.STATES.to_proto[state]


def export_to_proto(record: ExportRecord) -> export_pb2.Export:
    message = export_pb2.Export(
        name=record.name,
        source=source_to_proto(record),
        operations=[operation_to_proto(op) for op in record.operations],
        state=enums.STATES.to_proto[record.state],
        attempt=record.attempt,
        progress=progress_to_proto(record.progress),
        outputs=[output_to_proto(out) for out in record.outputs],
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
        request_id=record.request_id,
        priority=enums.PRIORITIES.to_proto[record.priority],
        requester=record.requester,
        case_id=record.case_id,
        purpose=record.purpose,
        download_grants=[
            export_pb2.DownloadGrant(
                grant_time=timestamp(grant.grant_time),
                requester=grant.requester,
                storage_keys=grant.storage_keys,
                expire_time=timestamp(grant.expire_time),
            )
            for grant in record.download_grants
        ],
    )
    if record.start_time is not None:
        message.start_time.CopyFrom(timestamp(record.start_time))
    if record.end_time is not None:
        message.end_time.CopyFrom(timestamp(record.end_time))
    if record.error is not None:
        message.error.CopyFrom(error_status(record.error))
    if record.next_attempt_time is not None and record.state == ExportState.RETRYING:
        message.next_attempt_time.CopyFrom(timestamp(record.next_attempt_time))
    if record.manifest is not None:
        message.manifest.CopyFrom(
            export_pb2.ExportManifest(
                storage_key=record.manifest.storage_key,
                sha256=record.manifest.sha256,
                signature_storage_key=record.manifest.signature_storage_key,
                key_id=record.manifest.key_id,
                signature_sha256=record.manifest.signature_sha256,
            )
        )
    if record.coverage is not None:
        message.coverage.CopyFrom(coverage_to_proto(record.coverage))
    if record.capture_start_ns is not None:
        message.capture_start_time.FromNanoseconds(record.capture_start_ns)
    return message


def source_to_proto(record: ExportRecord) -> export_pb2.ExportSource:
    wanted = record.camera_range
    if wanted is not None:
        message = export_pb2.CameraTimeRange(
            camera=f"cameras/{wanted.camera_id}",
            gap_mode=enums.GAP_MODES.to_proto[wanted.gap_mode],
            wall_clock_subtitles=wanted.wall_clock_subtitles,
        )
        message.start_time.FromNanoseconds(wanted.start_ns)
        message.end_time.FromNanoseconds(wanted.end_ns)
        return export_pb2.ExportSource(camera_range=message)
    if record.recording:
        return export_pb2.ExportSource(recording=record.recording)
    return export_pb2.ExportSource(object_key=record.source_key)


def coverage_to_proto(coverage: Coverage) -> export_pb2.Coverage:
    message = export_pb2.Coverage(
        covered_duration=duration_ns(coverage.covered_ns),
        gap_duration=duration_ns(coverage.gap_ns),
    )
    for span in coverage.spans:
        item = message.spans.add(
            recording=span.recording_name,
            source_offset=duration_ns(span.source_offset_ns),
            output_offset=duration_ns(span.output_offset_ns),
        )
        item.start_time.FromNanoseconds(span.start_ns)
        item.end_time.FromNanoseconds(span.end_ns)
    for gap in coverage.gaps:
        hole = message.gaps.add(output_offset=duration_ns(gap.output_offset_ns))
        hole.start_time.FromNanoseconds(gap.start_ns)
        hole.end_time.FromNanoseconds(gap.end_ns)
    return message


def progress_to_proto(progress: Progress) -> export_pb2.Progress:
    message = export_pb2.Progress(
        percent=progress.percent,
        current_operation=progress.current_operation,
        operation_index=progress.operation_index,
        operation_count=progress.operation_count,
        timemark=duration(progress.timemark_s),
        fps=progress.fps,
        speed=progress.speed,
    )
    if progress.eta_s is not None:
        message.eta.CopyFrom(duration(progress.eta_s))
    return message


def output_to_proto(output: Output) -> export_pb2.Output:
    message = export_pb2.Output(
        kind=enums.OUTPUT_KINDS.to_proto[output.kind],
        storage_key=output.storage_key,
        size_bytes=output.size_bytes,
        sha256=output.sha256,
        content_type=output.content_type,
        width=output.width,
        height=output.height,
        operation_index=output.operation_index,
        video_codec=output.video_codec,
        audio_codec=output.audio_codec,
    )
    if output.duration_s is not None:
        message.duration.CopyFrom(duration(output.duration_s))
    if output.timestamp_s is not None:
        message.timestamp.CopyFrom(duration(output.timestamp_s))
    if output.first_keyframe_s is not None:
        message.first_keyframe_time.CopyFrom(duration(output.first_keyframe_s))
    message.video_encoder = output.video_encoder
    if output.kind == OutputKind.SPRITE_SHEET:
        message.sprite_sheet.CopyFrom(
            export_pb2.SpriteSheet(
                columns=output.sprite_columns,
                rows=output.sprite_rows,
                tile_width=output.tile_width,
                tile_height=output.tile_height,
                tile_times=[duration(t) for t in output.tile_times_s],
            )
        )
    return message
