"""Builders of what `create_export` takes: one function per operation of `export.proto`
(transcode, thumbnail, sprite sheet, convert, compress, watermark, trim, redact), one per
source (a stored object, a recording, a camera's time range) and the priority.

```python
operations = [
    trim(start=10, duration=30),
    redact(region(0.1, 0.1, 0.2, 0.2), mode="pixelate"),
    watermark(text="Case 17", clock=clock(time_zone="Europe/Berlin")),
    transcode(codec="h264", resolution="1280x720"),
    thumbnail("50%", size="320x0", format="webp"),
]
source = camera_range("gate-7", start, end, gap_mode="slate")
```

Enum options take the proto's value or its name, with or without the prefix and in any case
(`"webp"`, `"FORMAT_WEBP"`, `ThumbnailOptions.FORMAT_WEBP`). Times (`start`, `end`,
`duration`) take seconds as a number, a `timedelta`, or the server's own text (`"12.5"`,
`"00:01:02.5"`). The server validates the result; these only build the messages.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Protocol, TypeAlias, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2
from sparc.video.v1 import export_pb2

Export = export_pb2.Export
Operation = export_pb2.Operation
ExportSource = export_pb2.ExportSource
Priority = export_pb2.Export.Priority
Region = export_pb2.RedactOptions.Region
Clock = export_pb2.WatermarkOptions.Clock

_V = TypeVar("_V", bound=int, covariant=True)


class _EnumType(Protocol[_V]):
    def Value(self, name: str) -> _V: ...

    def keys(self) -> list[str]: ...


def enum_value(enum: _EnumType[_V], prefix: str, value: str | _V) -> _V:
    """`value` as a member of the proto enum: the member itself, or its name with or without
    `prefix` (e.g. `FORMAT_`), in any case. ValueError names the choices."""
    if not isinstance(value, str):
        return value
    names = list(enum.keys())
    name = value.strip().upper().replace("-", "_")
    for candidate in (name, prefix + name):
        if candidate in names and not candidate.endswith("_UNSPECIFIED"):
            return enum.Value(candidate)
    choices = [n.removeprefix(prefix).lower() for n in names if not n.endswith("_UNSPECIFIED")]
    raise ValueError(f"unknown {prefix.rstrip('_').lower()} {value!r}; one of {choices}")


def _unset_or(enum: _EnumType[_V], prefix: str, value: str | _V | None) -> _V:
    """As `enum_value`; None or "" as the enum's UNSPECIFIED (the server's default)."""
    if value is None or value == "":
        return enum.Value(prefix + "UNSPECIFIED")
    return enum_value(enum, prefix, value)


TimeValue: TypeAlias = str | float | datetime.timedelta


def _time_text(value: TimeValue | None) -> str:
    """A time option as the server's text: seconds (`12.5`) unless given as text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)
    return f"{seconds:.6f}".rstrip("0").rstrip(".")


def duration(value: float | datetime.timedelta) -> duration_pb2.Duration:
    """Seconds or a timedelta as a google.protobuf.Duration."""
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else value
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


def timestamp(value: datetime.datetime) -> timestamp_pb2.Timestamp:
    """A timezone-aware datetime as a google.protobuf.Timestamp."""
    if value.tzinfo is None:
        raise ValueError("a time needs a timezone (e.g. 2026-11-24T08:00:00Z)")
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def export_name(name_or_id: str) -> str:
    """`exports/{id}` from either that name or the bare id."""
    return name_or_id if "/" in name_or_id else f"exports/{name_or_id}"


# -- sources and priority -----------------------------------------------------------------------


def object_source(object_key: str) -> ExportSource:
    """The stored object `object_key` (bucket or local root), e.g. `uploads/cam7.mp4`."""
    return ExportSource(object_key=object_key)


def recording_source(recording: str) -> ExportSource:
    """A whole recording, `cameras/{camera}/recordings/{recording}`."""
    return ExportSource(recording=recording)


