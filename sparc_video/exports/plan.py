"""The composition rules: how an ordered list of operations becomes a plan of passes.

Pure Python (no PyAV), so the server applies the same rules at CreateExport that the worker
runs by: a contradictory list is refused there with INVALID_ARGUMENT saying why.

Every operation applies to the video produced by the operations before it. The rules:

- All the operations that make the video (trim, watermark, redact, transcode, compress,
  convert) fold into **one** video pass: decode → filter → encode, or a stream copy (remux)
  when nothing needs the pictures changed and the codecs fit the container.
- trim narrows the segment of the source that is kept; its times are relative to the video
  produced before it (a trim after a trim cuts inside the first one's result). Trimming
  commutes with the per-frame filters, so its position among them does not matter.
- watermark, redact and transcode's resolution are per-frame filters, applied in list order (a
  watermark before a scale is scaled with the picture; after it, it is drawn on the scaled
  picture at its own size). A transcode's fps sets the output frame rate. A redaction's span
  is relative to the video before it, like a trim's times, and held in source seconds.
- Encoder settings (codec, preset, pixel format, rate control, audio) are merged in order: a
  later operation's explicit option replaces an earlier one's. compress's CRF/quality/target
  size replace a transcode's bitrate and the other way round.
- convert sets the container; a codec chosen explicitly anywhere in the list must fit the
  final container (or the list is refused). Codecs nobody chose follow the container: h264 +
  AAC where they fit, else the container's defaults.
- A fast trim is a stream copy from the keyframe before the start; when the pass re-encodes
  anyway (any other operation but convert, or codecs that do not fit), the cut is exact.
- thumbnail takes its frames by seeking in the source, through the filters of the operations
  before it, with times relative to the video produced before it: it needs no pass of its
  own over the video and does not change the video.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.exports.operations import (
    CompressOp,
    ConvertOp,
    Operation,
    RedactOp,
    ThumbnailOp,
    TranscodeOp,
    TrimOp,
    WatermarkOp,
)
from sparc_video.media import codecs

# Sprite sheet tiles are this wide when no size is given.
DEFAULT_TILE_WIDTH = 160


def sprite_grid(frames: int, columns: int = 0) -> tuple[int, int]:
    """(columns, rows) of a sprite sheet of `frames` tiles; columns 0: a square-ish grid."""
    cols = min(frames, columns or max(1, math.ceil(math.sqrt(frames))))
    return cols, -(-frames // cols)


@dataclass(frozen=True)
class Scale:
    """Scale to width x height; 0 on one side keeps the aspect ratio."""

    width: int
    height: int


@dataclass(frozen=True)
class Overlay:
    op_index: int
    op: WatermarkOp


@dataclass(frozen=True)
class Segment:
    """The part of the source kept, in source seconds; `end_s` None is the source's end."""

    start_s: float = 0.0
    end_s: float | None = None

    @property
    def length_s(self) -> float | None:
        return None if self.end_s is None else self.end_s - self.start_s


@dataclass(frozen=True)
class Redaction:
    """Hide the op's regions while source time is within `span` (source seconds)."""

    op_index: int
    op: RedactOp
    span: Segment


Step = Scale | Overlay | Redaction


@dataclass
class VideoEncoding:
    """Video encoder settings; "" / None are "not chosen"."""

    codec: str = ""
    codec_op: int | None = None
    preset: str = ""
    pixel_format: str = ""
    pixel_format_op: int | None = None
    hardware: str = ""
    hardware_op: int | None = None
    bitrate_bps: int | None = None
    crf: int | None = None
    max_bitrate_bps: int | None = None
    buffer_size_bits: int | None = None
    target_size_bytes: int | None = None


@dataclass
class AudioChoice:
    remove: bool = False
    remove_op: int | None = None
    codec: str = ""
    codec_op: int | None = None
    bitrate_bps: int | None = None


@dataclass
class VideoPlan:
    """The one pass that makes the export's video."""

    operations: list[int] = field(default_factory=list)
    segment: Segment = field(default_factory=Segment)
    trimmed: bool = False
    # Every trim allowed a keyframe cut: the pass may stream-copy.
    fast_trim: bool = True
    steps: list[Step] = field(default_factory=list)
    fps: Fraction | None = None
    # Something needs the pictures re-encoded (transcode, compress, watermark, exact trim).
    encode: bool = False
    video: VideoEncoding = field(default_factory=VideoEncoding)
    audio: AudioChoice = field(default_factory=AudioChoice)
    container: str = codecs.DEFAULT_CONTAINER
    container_op: int | None = None

    def encode_video_codec(self) -> str:
        """The codec a re-encode produces: the one chosen, else h264 where it fits."""
        if self.video.codec:
            return self.video.codec
        box = codecs.CONTAINERS[self.container]
        return codecs.DEFAULT_VIDEO_CODEC if "h264" in box.video_codecs else box.default_video

    def encode_audio_codec(self) -> str:
        if self.audio.codec:
            return self.audio.codec
        box = codecs.CONTAINERS[self.container]
        return codecs.DEFAULT_AUDIO_CODEC if "aac" in box.audio_codecs else box.default_audio


