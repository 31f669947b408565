"""Opening untrusted media safely, probing it, and the frame plumbing shared by the operations.

Sources are uploaded by users: they are opened only through `sparc_video.media.safe_open`, whose
allow-lists of protocols, formats and decoders keep FFmpeg on a short leash.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import av
import av.error
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.filter import Graph
from av.packet import Packet
from av.stream import Stream
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from sparc_video.core.errors import MediaError, MediaLimitExceeded
from sparc_video.media.safe_open import (
    MAX_PIXELS,
    ffmpeg_message,
    main_audio,
    open_file,
    video_stream,
)
from sparc_video.media.still import FULL_RANGE

_FrameT = TypeVar("_FrameT", VideoFrame, AudioFrame)
if TYPE_CHECKING:
    from sparc_video.core.settings import Settings

    # Packet is invariant in its stream type (and not subscriptable at run time); demuxing
    # several streams gives Packet[Stream].
    AnyPacket: TypeAlias = Packet[VideoStream] | Packet[AudioStream] | Packet[Stream]


@dataclass(frozen=True)
class MediaInfo:
    """What a video holds. `width`/`height` are the displayed size: rotation metadata applied
    and non-square pixels made square, which is also the size `transcode` keeps by default."""

    duration_s: float
    width: int
    height: int
    fps: float
    video_codec: str
    audio_codec: str  # "" when absent
    has_audio: bool


@dataclass(frozen=True)
class MediaLimits:
    """Operator limits on sources (MAX_FRAME_PIXELS, MAX_SOURCE_DURATION; 0: no duration
    limit), checked on the probe before any work: a source past them fails permanently.
    `worker_concurrency` (VIDEO_WORKER_CONCURRENCY): the jobs sharing the worker's cores, which
    limits the threads of each (see `workers.pipeline.cores`)."""

    max_frame_pixels: int = MAX_PIXELS
    max_duration_s: float = 0.0
    worker_concurrency: int = 1

    @classmethod
    def of(cls, settings: Settings) -> MediaLimits:
        return cls(
            max_frame_pixels=settings.max_frame_pixels,
            max_duration_s=settings.max_source_duration_s,
            worker_concurrency=settings.worker_concurrency,
        )

    def check(self, info: MediaInfo) -> None:
        if info.width * info.height > self.max_frame_pixels:
            raise MediaLimitExceeded(
                f"the source is {info.width}x{info.height} ({info.width * info.height:,} "
                f"pixels per frame), above MAX_FRAME_PIXELS ({self.max_frame_pixels:,})",
                reason="FRAME_TOO_LARGE",
            )
        if self.max_duration_s and info.duration_s > self.max_duration_s:
            raise MediaLimitExceeded(
                f"the source lasts {info.duration_s:.1f} s, above MAX_SOURCE_DURATION "
                f"({self.max_duration_s:g} s)",
                reason="SOURCE_TOO_LONG",
            )


def probe(path: Path) -> MediaInfo:
    """Describe a video, decoding its first frame to prove that it can be decoded."""
    with open_file(path) as container:
        vs = video_stream(container)
        # Not audio_stream(): describing an audio track needs no decoder for it.
        audio = main_audio(container)
        first = _first_frame(container, vs)
        width, height = displayed_size(first, vs)
        return MediaInfo(
            duration_s=_duration(container, vs),
            width=width,
            height=height,
            fps=float(vs.average_rate or vs.guessed_rate or 0),
            video_codec=vs.codec_context.codec.canonical_name,
            audio_codec=audio.codec_context.codec.canonical_name if audio else "",
            has_audio=audio is not None,
        )


def decode_video(vs: VideoStream, packet: AnyPacket | None) -> list[VideoFrame]:
    """Decode one packet (None or an empty one drains the decoder). A damaged packet yields no
    frames rather than an error, as with the ffmpeg tool; a broken decoder is UNDECODABLE."""
    return _guarded(lambda: vs.codec_context.decode(packet))


def decode_audio(audio: AudioStream, packet: AnyPacket | None) -> list[AudioFrame]:
    """As `decode_video`, for audio."""
    return _guarded(lambda: audio.codec_context.decode(packet))


def _guarded(decode: Callable[[], list[_FrameT]]) -> list[_FrameT]:
    try:
        return decode()
    except av.error.InvalidDataError:
        return []
    except av.error.FFmpegError as exc:
        raise undecodable(exc) from exc


def undecodable(exc: av.error.FFmpegError) -> MediaError:
    return MediaError(
        f"the source video cannot be decoded ({ffmpeg_message(exc)})", reason="UNDECODABLE"
    )


def start_time_s(container: InputContainer) -> float:
    """Where the media timeline starts: 0 s for users, whatever the container stores."""
    start = container.start_time
    return start / av.time_base if start is not None else 0.0


def frame_time_s(frame: VideoFrame | AudioFrame, origin_s: float) -> float | None:
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * frame.time_base) - origin_s


def frame_duration_s(frame: VideoFrame, fallback_s: float) -> float:
    if frame.duration and frame.time_base is not None:
        return float(frame.duration * frame.time_base)
    return fallback_s


def displayed_size(frame: VideoFrame, vs: VideoStream) -> tuple[int, int]:
    """The size `frame` is shown at: sample aspect ratio and rotation applied."""
    width, height = frame.width, frame.height
    sar = vs.codec_context.sample_aspect_ratio
    if sar is not None and sar > 0 and sar != 1:
        width = max(1, round(width * sar))
    if _quarter_turns(frame) % 2:
        width, height = height, width
    return width, height


def fit_size(
    src_width: int, src_height: int, width: int, height: int, *, even: bool
) -> tuple[int, int]:
    """The output size asked for: 0 keeps the source's, one side 0 keeps its aspect ratio.

    With `even`, both sides are rounded to even numbers (4:2:0 H.264 needs them).
    """
    if width and height:
        out_w, out_h = float(width), float(height)
    elif width:
        out_w, out_h = float(width), width * src_height / src_width
    elif height:
        out_w, out_h = height * src_width / src_height, float(height)
    else:
        out_w, out_h = float(src_width), float(src_height)
    step = 2 if even else 1
    return (
        max(step, step * round(out_w / step)),
        max(step, step * round(out_h / step)),
    )


class FrameConverter:
    """Turns decoded frames upright, scales them (bicubic) and converts their pixel format.

    Output is limited-range video ("tv") for encoding to H.264, or with `jpeg` full-range BT.601,
    which is what JPEG viewers assume. A filter graph does it all in one pass; it is rebuilt
    when the input changes (streams may switch resolution midway) and skipped when there is
    nothing to do.
    """

    def __init__(self, width: int, height: int, pix_fmt: str, *, jpeg: bool = False) -> None:
        self._width = width
        self._height = height
        self._pix_fmt = pix_fmt
        self._jpeg = jpeg
        self._key: tuple[int, int, str, int, int, Fraction | None] | None = None
        self._graph: Graph | None = None

    def __call__(self, frame: VideoFrame, sar: Fraction | None = None) -> VideoFrame:
        turns = _quarter_turns(frame)
        if (
            turns == 0
            and not self._jpeg
            and frame.color_range != FULL_RANGE
            and (frame.width, frame.height) == (self._width, self._height)
            and frame.format.name == self._pix_fmt
        ):
            return frame
        key = (frame.width, frame.height, frame.format.name, frame.color_range, turns, sar)
        if self._graph is None or key != self._key:
            self._graph = self._build(frame, turns, sar)
            self._key = key
        self._graph.vpush(frame)
        out = self._graph.vpull()
        # The sink's time base is not reliable; the frame's own timing is what callers use.
        out.pts = frame.pts
        out.time_base = frame.time_base
        out.duration = frame.duration
        return out

    def _build(self, frame: VideoFrame, turns: int, sar: Fraction | None) -> Graph:
        graph = Graph()
        aspect = sar if sar is not None and sar > 0 else Fraction(1)
        chain = [
            graph.add(
                "buffer",
                video_size=f"{frame.width}x{frame.height}",
                pix_fmt=frame.format.name,
                time_base=str(frame.time_base or Fraction(1, 1000)),
                pixel_aspect=f"{aspect.numerator}/{aspect.denominator}",
            )
        ]
        # Display matrices rotate counter-clockwise; undo that as the ffmpeg tool does.
        if turns == 1:
            chain.append(graph.add("transpose", "cclock"))
        elif turns == 2:
            chain.append(graph.add("hflip"))
            chain.append(graph.add("vflip"))
        elif turns == 3:
            chain.append(graph.add("transpose", "clock"))
        scale = f"w={self._width}:h={self._height}:flags=bicubic"
        scale += ":out_range=full:out_color_matrix=bt601" if self._jpeg else ":out_range=tv"
        chain.append(graph.add("scale", scale))
        chain.append(graph.add("setsar", "1"))
        chain.append(graph.add("format", self._pix_fmt))
        chain.append(graph.add("buffersink"))
        graph.link_nodes(*chain)
        graph.configure()
        return graph


def _quarter_turns(frame: VideoFrame) -> int:
    """Counter-clockwise quarter turns the frame's display matrix asks for (0-3)."""
    rotation = frame.rotation
    if not rotation or math.isnan(rotation):
        return 0
    return round(rotation / 90) % 4


def _first_frame(container: InputContainer, vs: VideoStream) -> VideoFrame:
    try:
        for packet in container.demux(vs):
            for frame in decode_video(vs, packet):
                return frame
    except av.error.FFmpegError as exc:
        raise undecodable(exc) from exc
    raise MediaError(
        f"the source video cannot be decoded: its {vs.codec_context.codec.canonical_name} "
        "stream holds no picture FFmpeg can decode",
        reason="UNDECODABLE",
    )


def _duration(container: InputContainer, vs: VideoStream) -> float:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    if vs.duration and vs.time_base is not None:
        return float(vs.duration * vs.time_base)
    # No header says how long it is (raw captures): the last packet times tell, and reading
    # packets without decoding them is cheap.
    origin = start_time_s(container)
    end = 0.0
    with contextlib.suppress(av.error.FFmpegError):  # damage at the end: what we have is it
        for packet in container.demux(vs):
            if packet.pts is not None and packet.time_base is not None:
                packet_end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                end = max(end, packet_end - origin)
    return end