def camera_range(
    camera: str,
    start: datetime.datetime,
    end: datetime.datetime,
    *,
    gap_mode: str | export_pb2.CameraTimeRange.GapMode.ValueType | None = None,
    wall_clock_subtitles: bool = False,
) -> ExportSource:
    """A camera's footage from `start` to `end` (timezone-aware), cut from its recordings and
    joined; gaps closed (`gap_mode="close"`, the default) or shown as a slate (`"slate"`)."""
    time_range = export_pb2.CameraTimeRange(
        camera=camera if "/" in camera else f"cameras/{camera}",
        start_time=timestamp(start),
        end_time=timestamp(end),
        gap_mode=_unset_or(export_pb2.CameraTimeRange.GapMode, "GAP_MODE_", gap_mode),
        wall_clock_subtitles=wall_clock_subtitles,
    )
    return ExportSource(camera_range=time_range)


def priority(value: str | Export.Priority.ValueType) -> Export.Priority.ValueType:
    """`"interactive"` or `"batch"` (or the enum member) as Export.Priority."""
    return enum_value(Export.Priority, "PRIORITY_", value)


# -- operations ---------------------------------------------------------------------------------


def transcode(
    *,
    codec: str = "",
    bitrate: str = "",
    resolution: str = "",
    preset: str = "",
    fps: str | float = "",
    pixel_format: str = "",
    audio_codec: str = "",
    audio_bitrate: str = "",
    remove_audio: bool = False,
    hardware: str | export_pb2.TranscodeOptions.Hardware.ValueType | None = None,
) -> Operation:
    """Re-encode the video (and audio): codec `h264`/`h265`/`vp9`/`av1`/`mpeg4`, `bitrate`
    (`2.5M`; empty: constant quality), `resolution` (`1280x720`, `1280x0`), `preset`, `fps`,
    `pixel_format`, `audio_codec` (`aac`/`opus`/`mp3`), `hardware` (`auto`/`none`/`nvenc`)."""
    return Operation(
        transcode=export_pb2.TranscodeOptions(
            codec=codec,
            bitrate=bitrate,
            resolution=resolution,
            preset=preset,
            fps=fps if isinstance(fps, str) else f"{fps:g}",
            pixel_format=pixel_format,
            audio_codec=audio_codec,
            audio_bitrate=audio_bitrate,
            remove_audio=remove_audio,
            hardware=_unset_or(export_pb2.TranscodeOptions.Hardware, "HARDWARE_", hardware),
        )
    )


_ImageFormat: TypeAlias = str | export_pb2.ThumbnailOptions.Format.ValueType | None


def thumbnail(*timestamps: str, size: str = "", format: _ImageFormat = None) -> Operation:
    """Still images at `timestamps` (`50%`, `12.5`, `00:00:12.5`; none: `50%`), each `size`
    (`320x0`), as `jpeg` (default), `png` or `webp`."""
    return Operation(
        thumbnail=export_pb2.ThumbnailOptions(
            timestamps=list(timestamps),
            size=size,
            format=_unset_or(export_pb2.ThumbnailOptions.Format, "FORMAT_", format),
        )
    )


def sprite_sheet(
    *timestamps: str,
    frame_count: int = 0,
    columns: int = 0,
    size: str = "",
    format: _ImageFormat = None,
) -> Operation:
    """One image of frames laid out in a grid: at `timestamps`, or `frame_count` (1 to 100,
    default 16) evenly spaced ones; `columns` per row (0: square-ish); `size` per tile."""
    return Operation(
        thumbnail=export_pb2.ThumbnailOptions(
            timestamps=list(timestamps),
            size=size,
            format=_unset_or(export_pb2.ThumbnailOptions.Format, "FORMAT_", format),
            sprite_sheet=export_pb2.SpriteSheetOptions(frame_count=frame_count, columns=columns),
        )
    )


def convert(
    container: str | export_pb2.ConvertOptions.Container.ValueType,
    *,
    video_codec: str = "",
    audio_codec: str = "",
) -> Operation:
    """Put the video in `container` (`mp4`, `mov`, `avi`, `mkv`, `webm`), copying the streams
    it can hold and re-encoding the others (to `video_codec`/`audio_codec` when given)."""
    return Operation(
        convert=export_pb2.ConvertOptions(
            container=enum_value(export_pb2.ConvertOptions.Container, "CONTAINER_", container),
            video_codec=video_codec,
            audio_codec=audio_codec,
        )
    )


