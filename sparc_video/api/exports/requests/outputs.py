"""Output options: transcode, convert, compress and thumbnail operations → domain operations."""

from __future__ import annotations

from sparc.video.v1 import export_pb2

from sparc_video.api.exports.requests.fields import (
    MAX_DIMENSION,
    audio_codec_name,
    enum_value,
    parse_bitrate,
    parse_fps,
    parse_resolution,
    parse_size_bytes,
    parse_text,
    parse_timestamp,
    video_codec_name,
)
from sparc_video.core.errors import FieldViolation
from sparc_video.exports import enums
from sparc_video.exports.operations import (
    CompressOp,
    ConvertOp,
    ThumbnailOp,
    Timestamp,
    TranscodeOp,
)
from sparc_video.exports.plan import DEFAULT_TILE_WIDTH, sprite_grid
from sparc_video.media import codecs
from sparc_video.media.codecs import PRESETS

MAX_THUMBNAILS = 100
MIN_AUDIO_BITRATE, MAX_AUDIO_BITRATE = 16_000, 512_000
DEFAULT_SPRITE_FRAMES = 16


def odd_size_problem(size: tuple[int, int]) -> str:
    """Why a video size cannot be produced as asked, or "". 4:2:0 chroma (the default, and what
    players expect of H.264) stores one colour sample per 2x2 block, so the planner keeps every
    video size even, whatever the pixel format: an odd side would come out one pixel smaller
    than asked, silently."""
    width, height = size
    if width % 2 == 0 and height % 2 == 0:
        return ""
    near = f"{width - width % 2 or 2}x{height - height % 2 or 2}"
    return (
        f"{width}x{height}: video sides must be even (colour is stored per 2x2 pixels); "
        f"use e.g. {near}, or 0 on one side to keep the aspect ratio"
    )


def transcode(
    options: export_pb2.TranscodeOptions, field: str, violations: list[FieldViolation]
) -> TranscodeOp | None:
    before = len(violations)
    codec = ""
    if options.codec.strip():
        codec = video_codec_name(options.codec, f"{field}.codec", violations)
    bitrate = parse_text(parse_bitrate, options.bitrate, f"{field}.bitrate", violations)
    size = parse_text(parse_resolution, options.resolution, f"{field}.resolution", violations)
    preset = options.preset.strip().lower()
    if preset and preset not in PRESETS:
        violations.append(
            FieldViolation(
                f"{field}.preset", f"{options.preset!r} is not one of {', '.join(PRESETS)}"
            )
        )
    fps = parse_text(parse_fps, options.fps, f"{field}.fps", violations)
    pixel_format = options.pixel_format.strip().lower()
    if pixel_format and pixel_format not in codecs.PIXEL_FORMATS:
        violations.append(
            FieldViolation(
                f"{field}.pixel_format",
                f"{options.pixel_format!r} is not one of {', '.join(codecs.PIXEL_FORMATS)}",
            )
        )
    if size is not None and (size_problem := odd_size_problem(size)):
        violations.append(FieldViolation(f"{field}.resolution", size_problem))
    audio_codec = ""
    if options.audio_codec.strip():
        audio_codec = audio_codec_name(options.audio_codec, f"{field}.audio_codec", violations)
    audio_bitrate = parse_text(
        parse_bitrate, options.audio_bitrate, f"{field}.audio_bitrate", violations
    )
    if audio_bitrate is not None and not MIN_AUDIO_BITRATE <= audio_bitrate <= MAX_AUDIO_BITRATE:
        violations.append(
            FieldViolation(f"{field}.audio_bitrate", f"{options.audio_bitrate!r}: use 16k to 512k")
        )
    if options.remove_audio and (options.audio_codec.strip() or options.audio_bitrate.strip()):
        violations.append(
            FieldViolation(
                f"{field}.remove_audio",
                "remove_audio leaves no audio to encode: drop audio_codec/audio_bitrate or it",
            )
        )
    hardware = enum_value(
        options.hardware, enums.HARDWARE.from_proto, f"{field}.hardware", violations
    )
    if len(violations) > before:
        return None
    width, height = size or (0, 0)
    return TranscodeOp(
        codec=codec,
        bitrate_bps=bitrate,
        width=width,
        height=height,
        preset=preset,
        fps=str(fps) if fps is not None else "",
        pixel_format=pixel_format,
        audio_codec=audio_codec,
        audio_bitrate_bps=audio_bitrate,
        remove_audio=options.remove_audio,
        hardware=hardware or "",
    )