@dataclass(frozen=True)
class ThumbnailPlan:
    """Seek-based stills: `segment` and `steps` are those of the video the operation sees."""

    op_index: int
    op: ThumbnailOp
    segment: Segment
    steps: tuple[Step, ...]


@dataclass
class Plan:
    operations: list[Operation]
    video: VideoPlan | None
    thumbnails: list[ThumbnailPlan]
    # When the source's frame at a given time (seconds) was captured, for sources that know
    # (recordings, camera ranges, whose closed gaps make it more than start + t): a watermark
    # clock without a base time of its own shows it.
    capture_time: Callable[[float], datetime | None] | None = None


def compile_plan(
    operations: list[Operation],
    prefix: str = "export.operations",
    *,
    capture_time: Callable[[float], datetime | None] | None = None,
) -> Plan:
    """The plan for `operations`; InvalidArgument naming the fields of a contradictory list."""
    violations: list[FieldViolation] = []
    plan = _Compiler(operations, prefix, violations).run()
    if violations:
        raise InvalidArgument(violations)
    plan.capture_time = capture_time
    return plan


def check_plan(operations: list[Operation], prefix: str, violations: list[FieldViolation]) -> None:
    """Append a violation for each contradiction in `operations`."""
    _Compiler(operations, prefix, violations).run()