def compress(
    *,
    quality: str | export_pb2.CompressOptions.Quality.ValueType | None = None,
    crf: int | None = None,
    max_bitrate: str = "",
    buffer_size: str = "",
    target_size: str = "",
) -> Operation:
    """Make the video smaller: a `quality` preset (`low`, `medium`, `high`), a `crf` (0-51, x264
    scale), bitrate caps (`max_bitrate`, `buffer_size`) or a `target_size` (`25MB`)."""
    return Operation(
        compress=export_pb2.CompressOptions(
            quality=_unset_or(export_pb2.CompressOptions.Quality, "QUALITY_", quality),
            crf=crf,
            max_bitrate=max_bitrate,
            buffer_size=buffer_size,
            target_size=target_size,
        )
    )


def clock(
    format: str = "", *, base_time: datetime.datetime | None = None, time_zone: str = ""
) -> Clock:
    """A running capture-time clock for `watermark(clock=...)`: `format` with %Y %m %d %H %M %S
    %L (default `%Y-%m-%d %H:%M:%S`), starting at `base_time` (default: the source's capture
    start), shown in `time_zone` (IANA, default UTC)."""
    return Clock(
        format=format,
        base_time=None if base_time is None else timestamp(base_time),
        time_zone=time_zone,
    )


def watermark(
    *,
    text: str | None = None,
    image: str | None = None,
    clock: Clock | None = None,
    position: str | export_pb2.WatermarkOptions.Position.ValueType | None = None,
    margin: int | None = None,
    offset_x: int = 0,
    offset_y: int = 0,
    opacity: float | None = None,
    scale: float = 0.0,
    text_color: str = "",
) -> Operation:
    """Draw `text`, the stored `image` (object key of a PNG/JPEG/WebP) or a `clock` over every
    frame, at `position` (`top-left`, `top-right`, `bottom-left`, `bottom-right`, `center`)."""
    if text is not None and image is not None:
        raise ValueError("a watermark is text or an image, not both")
    options = export_pb2.WatermarkOptions(
        clock=clock,
        position=_unset_or(export_pb2.WatermarkOptions.Position, "POSITION_", position),
        margin=margin,
        offset_x=offset_x,
        offset_y=offset_y,
        opacity=opacity,
        scale=scale,
        text_color=text_color,
    )
    if text is not None:
        options.text = text
    if image is not None:
        options.image_object_key = image
    return Operation(watermark=options)


def trim(
    *,
    start: TimeValue | None = None,
    end: TimeValue | None = None,
    duration: TimeValue | None = None,
    mode: str | export_pb2.TrimOptions.Mode.ValueType | None = None,
) -> Operation:
    """Keep `start` to `end` (or `start + duration`); `mode` `exact` (re-encode, default) or
    `fast` (stream copy from the keyframe at or before `start`)."""
    return Operation(
        trim=export_pb2.TrimOptions(
            start=_time_text(start),
            end=_time_text(end),
            duration=_time_text(duration),
            mode=_unset_or(export_pb2.TrimOptions.Mode, "MODE_", mode),
        )
    )


def region(x: float, y: float, width: float, height: float) -> Region:
    """A rectangle for `redact`, in fractions of the frame: (0, 0) top left, (1, 1) bottom
    right."""
    return Region(x=x, y=y, width=width, height=height)


def redact(
    *regions: Region | tuple[float, float, float, float],
    mode: str | export_pb2.RedactOptions.Mode.ValueType | None = None,
    strength: float | None = None,
    start: TimeValue | None = None,
    end: TimeValue | None = None,
    duration: TimeValue | None = None,
) -> Operation:
    """Hide `regions` (1 to 32; `region(...)` or `(x, y, width, height)` tuples) by `blur`
    (default) or `pixelate`, for the whole video or from `start` to `end`/`duration`."""
    return Operation(
        redact=export_pb2.RedactOptions(
            regions=_regions(regions),
            mode=_unset_or(export_pb2.RedactOptions.Mode, "MODE_", mode),
            strength=strength,
            start=_time_text(start),
            end=_time_text(end),
            duration=_time_text(duration),
        )
    )


def _regions(regions: Iterable[Region | tuple[float, float, float, float]]) -> list[Region]:
    return [item if isinstance(item, Region) else region(*item) for item in regions]
