"""The operations an export applies, as validated plain dataclasses (no protobuf).

Built from requests by `api/exports/requests/`, stored in the export record as JSON (each with
its `name`), run by the worker's pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal


@dataclass(frozen=True)
class Timestamp:
    """A point in a video: a fraction of its duration, or seconds from its start."""

    kind: Literal["percent", "seconds"]
    value: float

    def resolve(self, duration_s: float) -> float:
        return duration_s * self.value / 100.0 if self.kind == "percent" else self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.kind == "percent" else f"{self.value:g}s"


@dataclass(frozen=True)
class TranscodeOp:
    """Re-encode the video. `width`/`height` 0 means "keep" (aspect-preserving when one is 0).

    Empty strings and None mean "not asked for": the planner fills in defaults (h264, medium,
    yuv420p, AAC) and lets a later operation or a convert decide what an earlier one did not.
    """

    codec: str = ""
    bitrate_bps: int | None = None
    width: int = 0
    height: int = 0
    preset: str = ""
    # Frame rate as a fraction, "30" or "30000/1001"; "" keeps the source's.
    fps: str = ""
    pixel_format: str = ""
    audio_codec: str = ""
    audio_bitrate_bps: int | None = None
    remove_audio: bool = False
    hardware: Literal["", "none", "auto", "nvenc"] = ""
    name: Literal["transcode"] = "transcode"


@dataclass(frozen=True)
class ThumbnailOp:
    """Grab still images at the given times; `width`/`height` 0 as for TranscodeOp.

    With `sprite`, the frames become one sprite sheet of `sprite_columns` tiles per row (0: a
    square-ish grid); without timestamps it holds `sprite_frame_count` evenly spaced frames.
    """

    timestamps: tuple[Timestamp, ...] = (Timestamp("percent", 50.0),)
    width: int = 0
    height: int = 0
    format: Literal["jpeg", "png", "webp"] = "jpeg"
    sprite: bool = False
    sprite_frame_count: int = 0
    sprite_columns: int = 0
    name: Literal["thumbnail"] = "thumbnail"


@dataclass(frozen=True)
class ConvertOp:
    """Change the container (see `media.codecs.CONTAINERS`); "" codecs keep what fits."""

    container: str = "mp4"
    video_codec: str = ""
    audio_codec: str = ""
    name: Literal["convert"] = "convert"


@dataclass(frozen=True)
class CompressOp:
    """Rate control: a quality preset ("" when not given), CRF, caps or a target size."""

    quality: Literal["", "low", "medium", "high"] = ""
    crf: int | None = None
    max_bitrate_bps: int | None = None
    buffer_size_bits: int | None = None
    target_size_bytes: int | None = None
    name: Literal["compress"] = "compress"


WatermarkPosition = Literal["top_left", "top_right", "bottom_left", "bottom_right", "center"]


DEFAULT_CLOCK_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class WatermarkClock:
    """A running capture-time clock: `format` (fields %Y %m %d %H %M %S %L %%) in `time_zone`,
    counting from `base_time_ns` (UTC ns of the source's first frame; None: the source's own
    capture start time)."""

    format: str = DEFAULT_CLOCK_FORMAT
    base_time_ns: int | None = None
    time_zone: str = "UTC"


@dataclass(frozen=True)
class WatermarkOp:
    """An image (storage key) or a line of literal text drawn over every frame, the text
    optionally followed by a running clock (`clock`).

    `margin` None: 2% of the frame width. `scale` 0: images keep their size (shrunk to fit),
    text is 4% of the frame height tall; otherwise the watermark's width as a fraction of the
    frame's.
    """

    image_key: str = ""
    text: str = ""
    position: WatermarkPosition = "bottom_right"
    margin: int | None = None
    offset_x: int = 0
    offset_y: int = 0
    opacity: float = 1.0
    scale: float = 0.0
    text_color: str = "#ffffff"
    # Text followed by (or only) a clock showing each frame's capture time.
    clock: WatermarkClock | None = None
    name: Literal["watermark"] = "watermark"


@dataclass(frozen=True)
class TrimOp:
    """Keep [start, end) of the video it applies to; `end_s` and `duration_s` are exclusive
    alternatives (neither: to the end)."""

    start_s: float = 0.0
    end_s: float | None = None
    duration_s: float | None = None
    mode: Literal["exact", "fast"] = "exact"
    name: Literal["trim"] = "trim"

    def end_within(self, length_s: float | None) -> float | None:
        """The end, relative to the video it applies to, when that is known."""
        return _span_end(self.start_s, self.end_s, self.duration_s, length_s)


RedactMode = Literal["blur", "pixelate"]


@dataclass(frozen=True)
class RedactRegion:
    """A rectangle normalised to the frame: (0, 0) top left, (1, 1) bottom right."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class RedactOp:
    """Hide `regions` (blurred or pixelated) during [start_s, end) of the video it applies to;
    `end_s` and `duration_s` as TrimOp's (neither: to the end). `strength` in (0, 1]."""

    regions: tuple[RedactRegion, ...] = ()
    mode: RedactMode = "blur"
    strength: float = 0.5
    start_s: float = 0.0
    end_s: float | None = None
    duration_s: float | None = None
    name: Literal["redact"] = "redact"

    def end_within(self, length_s: float | None) -> float | None:
        """The span's end, relative to the video it applies to, when that is known."""
        return _span_end(self.start_s, self.end_s, self.duration_s, length_s)


def _span_end(
    start_s: float, end_s: float | None, duration_s: float | None, length_s: float | None
) -> float | None:
    if end_s is not None:
        end: float | None = end_s
    elif duration_s is not None:
        end = start_s + duration_s
    else:
        end = None
    if length_s is None:
        return end
    return length_s if end is None else min(end, length_s)


Operation = TranscodeOp | ThumbnailOp | ConvertOp | CompressOp | WatermarkOp | TrimOp | RedactOp


def operation_from_dict(data: dict[str, Any]) -> Operation:
    name = data["name"]
    if name == "thumbnail":
        stamps = tuple(Timestamp(kind=t["kind"], value=t["value"]) for t in data["timestamps"])
        return ThumbnailOp(**{**_known(ThumbnailOp, data), "timestamps": stamps})
    if name == "watermark" and data.get("clock") is not None:
        clock = WatermarkClock(**data["clock"])
        return WatermarkOp(**{**_known(WatermarkOp, data), "clock": clock})
    if name == "redact":
        regions = tuple(RedactRegion(**region) for region in data["regions"])
        return RedactOp(**{**_known(RedactOp, data), "regions": regions})
    kind = _OPERATION_TYPES.get(name)
    if kind is None:
        raise ValueError(f"unknown operation {name!r}")
    return kind(**_known(kind, data))


_OPERATION_TYPES: dict[str, type[TranscodeOp | ConvertOp | CompressOp | WatermarkOp | TrimOp]] = {
    "transcode": TranscodeOp,
    "convert": ConvertOp,
    "compress": CompressOp,
    "watermark": WatermarkOp,
    "trim": TrimOp,
}


def _known(kind: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in data.items() if k in names}