def thumbnail(
    options: export_pb2.ThumbnailOptions, field: str, violations: list[FieldViolation]
) -> ThumbnailOp | None:
    before = len(violations)
    stamps: list[Timestamp] = []
    if len(options.timestamps) > MAX_THUMBNAILS:
        violations.append(
            FieldViolation(f"{field}.timestamps", f"at most {MAX_THUMBNAILS} per operation")
        )
    for index, text in enumerate(options.timestamps):
        try:
            stamps.append(parse_timestamp(text))
        except ValueError as exc:
            violations.append(FieldViolation(f"{field}.timestamps[{index}]", str(exc)))
    size = parse_text(parse_resolution, options.size, f"{field}.size", violations)
    image_format = enum_value(
        options.format, enums.IMAGE_FORMATS.from_proto, f"{field}.format", violations
    )
    sprite = options.HasField("sprite_sheet")
    count = columns = 0
    if sprite:
        sheet = options.sprite_sheet
        count, columns = sheet.frame_count, sheet.columns
        if stamps and count:
            violations.append(
                FieldViolation(
                    f"{field}.sprite_sheet.frame_count",
                    "frame_count spaces frames evenly; with timestamps leave it 0",
                )
            )
        elif not 0 <= count <= MAX_THUMBNAILS:
            violations.append(
                FieldViolation(
                    f"{field}.sprite_sheet.frame_count", f"use 1 to {MAX_THUMBNAILS} (0: 16)"
                )
            )
        if not 0 <= columns <= MAX_THUMBNAILS:
            violations.append(
                FieldViolation(
                    f"{field}.sprite_sheet.columns", f"use 1 to {MAX_THUMBNAILS} (0: automatic)"
                )
            )
        if not stamps and not count:
            count = DEFAULT_SPRITE_FRAMES
    width, height = size or (0, 0)
    if sprite and len(violations) == before:
        cols, rows = sprite_grid(len(stamps) or count, columns)
        tile_w = width or (DEFAULT_TILE_WIDTH if not height else 0)
        if tile_w * cols > MAX_DIMENSION or height * rows > MAX_DIMENSION:
            violations.append(
                FieldViolation(
                    f"{field}.size",
                    f"a {cols}x{rows} grid of {options.size or tile_w} tiles "
                    f"is larger than {MAX_DIMENSION} pixels; use smaller tiles or fewer frames",
                )
            )
    if len(violations) > before:
        return None
    return ThumbnailOp(
        timestamps=tuple(stamps) if stamps else ThumbnailOp.timestamps,
        width=width,
        height=height,
        format=image_format or "jpeg",
        sprite=sprite,
        sprite_frame_count=count if sprite and not stamps else 0,
        sprite_columns=columns,
    )


def convert(
    options: export_pb2.ConvertOptions, field: str, violations: list[FieldViolation]
) -> ConvertOp | None:
    before = len(violations)
    container = enums.CONTAINERS.from_proto.get(options.container)
    if container is None:
        violations.append(
            FieldViolation(
                f"{field}.container",
                "required: one of "
                + ", ".join(f"CONTAINER_{c.upper()}" for c in codecs.CONTAINERS),
            )
        )
    video_codec = audio_codec = ""
    if options.video_codec.strip():
        video_codec = video_codec_name(options.video_codec, f"{field}.video_codec", violations)
    if options.audio_codec.strip():
        audio_codec = audio_codec_name(options.audio_codec, f"{field}.audio_codec", violations)
    if container is not None:
        box = codecs.CONTAINERS[container]
        if video_codec and codecs.VIDEO_CODECS[video_codec].canonical not in box.video_codecs:
            violations.append(
                FieldViolation(
                    f"{field}.video_codec",
                    f"{container} cannot hold {video_codec}; it holds "
                    + ", ".join(codecs.video_codecs_in(box)),
                )
            )
        if audio_codec and codecs.AUDIO_CODECS[audio_codec].canonical not in box.audio_codecs:
            violations.append(
                FieldViolation(
                    f"{field}.audio_codec",
                    f"{container} cannot hold {audio_codec}; it holds "
                    + ", ".join(codecs.audio_codecs_in(box)),
                )
            )
    if len(violations) > before or container is None:
        return None
    return ConvertOp(container=container, video_codec=video_codec, audio_codec=audio_codec)


def compress(
    options: export_pb2.CompressOptions, field: str, violations: list[FieldViolation]
) -> CompressOp | None:
    before = len(violations)
    quality = enum_value(
        options.quality, enums.QUALITIES.from_proto, f"{field}.quality", violations
    )
    crf = options.crf if options.HasField("crf") else None
    if crf is not None and not 0 <= crf <= codecs.CRF_MAX:
        violations.append(
            FieldViolation(f"{field}.crf", f"{crf} is out of range; use 0 to {codecs.CRF_MAX}")
        )
    max_bitrate = parse_text(parse_bitrate, options.max_bitrate, f"{field}.max_bitrate", violations)
    buffer_size = parse_text(parse_bitrate, options.buffer_size, f"{field}.buffer_size", violations)
    if buffer_size is not None and max_bitrate is None and options.max_bitrate.strip() == "":
        violations.append(
            FieldViolation(f"{field}.buffer_size", "buffer_size goes with max_bitrate; set both")
        )
    target = parse_text(parse_size_bytes, options.target_size, f"{field}.target_size", violations)
    if options.target_size.strip() and (crf is not None or quality):
        violations.append(
            FieldViolation(
                f"{field}.target_size",
                "target_size sets an average bitrate; it cannot be combined with crf or quality",
            )
        )
    if len(violations) > before:
        return None
    return CompressOp(
        quality=quality or "",
        crf=crf,
        max_bitrate_bps=max_bitrate,
        buffer_size_bits=buffer_size,
        target_size_bytes=target,
    )
