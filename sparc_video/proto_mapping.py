"""Domain records → protobuf messages (the other direction is `validation.py`)."""

from __future__ import annotations

from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from sparc.video.v1 import export_pb2

from sparc_video.models import (
    ExportError,
    ExportRecord,
    ExportState,
    Operation,
    Output,
    OutputKind,
    Progress,
    ThumbnailOp,
    TranscodeOp,
)

ERROR_DOMAIN = "video.sparc"

_STATES = {
    ExportState.QUEUED: export_pb2.Export.STATE_QUEUED,
    ExportState.RUNNING: export_pb2.Export.STATE_RUNNING,
    ExportState.RETRYING: export_pb2.Export.STATE_RETRYING,
    ExportState.SUCCEEDED: export_pb2.Export.STATE_SUCCEEDED,
    ExportState.FAILED: export_pb2.Export.STATE_FAILED,
    ExportState.CANCELLED: export_pb2.Export.STATE_CANCELLED,
}
STATE_FROM_PROTO = {v: k for k, v in _STATES.items()}
_KINDS = {
    OutputKind.VIDEO: export_pb2.Output.KIND_VIDEO,
    OutputKind.THUMBNAIL: export_pb2.Output.KIND_THUMBNAIL,
}


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


def duration(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


def state_to_proto(state: ExportState) -> export_pb2.Export.State.ValueType:
    return _STATES[state]


def export_to_proto(record: ExportRecord) -> export_pb2.Export:
    message = export_pb2.Export(
        name=record.name,
        source=export_pb2.ExportSource(object_key=record.source_key),
        operations=[operation_to_proto(op) for op in record.operations],
        state=_STATES[record.state],
        attempt=record.attempt,
        progress=progress_to_proto(record.progress),
        outputs=[output_to_proto(out) for out in record.outputs],
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
        request_id=record.request_id,
    )
    if record.start_time is not None:
        message.start_time.CopyFrom(timestamp(record.start_time))
    if record.end_time is not None:
        message.end_time.CopyFrom(timestamp(record.end_time))
    if record.error is not None:
        message.error.CopyFrom(error_status(record.error))
    if record.next_attempt_time is not None and record.state == ExportState.RETRYING:
        message.next_attempt_time.CopyFrom(timestamp(record.next_attempt_time))
    return message


def operation_to_proto(op: Operation) -> export_pb2.Operation:
    if isinstance(op, TranscodeOp):
        return export_pb2.Operation(
            transcode=export_pb2.TranscodeOptions(
                codec=op.codec,
                bitrate=str(op.bitrate_bps) if op.bitrate_bps else "",
                resolution=f"{op.width}x{op.height}" if op.width or op.height else "",
                preset=op.preset,
            )
        )
    assert isinstance(op, ThumbnailOp)
    return export_pb2.Operation(
        thumbnail=export_pb2.ThumbnailOptions(
            timestamps=[str(t) for t in op.timestamps],
            size=f"{op.width}x{op.height}" if op.width or op.height else "",
            format=export_pb2.ThumbnailOptions.FORMAT_JPEG,
        )
    )


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
        kind=_KINDS[output.kind],
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
    return message


def error_status(error: ExportError, metadata: dict[str, str] | None = None) -> status_pb2.Status:
    """google.rpc.Status with an ErrorInfo detail carrying the stable reason."""
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    )
    return status_pb2.Status(code=error.code, message=error.message, details=[info])
