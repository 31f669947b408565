"""The proto (API) form of operations, where more than the API needs it.

Operations as proto messages: the API answers them (`api/exports/mapping.py`) and the signed
manifest (`evidence/manifest.py`) records them in the form a client sent them. The enum tables
are in `enums.py`.
"""

from __future__ import annotations

from sparc.video.v1 import export_pb2

from sparc_video.exports import enums
from sparc_video.exports.operations import (
    CompressOp,
    ConvertOp,
    Operation,
    RedactOp,
    ThumbnailOp,
    Timestamp,
    TranscodeOp,
    TrimOp,
    WatermarkOp,
)


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
