"""Each proto enum and the domain value it stands for, declared once and read both ways:
`to_proto` for responses (`exports/mapping.py`), `from_proto` for requests
(`exports/requests.py`), where a value missing from `from_proto` is refused.

A proto3 enum's 0 is its `*_UNSPECIFIED` value: a request that leaves the field out sends it.
`unspecified` says which domain value that reads as (the default); without it, 0 is refused
unless the table itself maps a domain value to it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Generic, Literal, TypeVar, cast

from sparc.video.v1 import export_pb2

from sparc_video.exports.models import (
    ExportState,
    GapMode,
    OutputKind,
    Priority,
    RedactMode,
    WatermarkPosition,
)

P = TypeVar("P", bound=int)
D = TypeVar("D", bound=Hashable)


class ProtoEnum(Generic[P, D]):
    def __init__(self, to_proto: Mapping[D, P], *, unspecified: D | None = None) -> None:
        self.to_proto: Mapping[D, P] = MappingProxyType(dict(to_proto))
        inverse: dict[int, D] = {proto: domain for domain, proto in to_proto.items()}
        if len(inverse) != len(to_proto):
            raise ValueError("two domain values map to one proto value")
        if unspecified is not None:
            if _UNSPECIFIED in inverse:
                raise ValueError("the unspecified value is mapped already")
            inverse = {_UNSPECIFIED: unspecified, **inverse}
        self.from_proto: Mapping[P, D] = MappingProxyType(cast(dict[P, D], inverse))


_UNSPECIFIED = 0

STATES: ProtoEnum[export_pb2.Export.State.ValueType, ExportState] = ProtoEnum(
    {
        ExportState.QUEUED: export_pb2.Export.STATE_QUEUED,
        ExportState.RUNNING: export_pb2.Export.STATE_RUNNING,
        ExportState.RETRYING: export_pb2.Export.STATE_RETRYING,
        ExportState.SUCCEEDED: export_pb2.Export.STATE_SUCCEEDED,
        ExportState.FAILED: export_pb2.Export.STATE_FAILED,
        ExportState.CANCELLED: export_pb2.Export.STATE_CANCELLED,
    }
)
PRIORITIES: ProtoEnum[export_pb2.Export.Priority.ValueType, Priority] = ProtoEnum(
    {
        Priority.INTERACTIVE: export_pb2.Export.PRIORITY_INTERACTIVE,
        Priority.BATCH: export_pb2.Export.PRIORITY_BATCH,
    },
    unspecified=Priority.INTERACTIVE,
)
OUTPUT_KINDS: ProtoEnum[export_pb2.Output.Kind.ValueType, OutputKind] = ProtoEnum(
    {
        OutputKind.VIDEO: export_pb2.Output.KIND_VIDEO,
        OutputKind.THUMBNAIL: export_pb2.Output.KIND_THUMBNAIL,
        OutputKind.SPRITE_SHEET: export_pb2.Output.KIND_SPRITE_SHEET,
    }
)

HARDWARE: ProtoEnum[
    export_pb2.TranscodeOptions.Hardware.ValueType, Literal["", "none", "auto", "nvenc"]
] = ProtoEnum(
    {
        "": export_pb2.TranscodeOptions.HARDWARE_UNSPECIFIED,
        "auto": export_pb2.TranscodeOptions.HARDWARE_AUTO,
        "none": export_pb2.TranscodeOptions.HARDWARE_NONE,
        "nvenc": export_pb2.TranscodeOptions.HARDWARE_NVENC,
    }
)
IMAGE_FORMATS: ProtoEnum[
    export_pb2.ThumbnailOptions.Format.ValueType, Literal["jpeg", "png", "webp"]
] = ProtoEnum(
    {
        "jpeg": export_pb2.ThumbnailOptions.FORMAT_JPEG,
        "png": export_pb2.ThumbnailOptions.FORMAT_PNG,
        "webp": export_pb2.ThumbnailOptions.FORMAT_WEBP,
    },
    unspecified="jpeg",
)
# No default container: a convert must name one.
CONTAINERS: ProtoEnum[export_pb2.ConvertOptions.Container.ValueType, str] = ProtoEnum(
    {
        "mp4": export_pb2.ConvertOptions.CONTAINER_MP4,
        "mov": export_pb2.ConvertOptions.CONTAINER_MOV,
        "avi": export_pb2.ConvertOptions.CONTAINER_AVI,
        "mkv": export_pb2.ConvertOptions.CONTAINER_MKV,
        "webm": export_pb2.ConvertOptions.CONTAINER_WEBM,
    }
)
QUALITIES: ProtoEnum[
    export_pb2.CompressOptions.Quality.ValueType, Literal["", "low", "medium", "high"]
] = ProtoEnum(
    {
        "": export_pb2.CompressOptions.QUALITY_UNSPECIFIED,
        "low": export_pb2.CompressOptions.QUALITY_LOW,
        "medium": export_pb2.CompressOptions.QUALITY_MEDIUM,
        "high": export_pb2.CompressOptions.QUALITY_HIGH,
    }
)
POSITIONS: ProtoEnum[export_pb2.WatermarkOptions.Position.ValueType, WatermarkPosition] = ProtoEnum(
    {
        "top_left": export_pb2.WatermarkOptions.POSITION_TOP_LEFT,
        "top_right": export_pb2.WatermarkOptions.POSITION_TOP_RIGHT,
        "bottom_left": export_pb2.WatermarkOptions.POSITION_BOTTOM_LEFT,
        "bottom_right": export_pb2.WatermarkOptions.POSITION_BOTTOM_RIGHT,
        "center": export_pb2.WatermarkOptions.POSITION_CENTER,
    },
    unspecified="bottom_right",
)
TRIM_MODES: ProtoEnum[export_pb2.TrimOptions.Mode.ValueType, Literal["exact", "fast"]] = ProtoEnum(
    {
        "exact": export_pb2.TrimOptions.MODE_EXACT,
        "fast": export_pb2.TrimOptions.MODE_FAST,
    },
    unspecified="exact",
)
REDACT_MODES: ProtoEnum[export_pb2.RedactOptions.Mode.ValueType, RedactMode] = ProtoEnum(
    {
        "blur": export_pb2.RedactOptions.MODE_BLUR,
        "pixelate": export_pb2.RedactOptions.MODE_PIXELATE,
    },
    unspecified="blur",
)
GAP_MODES: ProtoEnum[export_pb2.CameraTimeRange.GapMode.ValueType, GapMode] = ProtoEnum(
    {
        "close": export_pb2.CameraTimeRange.GAP_MODE_CLOSE,
        "slate": export_pb2.CameraTimeRange.GAP_MODE_SLATE,
    },
    unspecified="close",
)