class _Compiler:
    def __init__(
        self, operations: list[Operation], prefix: str, violations: list[FieldViolation]
    ) -> None:
        self.operations = operations
        self.prefix = prefix
        self.violations = violations
        self.video = VideoPlan()
        self.thumbnails: list[ThumbnailPlan] = []

    def field(self, index: int, path: str) -> str:
        return f"{self.prefix}[{index}].{self.operations[index].name}.{path}"

    def by(self, index: int | None) -> str:
        assert index is not None
        return f"{self.prefix}[{index}] ({self.operations[index].name})"

    def run(self) -> Plan:
        for index, op in enumerate(self.operations):
            if isinstance(op, ThumbnailOp):
                self._thumbnail(index, op)
                continue
            self.video.operations.append(index)
            if isinstance(op, TrimOp):
                self._trim(index, op)
            elif isinstance(op, WatermarkOp):
                self.video.steps.append(Overlay(index, op))
                self.video.encode = True
            elif isinstance(op, RedactOp):
                self._redact(index, op)
            elif isinstance(op, TranscodeOp):
                self._transcode(index, op)
            elif isinstance(op, CompressOp):
                self._compress(op)
            else:
                self._convert(index, op)
        video = self.video if self.video.operations else None
        if video is not None:
            self._check_final(video)
        return Plan(list(self.operations), video, self.thumbnails)

    def _trim(self, index: int, op: TrimOp) -> None:
        video = self.video
        segment = video.segment
        length = segment.length_s
        if self._starts_past_end(index, op.start_s, length):
            return
        end = op.end_within(length)
        video.segment = Segment(
            segment.start_s + op.start_s,
            segment.end_s if end is None else segment.start_s + end,
        )
        video.trimmed = True
        if op.mode == "exact":
            video.fast_trim = False
            video.encode = True

    def _starts_past_end(self, index: int, start_s: float, length: float | None) -> bool:
        """An operation's start at or past the end of the video the ones before it produce."""
        if length is None or start_s < length:
            return False
        self.violations.append(
            FieldViolation(
                self.field(index, "start"),
                f"{start_s:g} s is at or past the end of the {length:g} s video that "
                "the operations before it produce",
            )
        )
        return True

    def _redact(self, index: int, op: RedactOp) -> None:
        """The span, relative to the video before the operation, becomes source seconds: a
        later trim narrows what is kept but does not move what was redacted."""
        segment = self.video.segment
        length = segment.length_s
        if self._starts_past_end(index, op.start_s, length):
            return
        end = op.end_within(length)
        span = Segment(segment.start_s + op.start_s, None if end is None else segment.start_s + end)
        self.video.steps.append(Redaction(index, op, span))
        self.video.encode = True

    def _transcode(self, index: int, op: TranscodeOp) -> None:
        video = self.video
        video.encode = True
        if op.width or op.height:
            video.steps.append(Scale(op.width, op.height))
        if op.fps:
            video.fps = Fraction(op.fps)
        enc = video.video
        if op.codec:
            enc.codec, enc.codec_op = op.codec, index
        if op.preset:
            enc.preset = op.preset
        if op.pixel_format:
            enc.pixel_format, enc.pixel_format_op = op.pixel_format, index
        if op.hardware:
            enc.hardware, enc.hardware_op = op.hardware, index
        if op.bitrate_bps is not None:
            enc.bitrate_bps = op.bitrate_bps
            enc.crf = enc.target_size_bytes = None
        audio = video.audio
        if op.remove_audio:
            video.audio = AudioChoice(remove=True, remove_op=index)
        elif op.audio_codec or op.audio_bitrate_bps is not None:
            if audio.remove:
                path = "audio_codec" if op.audio_codec else "audio_bitrate"
                self.violations.append(
                    FieldViolation(
                        self.field(index, path),
                        f"there is no audio to encode: {self.by(audio.remove_op)} removed it",
                    )
                )
                return
            if op.audio_codec:
                audio.codec, audio.codec_op = op.audio_codec, index
            if op.audio_bitrate_bps is not None:
                audio.bitrate_bps = op.audio_bitrate_bps

    def _compress(self, op: CompressOp) -> None:
        video = self.video
        video.encode = True
        enc = video.video
        quality = op.quality
        if not quality and op.crf is None and op.target_size_bytes is None:
            quality = "medium" if op.max_bitrate_bps is None else ""
        if quality:
            enc.crf, enc.preset = codecs.QUALITY_PRESETS[quality]
            enc.bitrate_bps = enc.target_size_bytes = None
        if op.crf is not None:
            enc.crf = op.crf
            enc.bitrate_bps = enc.target_size_bytes = None
        if op.target_size_bytes is not None:
            enc.target_size_bytes = op.target_size_bytes
            enc.crf = enc.bitrate_bps = None
        if op.max_bitrate_bps is not None:
            enc.max_bitrate_bps = op.max_bitrate_bps
            enc.buffer_size_bits = op.buffer_size_bits or 2 * op.max_bitrate_bps

    def _convert(self, index: int, op: ConvertOp) -> None:
        video = self.video
        video.container, video.container_op = op.container, index
        if op.video_codec:
            video.video.codec, video.video.codec_op = op.video_codec, index
        if op.audio_codec:
            if video.audio.remove:
                self.violations.append(
                    FieldViolation(
                        self.field(index, "audio_codec"),
                        f"there is no audio to convert: {self.by(video.audio.remove_op)} "
                        "removed it",
                    )
                )
            else:
                video.audio.codec, video.audio.codec_op = op.audio_codec, index

    def _thumbnail(self, index: int, op: ThumbnailOp) -> None:
        segment = self.video.segment
        length = segment.length_s
        if length is not None:
            for number, stamp in enumerate(op.timestamps):
                if stamp.kind == "seconds" and stamp.value > length:
                    self.violations.append(
                        FieldViolation(
                            self.field(index, f"timestamps[{number}]"),
                            f"{stamp} is past the end of the {length:g} s video that the "
                            "operations before it produce",
                        )
                    )
        self.thumbnails.append(ThumbnailPlan(index, op, segment, tuple(self.video.steps)))

    def _check_final(self, video: VideoPlan) -> None:
        """Explicit codecs against the final container, and codec-specific options."""
        box = codecs.CONTAINERS[video.container]
        enc = video.video
        if enc.codec:
            codec = codecs.VIDEO_CODECS[enc.codec]
            if codec.canonical not in box.video_codecs:
                self._misfit(
                    video,
                    enc.codec_op,
                    "codec",
                    f"video codec {enc.codec}",
                    codecs.video_codecs_in(box),
                )
        audio = video.audio
        if audio.codec and codecs.AUDIO_CODECS[audio.codec].canonical not in box.audio_codecs:
            self._misfit(
                video,
                audio.codec_op,
                "audio_codec",
                f"audio codec {audio.codec}",
                codecs.audio_codecs_in(box),
            )
        if not video.encode:
            return
        name = video.encode_video_codec()
        codec = codecs.VIDEO_CODECS[name]
        if enc.hardware == "nvenc" and not codec.nvenc:
            with_nvenc = ", ".join(c.name for c in codecs.VIDEO_CODECS.values() if c.nvenc)
            self.violations.append(
                FieldViolation(
                    self.field(_set(enc.hardware_op), "hardware"),
                    f"NVENC cannot encode {name} (the video codec of this export); it encodes "
                    f"{with_nvenc}",
                )
            )
        if enc.pixel_format and enc.pixel_format not in codec.pixel_formats:
            self.violations.append(
                FieldViolation(
                    self.field(_set(enc.pixel_format_op), "pixel_format"),
                    f"{name} (the video codec of this export) cannot encode "
                    f"{enc.pixel_format}; it takes {', '.join(codec.pixel_formats)}",
                )
            )

    def _misfit(
        self, video: VideoPlan, chosen_by: int | None, path: str, what: str, fits: list[str]
    ) -> None:
        """An explicit codec that the final container cannot hold: blame the later choice."""
        container_op = video.container_op
        holds = ", ".join(fits)
        if container_op is not None and (chosen_by is None or container_op > chosen_by):
            where = self.field(container_op, "container")
            message = f"{video.container} cannot hold the {what} chosen by {self.by(chosen_by)}"
        else:
            assert chosen_by is not None
            op = self.operations[chosen_by]
            if isinstance(op, ConvertOp):
                path = "video_codec" if path == "codec" else path
            where = self.field(chosen_by, path)
            origin = (
                f"the {video.container} container chosen by {self.by(container_op)}"
                if container_op is not None
                else f"the default {video.container} container"
            )
            message = f"{what} cannot go into {origin}"
        self.violations.append(FieldViolation(where, f"{message}; {video.container} holds {holds}"))


def _set(index: int | None) -> int:
    assert index is not None
    return index
