"""Opening untrusted media safely, probing it, and the frame plumbing shared by the operations.

Sources are uploaded by users, so FFmpeg is kept on a short leash: only local files (no network
or nested protocols), only the common video containers (no playlists such as HLS or ffconcat,
which can make FFmpeg read other files), and only a list of mainstream decoders (FFmpeg's many
rarely used decoders are where most of its security bugs are found).
"""

from __future__ import annotations

import contextlib
import errno
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
from av.stream import Disposition, Stream
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from sparc_video.core.errors import MediaError, MediaLimitExceeded

# FFmpeg demuxer names; a demuxer's name lists the formats it reads ("mov,mp4,m4a,...").
ALLOWED_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "mpegts",
    "flv",
    "mpeg",
)
# FFmpeg decoder names (not codec names: AV1, say, is decoded by "libdav1d" or "av1").
ALLOWED_VIDEO_DECODERS = (
    "h264", "hevc", "vp8", "vp9", "av1", "libdav1d", "libvpx", "libvpx-vp9",
    "mpeg4", "mpeg1video", "mpeg2video", "h263", "mjpeg", "prores", "dnxhd",
    "vc1", "wmv3", "theora", "ffv1",
)  # fmt: skip
ALLOWED_AUDIO_DECODERS = (
    "aac", "aac_fixed", "mp3", "mp3float", "mp2", "mp2float", "ac3", "ac3_fixed", "eac3",
    "opus", "libopus", "vorbis", "flac", "alac", "dca", "truehd", "amrnb", "amrwb",
    "adpcm_ima_qt", "adpcm_ima_wav", "adpcm_ms",
    "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_s32be",
    "pcm_f32le", "pcm_f32be", "pcm_f64le", "pcm_u8", "pcm_s8", "pcm_mulaw", "pcm_alaw",
)  # fmt: skip
_DECODER_WHITELIST = ",".join(ALLOWED_VIDEO_DECODERS + ALLOWED_AUDIO_DECODERS)
# Largest picture accepted (8192x8192; 8K UHD is half that): a crafted header can otherwise
# make the decoder allocate gigabytes per frame.
MAX_PIXELS = 8192 * 8192

# avformat_open_input options. `codec_whitelist` here only covers the decoders FFmpeg opens
# while probing stream parameters; decoders opened for real get it set by `_guard_decoder`.
INPUT_OPTIONS: dict[str, str] = {
    "protocol_whitelist": "file",
    "format_whitelist": ",".join(ALLOWED_FORMATS),
    "codec_whitelist": _DECODER_WHITELIST,
    # mov/mp4 can point at media in other files ("data references"); FFmpeg ignores them by
    # default, and this keeps it so should that default ever change.
    "enable_drefs": "0",
    "use_absolute_path": "0",
}

_FORMAT_NAMES = "MP4/MOV, Matroska/WebM, AVI, MPEG-TS, MPEG-PS or FLV"

_FULL_RANGE = 2  # AVCOL_RANGE_JPEG

_FrameT = TypeVar("_FrameT", VideoFrame, AudioFrame)
if TYPE_CHECKING:
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
    limit), checked on the probe before any work: a source past them fails permanently."""

    max_frame_pixels: int = MAX_PIXELS
    max_duration_s: float = 0.0

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


def open_input(path: Path) -> InputContainer:
    """Open untrusted media for reading; MediaError(NOT_A_VIDEO) when FFmpeg cannot or may not.

    A missing file is the caller's bug, not the user's: that stays a FileNotFoundError.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        # An absolute path cannot be mistaken for a "protocol:" URL.
        return av.open(str(path.resolve()), "r", container_options=dict(INPUT_OPTIONS))
    except av.error.FFmpegError as exc:
        raise MediaError(
            f"the source is not a video file FFmpeg can read ({_open_failure(exc)})",
            reason="NOT_A_VIDEO",
        ) from exc


def probe(path: Path) -> MediaInfo:
    """Describe a video, decoding its first frame to prove that it can be decoded."""
    with open_input(path) as container:
        vs = video_stream(container)
        # Not audio_stream(): describing an audio track needs no decoder for it.
        audio = _main_audio(container)
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


def video_stream(container: InputContainer) -> VideoStream:
    """The main video stream, its decoder guarded and multi-threaded."""
    # Cover art in MP4/Matroska shows up as a one-frame video stream.
    candidates = [
        s for s in container.streams.video if not s.disposition & Disposition.attached_pic
    ]
    if not candidates:
        found = ", ".join(f"{s.type} ({_decoder_name(s)})" for s in container.streams)
        raise MediaError(
            "the source has no video stream"
            + (f" (it holds: {found})" if found else " (it holds no streams at all)"),
            reason="NO_VIDEO_STREAM",
        )
    best = container.streams.best("video")
    vs = best if isinstance(best, VideoStream) and best in candidates else candidates[0]
    _guard_decoder(vs, ALLOWED_VIDEO_DECODERS, "video")
    width, height = vs.codec_context.width, vs.codec_context.height
    if width * height > MAX_PIXELS:
        raise MediaError(
            f"the source video is {width}x{height}: more than the {MAX_PIXELS:,} pixels per "
            "picture supported",
            reason="UNDECODABLE",
        )
    # FFmpeg's default here is slice threading, which most streams cannot use; frame threading
    # makes decoding several times faster.
    vs.codec_context.thread_type = "AUTO"
    vs.codec_context.thread_count = 0
    return vs


def audio_stream(container: InputContainer) -> AudioStream | None:
    """The main audio stream (None when there is none), its decoder guarded."""
    audio = _main_audio(container)
    if audio is not None:
        _guard_decoder(audio, ALLOWED_AUDIO_DECODERS, "audio")
    return audio


def _main_audio(container: InputContainer) -> AudioStream | None:
    if not container.streams.audio:
        return None
    best = container.streams.best("audio")
    return best if isinstance(best, AudioStream) else container.streams.audio[0]


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
        f"the source video cannot be decoded ({_ffmpeg_message(exc)})", reason="UNDECODABLE"
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
            and frame.color_range != _FULL_RANGE
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


def _decoder_name(stream: Stream) -> str:
    # Streams FFmpeg has no decoder for have no codec context.
    ctx = stream.codec_context
    return ctx.codec.name if ctx is not None else "unknown"


def _guard_decoder(stream: VideoStream | AudioStream, allowed: tuple[str, ...], kind: str) -> None:
    ctx = stream.codec_context
    name = _decoder_name(stream)
    if ctx is None or name not in allowed:
        raise MediaError(
            f"the source's {kind} codec ({name}) is not supported; supported decoders: "
            + ", ".join(allowed),
            reason="UNDECODABLE",
        )
    # Enforced by FFmpeg itself when it opens the decoder, and on every picture it decodes,
    # whatever the checks here missed (or a stream that changes size midway).
    ctx.options = {
        **ctx.options,
        "codec_whitelist": _DECODER_WHITELIST,
        "max_pixels": str(MAX_PIXELS),
    }


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


def _open_failure(exc: av.error.FFmpegError) -> str:
    # FFmpeg refuses formats (and protocols) off the allow-lists with EINVAL.
    if exc.errno == errno.EINVAL:
        return f"only {_FORMAT_NAMES} files are accepted"
    return _ffmpeg_message(exc)


def _ffmpeg_message(exc: av.error.FFmpegError) -> str:
    """FFmpeg's reason, without the local file name it mentions."""
    message = exc.strerror or type(exc).__name__
    if exc.log and exc.log[1] is not None:
        message = f"{message}: {exc.log[1][2].strip()}"
    return message
