"""The proto (API) form of the export model where more than the API needs it.

One table per proto enum, domain value → proto value, read in both directions (`decoding`):
request parsing (`api/exports/requests`) and responses (`api/exports/mapping`) cannot drift.
Operations as proto messages live here too, because the signed manifest (`evidence/manifest`)
records them in the form a client sent them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

from sparc.video.v1 import export_pb2

from sparc_video.exports.models import (
    CompressOp,
    ConvertOp,
    GapMode,
    Operation,
    Priority,
    RedactMode,
    RedactOp,
    ThumbnailOp,
    Timestamp,
    TranscodeOp,
    TrimOp,
    WatermarkOp,
    WatermarkPosition,
)

_D = TypeVar("_D")
_P = TypeVar("_P")

HARDWARE: dict[
    Literal["", "none", "auto", "nvenc"], export_pb2.TranscodeOptions.Hardware.ValueType
] = {
    "": export_pb2.TranscodeOptions.HARDWARE_UNSPECIFIED,
    "auto": export_pb2.TranscodeOptions.HARDWARE_AUTO,
    "none": export_pb2.TranscodeOptions.HARDWARE_NONE,
    "nvenc": export_pb2.TranscodeOptions.HARDWARE_NVENC,
}
THUMBNAIL_FORMATS: dict[
    Literal["jpeg", "png", "webp"], export_pb2.ThumbnailOptions.Format.ValueType
] = {
    "jpeg": export_pb2.ThumbnailOptions.FORMAT_JPEG,
    "png": export_pb2.ThumbnailOptions.FORMAT_PNG,
    "webp": export_pb2.ThumbnailOptions.FORMAT_WEBP,
}
CONTAINERS: dict[str, export_pb2.ConvertOptions.Container.ValueType] = {
    "mp4": export_pb2.ConvertOptions.CONTAINER_MP4,
    "mov": export_pb2.ConvertOptions.CONTAINER_MOV,
    "avi": export_pb2.ConvertOptions.CONTAINER_AVI,
    "mkv": export_pb2.ConvertOptions.CONTAINER_MKV,
    "webm": export_pb2.ConvertOptions.CONTAINER_WEBM,
}
QUALITIES: dict[
    Literal["", "low", "medium", "high"], export_pb2.CompressOptions.Quality.ValueType
] = {
    "": export_pb2.CompressOptions.QUALITY_UNSPECIFIED,
    "low": export_pb2.CompressOptions.QUALITY_LOW,
    "medium": export_pb2.CompressOptions.QUALITY_MEDIUM,
    "high": export_pb2.CompressOptions.QUALITY_HIGH,
}
POSITIONS: dict[WatermarkPosition, export_pb2.WatermarkOptions.Position.ValueType] = {
    "top_left": export_pb2.WatermarkOptions.POSITION_TOP_LEFT,
    "top_right": export_pb2.WatermarkOptions.POSITION_TOP_RIGHT,
    "bottom_left": export_pb2.WatermarkOptions.POSITION_BOTTOM_LEFT,
    "bottom_right": export_pb2.WatermarkOptions.POSITION_BOTTOM_RIGHT,
    "center": export_pb2.WatermarkOptions.POSITION_CENTER,
}
TRIM_MODES: dict[Literal["exact", "fast"], export_pb2.TrimOptions.Mode.ValueType] = {
    "exact": export_pb2.TrimOptions.MODE_EXACT,
    "fast": export_pb2.TrimOptions.MODE_FAST,
}
REDACT_MODES: dict[RedactMode, export_pb2.RedactOptions.Mode.ValueType] = {
    "blur": export_pb2.RedactOptions.MODE_BLUR,
    "pixelate": export_pb2.RedactOptions.MODE_PIXELATE,
}
GAP_MODES: dict[GapMode, export_pb2.CameraTimeRange.GapMode.ValueType] = {
    "close": export_pb2.CameraTimeRange.GAP_MODE_CLOSE,
    "slate": export_pb2.CameraTimeRange.GAP_MODE_SLATE,
}
PRIORITIES: dict[Priority, export_pb2.Export.Priority.ValueType] = {
    Priority.INTERACTIVE: export_pb2.Export.PRIORITY_INTERACTIVE,
    Priority.BATCH: export_pb2.Export.PRIORITY_BATCH,
}


def decoding(table: Mapping[_D, _P], unspecified: tuple[_P, _D] | None = None) -> dict[_P, _D]:
    """`table` read from proto to domain; `unspecified`: (the enum's 0, the domain default)."""
    decoded: dict[_P, _D] = dict([unspecified]) if unspecified is not None else {}
    decoded.update((proto, domain) for domain, proto in table.items())
    return decoded


def operation_to_proto(op: Operation) -> export_pb2.Operation:
    if isinstance(op, TranscodeOp):
        return export_pb2.Operation(transcode=_transcode_to_proto(op))
    if isinstance(op, ThumbnailOp):
        return export_pb2.Operation(thumbnail=_thumbnail_to_proto(op))
    if isinstance(op, ConvertOp):
        return export_pb2.Operation(
            convert=export_pb2.ConvertOptions(
                container=CONTAINERS[op.container],
                video_codec=op.video_codec,
                audio_codec=op.audio_codec,
            )
        )
    if isinstance(op, CompressOp):
        compress = export_pb2.CompressOptions(
            quality=QUALITIES[op.quality],
            max_bitrate=_bits(op.max_bitrate_bps),
            buffer_size=_bits(op.buffer_size_bits),
            target_size=str(op.target_size_bytes) if op.target_size_bytes else "",
        )
        if op.crf is not None:
            compress.crf = op.crf
        return export_pb2.Operation(compress=compress)
    if isinstance(op, WatermarkOp):
        watermark = export_pb2.WatermarkOptions(
            position=POSITIONS[op.position],
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
            mode=REDACT_MODES[op.mode],
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
            mode=TRIM_MODES[op.mode],
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
        hardware=HARDWARE[op.hardware],
    )


def _thumbnail_to_proto(op: ThumbnailOp) -> export_pb2.ThumbnailOptions:
    message = export_pb2.ThumbnailOptions(
        timestamps=[] if op.sprite_frame_count else [_stamp(t) for t in op.timestamps],
        size=_size(op.width, op.height),
        format=THUMBNAIL_FORMATS[op.format],
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
