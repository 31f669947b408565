"""Bind a plan (`sparc_video.exports.plan`: composition rules) to a probed source: concrete passes.

What the rules leave to the source is decided here: whether a stream can be copied (its codec
fits the container and nothing needs its pictures), the sizes each filter works at, the
bitrate a target size means for this duration, software or NVENC, and whether the times asked
for exist in this video.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sparc_video.core.errors import MediaError
from sparc_video.exports.operations import Operation, ThumbnailOp, Timestamp
from sparc_video.exports.plan import (
    DEFAULT_TILE_WIDTH,
    Plan,
    Redaction,
    Scale,
    Segment,
    Step,
    ThumbnailPlan,
    VideoPlan,
)
from sparc_video.media import codecs
from workers.pipeline.encoders import (
    AudioEncoder,
    HardwareReport,
    RateControl,
    choose_audio_encoder,
    choose_video_encoder,
    local_hardware,
)
from workers.pipeline.filters import FilterStep, Resize
from workers.pipeline.media import MediaInfo, fit_size
from workers.pipeline.redact import redaction
from workers.pipeline.render import VideoEncode, VideoPass
from workers.pipeline.watermark import watermark_overlay

# Cost of a pass for the overall percent, in seconds of media: a re-encode counts its
# duration, a stream copy a twentieth of it, a thumbnail half a second (seeking makes it cheap
# and independent of the video's length).
COPY_WEIGHT = 0.05
THUMBNAIL_WEIGHT_S = 0.5
# Smallest video bitrate a target size may come to.
MIN_TARGET_BITRATE = 20_000


@dataclass(frozen=True)
class ThumbnailPass:
    src: Path
    out_dir: Path
    op: ThumbnailOp
    # Source seconds of each frame asked for.
    times_s: tuple[float, ...]
    # The source's displayed size, and the filters of the operations before it.
    source_size: tuple[int, int]
    steps: tuple[FilterStep, ...]
    # Size of each image (or sprite sheet tile).
    image_size: tuple[int, int]
    segment_start_s: float
    # The source's nominal frame duration.
    frame_s: float
    operations: tuple[int, ...]
    label: str
    weight: float


Pass = VideoPass | ThumbnailPass


def build_passes(
    plan: Plan,
    src: Path,
    info: MediaInfo,
    workdir: Path,
    assets: Mapping[str, Path],
    hardware: HardwareReport | None = None,
) -> list[Pass]:
    """The passes of `plan` over `src`, in the order of their first operation.

    `hardware` is what the worker's start-up probe found; None (outside a worker: tests,
    benchmarks) probes this process, once, if the plan asks for hardware encoding.
    """
    passes: list[Pass] = []
    if plan.video is not None:
        passes.append(_video_pass(plan, plan.video, src, info, workdir, assets, hardware))
    for thumbs in plan.thumbnails:
        passes.append(_thumbnail_pass(plan, thumbs, src, info, workdir, assets))
    return sorted(passes, key=lambda p: p.operations[0])


def _video_pass(
    plan: Plan,
    video: VideoPlan,
    src: Path,
    info: MediaInfo,
    workdir: Path,
    assets: Mapping[str, Path],
    hardware: HardwareReport | None,
) -> VideoPass:
    segment = _check_segment(video.segment, info, plan.operations, video.operations)
    box = codecs.CONTAINERS[video.container]
    length = (segment.end_s if segment.end_s is not None else info.duration_s) - segment.start_s
    chosen = codecs.VIDEO_CODECS[video.video.codec].canonical if video.video.codec else None
    copy = (
        not video.encode
        and info.video_codec in box.video_codecs
        and chosen in (None, info.video_codec)
    )
    audio: AudioEncoder | str | None = None
    if info.has_audio and not video.audio.remove:
        chosen_audio = (
            codecs.AUDIO_CODECS[video.audio.codec].canonical if video.audio.codec else None
        )
        if (
            copy
            and info.audio_codec in box.audio_codecs
            and chosen_audio in (None, info.audio_codec)
            and video.audio.bitrate_bps is None
        ):
            audio = "copy"
        else:
            audio = choose_audio_encoder(video.encode_audio_codec(), video.audio.bitrate_bps)
    encode: VideoEncode | None = None
    if not copy:
        steps, _ = resolve_steps(video.steps, (info.width, info.height), assets, plan.capture_time)
        enc = video.video
        rate = RateControl(enc.bitrate_bps, enc.crf, enc.max_bitrate_bps, enc.buffer_size_bits)
        if enc.target_size_bytes is not None:
            audio_bps = audio.bitrate_bps if isinstance(audio, AudioEncoder) else 0
            rate = RateControl(
                bitrate_bps=_target_bitrate(enc.target_size_bytes, length, audio_bps),
                max_bitrate_bps=enc.max_bitrate_bps,
                buffer_size_bits=enc.buffer_size_bits,
            )
        encoder = choose_video_encoder(
            video.encode_video_codec(),
            enc.preset or codecs.DEFAULT_PRESET,
            enc.pixel_format or codecs.DEFAULT_PIXEL_FORMAT,
            enc.hardware,
            rate,
            available=(hardware or local_hardware())
            if enc.hardware in ("auto", "nvenc")
            else HardwareReport(),
        )
        encode = VideoEncode(encoder, (info.width, info.height), tuple(steps), video.fps)
    return VideoPass(
        src=src,
        dst=workdir / f"video{box.extension}",
        container=box,
        start_s=segment.start_s,
        end_s=segment.end_s,
        video=encode,
        audio=audio if audio != "copy" else "copy",  # type: ignore[arg-type]
        operations=tuple(video.operations),
        label=_label(plan.operations, video.operations),
        weight=max(length, 1e-3) * (1.0 if encode is not None else COPY_WEIGHT),
    )


def _check_segment(
    segment: Segment, info: MediaInfo, operations: list[Operation], indexes: list[int]
) -> Segment:
    if segment.start_s >= info.duration_s:
        trims = [i for i in indexes if operations[i].name == "trim"]
        where = f"operation {trims[-1]} (trim)" if trims else "the plan"
        raise MediaError(
            f"{where} starts at {segment.start_s:.3f} s of the source, which is "
            f"{info.duration_s:.3f} s long",
            reason="TIMESTAMP_OUT_OF_RANGE",
        )
    if segment.end_s is not None and segment.end_s >= info.duration_s:
        return Segment(segment.start_s, None)
    return segment


def _target_bitrate(target_bytes: int, length_s: float, audio_bps: int) -> int:
    # Container overhead is about 1-2%; aim a little under the target.
    total_bps = target_bytes * 8 * 0.97 / max(length_s, 0.1)
    video_bps = int(total_bps - audio_bps)
    if video_bps < MIN_TARGET_BITRATE:
        raise MediaError(
            f"a target size of {target_bytes} bytes leaves {max(video_bps, 0)} bit/s for "
            f"{length_s:.1f} s of video: too little (at least {MIN_TARGET_BITRATE} bit/s)",
            reason="TARGET_SIZE_TOO_SMALL",
        )
    return video_bps


def resolve_steps(
    steps: tuple[Step, ...] | list[Step],
    size: tuple[int, int],
    assets: Mapping[str, Path],
    capture_time: Callable[[float], datetime | None] | None = None,
) -> tuple[list[FilterStep], tuple[int, int]]:
    """Filters with concrete sizes (and rendered watermarks), from a frame of `size`;
    `capture_time`: the source's capture time at a source time, for watermark clocks without
    a base time."""
    width, height = size
    resolved: list[FilterStep] = []
    for step in steps:
        if isinstance(step, Scale):
            width, height = fit_size(width, height, step.width, step.height, even=True)
            resolved.append(Resize(width, height))
        elif isinstance(step, Redaction):
            resolved.append(redaction(step, width, height))
        else:
            resolved.append(watermark_overlay(step.op, width, height, assets, capture_time))
    return resolved, (width, height)


def _thumbnail_pass(
    plan: Plan,
    thumbs: ThumbnailPlan,
    src: Path,
    info: MediaInfo,
    workdir: Path,
    assets: Mapping[str, Path],
) -> ThumbnailPass:
    op = thumbs.op
    segment = thumbs.segment
    end = info.duration_s if segment.end_s is None else min(segment.end_s, info.duration_s)
    if segment.start_s >= info.duration_s:
        raise MediaError(
            f"operation {thumbs.op_index} (thumbnail) applies to a video starting at "
            f"{segment.start_s:.3f} s of the source, which is {info.duration_s:.3f} s long",
            reason="TIMESTAMP_OUT_OF_RANGE",
        )
    length = end - segment.start_s
    frame_s = 1 / info.fps if info.fps > 0 else 1 / 25
    stamps = op.timestamps
    if op.sprite and op.sprite_frame_count:
        count = op.sprite_frame_count
        stamps = tuple(Timestamp("percent", 100 * (i + 0.5) / count) for i in range(count))
    times = tuple(segment.start_s + _resolve(ts, length, frame_s) for ts in stamps)
    steps, size = resolve_steps(thumbs.steps, (info.width, info.height), assets, plan.capture_time)
    width, height = op.width, op.height
    if op.sprite and not width and not height:
        width = DEFAULT_TILE_WIDTH
    image_size = fit_size(size[0], size[1], width, height, even=False)
    out_dir = workdir / f"op{thumbs.op_index}"
    return ThumbnailPass(
        src=src,
        out_dir=out_dir,
        op=op,
        times_s=times,
        source_size=(info.width, info.height),
        steps=tuple(steps),
        image_size=image_size,
        segment_start_s=segment.start_s,
        frame_s=frame_s,
        operations=(thumbs.op_index,),
        label="thumbnail",
        weight=THUMBNAIL_WEIGHT_S * len(times),
    )


def _resolve(ts: Timestamp, length_s: float, frame_s: float) -> float:
    target = ts.resolve(length_s)
    if target < 0 or target > length_s + frame_s / 2:
        raise MediaError(
            f"thumbnail timestamp {ts} ({target:.3f} s) is outside the video, which is "
            f"{length_s:.3f} s long",
            reason="TIMESTAMP_OUT_OF_RANGE",
        )
    # The end itself gives the last frame of the video (not the first one after a trim).
    return min(target, max(0.0, length_s - frame_s))


def _label(operations: list[Operation], indexes: list[int]) -> str:
    names: list[str] = []
    for index in indexes:
        name = operations[index].name
        if name not in names:
            names.append(name)
    return "+".join(names)
