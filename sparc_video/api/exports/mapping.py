"""Domain records → protobuf messages (the other direction is `requests.py`; the enum tables
both use are in `api/enums.py`)."""

from __future__ import annotations

from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from sparc.video.v1 import export_pb2

from sparc_video.api import enums
from sparc_video.exports.models import (
    CompressOp,
    ConvertOp,
    Coverage,
    ExportError,
    ExportRecord,
    ExportState,
    Operation,
    Output,
    OutputKind,
    Progress,
    RedactOp,
    ThumbnailOp,
    Timestamp,
    TranscodeOp,
    TrimOp,
    WatermarkOp,
)

ERROR_DOMAIN = "video.sparc"


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


def duration(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


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


def _ns_duration(ns: int) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(ns)
    return message


def coverage_to_proto(coverage: Coverage) -> export_pb2.Coverage:
    message = export_pb2.Coverage(
        covered_duration=_ns_duration(coverage.covered_ns),
        gap_duration=_ns_duration(coverage.gap_ns),
    )
    for span in coverage.spans:
        item = message.spans.add(
            recording=span.recording_name,
            source_offset=_ns_duration(span.source_offset_ns),
            output_offset=_ns_duration(span.output_offset_ns),
        )
        item.start_time.FromNanoseconds(span.start_ns)
        item.end_time.FromNanoseconds(span.end_ns)
    for gap in coverage.gaps:
        hole = message.gaps.add(output_offset=_ns_duration(gap.output_offset_ns))
        hole.start_time.FromNanoseconds(gap.start_ns)
        hole.end_time.FromNanoseconds(gap.end_ns)
    return message


def operation_to_proto(op: Operation) -> export_pb2.Operation:
    if isinstance(op, TranscodeOp):
        return export_pb2.Operation(transcode=_transcode_to_proto(op))
    if isinstance(op, ThumbnailOp):
        return export_pb2.Operation(thumbnail=_thumbnail_to_proto(op))
    if isinstance(op, ConvertOp):
        return export_pb2.Operation(
            convert=export_pb2.ConvertOptions(
                container=enums.CONTAINERS.to_proto[op.container],
                video_codec=op.video_codec,
                audio_codec=op.audio_codec,
            )
        )
    if isinstance(op, CompressOp):
        compress = export_pb2.CompressOptions(
            quality=enums.QUALITIES.to_proto[op.quality],
            max_bitrate=_bits(op.max_bitrate_bps),
            buffer_size=_bits(op.buffer_size_bits),
            target_size=str(op.target_size_bytes) if op.target_size_bytes else "",
        )
        if op.crf is not None:
            compress.crf = op.crf
        return export_pb2.Operation(compress=compress)
    if isinstance(op, WatermarkOp):
        watermark = export_pb2.WatermarkOptions(
            position=enums.POSITIONS.to_proto[op.position],
            offset_x=op.offset_x,
            offset_y=op.offset_y,
            opacity=op.opacity,
            scale=op.scale,
            text_color=op.text_color,
        )
        if op.image_key:
            watermark.image_object_key = op.image_key
        elif op.text or op.clock is None:
            watermark.text = op.text
        if op.margin is not None:
            watermark.margin = op.margin
        if op.clock is not None:
            watermark.clock.format = op.clock.format
            watermark.clock.time_zone = op.clock.time_zone
            if op.clock.base_time_ns is not None:
                watermark.clock.base_time.FromNanoseconds(op.clock.base_time_ns)
        return export_pb2.Operation(watermark=watermark)
    if isinstance(op, RedactOp):
        redact = export_pb2.RedactOptions(
            regions=[
                export_pb2.RedactOptions.Region(x=r.x, y=r.y, width=r.width, height=r.height)
                for r in op.regions
            ],
            mode=enums.REDACT_MODES.to_proto[op.mode],
            strength=op.strength,
            start=_seconds(op.start_s) if op.start_s else "",
            end=_seconds(op.end_s),
            duration=_seconds(op.duration_s),
        )
        return export_pb2.Operation(redact=redact)
    assert isinstance(op, TrimOp)
    return export_pb2.Operation(
        trim=export_pb2.TrimOptions(
            start=_seconds(op.start_s) if op.start_s else "",
            end=_seconds(op.end_s),
            duration=_seconds(op.duration_s),
            mode=enums.TRIM_MODES.to_proto[op.mode],
        )
    )


def _transcode_to_proto(op: TranscodeOp) -> export_pb2.TranscodeOptions:
    return export_pb2.TranscodeOptions(
        codec=op.codec,
        bitrate=_bits(op.bitrate_bps),
        resolution=_size(op.width, op.height),
        preset=op.preset,
        fps=op.fps,
        pixel_format=op.pixel_format,
        audio_codec=op.audio_codec,
        audio_bitrate=_bits(op.audio_bitrate_bps),
        remove_audio=op.remove_audio,
        hardware=enums.HARDWARE.to_proto[op.hardware],
    )


def _thumbnail_to_proto(op: ThumbnailOp) -> export_pb2.ThumbnailOptions:
    message = export_pb2.ThumbnailOptions(
        timestamps=[] if op.sprite_frame_count else [_stamp(t) for t in op.timestamps],
        size=_size(op.width, op.height),
        format=enums.IMAGE_FORMATS.to_proto[op.format],
    )
    if op.sprite:
        message.sprite_sheet.CopyFrom(
            export_pb2.SpriteSheetOptions(
                frame_count=op.sprite_frame_count, columns=op.sprite_columns
            )
        )
    return message


def _stamp(stamp: Timestamp) -> str:
    """As clients write it: `50%` or seconds."""
    return f"{stamp.value:g}%" if stamp.kind == "percent" else f"{stamp.value:g}"


def _bits(value: int | None) -> str:
    return str(value) if value else ""


def _size(width: int, height: int) -> str:
    return f"{width}x{height}" if width or height else ""


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


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


def error_status(error: ExportError, metadata: dict[str, str] | None = None) -> status_pb2.Status:
    """google.rpc.Status with an ErrorInfo detail carrying the stable reason."""
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    )
    return status_pb2.Status(code=error.code, message=error.message, details=[info])
