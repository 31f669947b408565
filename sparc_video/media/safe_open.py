"""The one allow-list of what FFmpeg may open and decode for untrusted media, and the helpers that
open with it: the worker's sources and the server's media child (camera streams, uploaded
recordings) both read media only through here.

FFmpeg is kept on a short leash: only the protocols a source is made of (no nested protocols
for local files; a stream's scheme opens only its own transport), only the common containers (no
playlists such as HLS, DASH or ffconcat, which can make FFmpeg read other files or hosts), and
only a list of mainstream decoders (FFmpeg's many rarely used decoders are where most of its
security bugs are found), with a cap on picture size. A stream's host is resolved and checked
against the camera address policy once, and FFmpeg connects to the address checked
(`pin_stream_url`). Imports PyAV: the API server itself never imports this module; its media
child and the recorder's ingest do.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import av
import av.error
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.stream import Disposition, Stream
from av.video.stream import VideoStream

from sparc_video.core.errors import MediaError
from sparc_video.security.address_policy import AddressPolicy

# Each stream scheme opens only the protocols it is made of: an RTSP stream cannot turn into an
# HTTP fetch, nor anything into a file read.
STREAM_PROTOCOLS = {
    "rtsp": "rtsp,rtp,srtp,udp,tcp",
    "rtsps": "rtsps,rtp,srtp,udp,tcp,tls",
    "http": "http,tcp",
    "https": "https,tcp,tls",
}
# FFmpeg demuxer names; a demuxer's name lists the formats it reads ("mov,mp4,m4a,...").
# Stored files (sources, uploaded recordings):
FILE_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "mpegts",
    "flv",
    "mpeg",
)
FILE_FORMAT_NAMES = "MP4/MOV, Matroska/WebM, AVI, MPEG-TS, MPEG-PS or FLV"
# Demuxers cameras and recorders speak. No playlist formats (HLS, DASH, ffconcat): their
# entries name further URLs, on hosts the address policy never saw.
STREAM_FORMATS = (
    "rtsp", "mpegts", "mpjpeg", "mjpeg", "flv", "matroska,webm", "h264", "hevc",
    "mov,mp4,m4a,3gp,3g2,mj2",
)  # fmt: skip
# FFmpeg decoder names (not codec names: AV1, say, is decoded by "libdav1d" or "av1").
VIDEO_DECODERS = (
    "h264", "hevc", "vp8", "vp9", "av1", "libdav1d", "libvpx", "libvpx-vp9",
    "mpeg4", "mpeg1video", "mpeg2video", "h263", "mjpeg", "prores", "dnxhd",
    "vc1", "wmv3", "theora", "ffv1",
)  # fmt: skip
# Mainstream audio, and the telephony codecs (G.726, G.723.1, G.729) IP cameras send.
AUDIO_DECODERS = (
    "aac", "aac_fixed", "mp3", "mp3float", "mp2", "mp2float", "ac3", "ac3_fixed", "eac3",
    "opus", "libopus", "vorbis", "flac", "alac", "dca", "truehd", "amrnb", "amrwb",
    "adpcm_ima_qt", "adpcm_ima_wav", "adpcm_ms", "adpcm_g726", "adpcm_g726le", "g723_1", "g729",
    "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_s32be",
    "pcm_f32le", "pcm_f32be", "pcm_f64le", "pcm_u8", "pcm_s8", "pcm_mulaw", "pcm_alaw",
)  # fmt: skip
DECODER_WHITELIST = ",".join(VIDEO_DECODERS + AUDIO_DECODERS)
# Largest picture accepted (8192x8192; 8K UHD is half that): a crafted header can otherwise
# make the decoder allocate gigabytes per frame.
MAX_PIXELS = 8192 * 8192

# avformat_open_input options for a local file. `codec_whitelist` here only covers the decoders
# FFmpeg opens while probing stream parameters; decoders opened for real get it set by
# `guard_decoder`.
FILE_OPTIONS: dict[str, str] = {
    "protocol_whitelist": "file",
    "format_whitelist": ",".join(FILE_FORMATS),
    "codec_whitelist": DECODER_WHITELIST,
    # mov/mp4 can point at media in other files ("data references"); FFmpeg ignores them by
    # default, and this keeps it so should that default ever change.
    "enable_drefs": "0",
    "use_absolute_path": "0",
}


def stream_options(scheme: str) -> dict[str, str]:
    """The allow-list options for opening a live stream of `scheme` (rtsp, http...): an unknown
    scheme may open no protocol at all."""
    return {
        "protocol_whitelist": STREAM_PROTOCOLS.get(scheme.lower(), "none"),
        "format_whitelist": ",".join(STREAM_FORMATS),
        "codec_whitelist": DECODER_WHITELIST,
    }


def live_stream_options(scheme: str, timeout_s: float) -> dict[str, str]:
    """stream_options, and the transport and socket timeouts every read of a live stream uses
    (the camera probe and snapshot, the recorder's ingest)."""
    micros = str(int(timeout_s * 1_000_000))
    return {
        **stream_options(scheme),
        # Socket I/O timeouts (RTSP, HTTP) and any protocol's read/write timeout, microseconds.
        "timeout": micros,
        "rw_timeout": micros,
        # Interleaved RTP over the RTSP connection only: through firewalls and NAT it is the
        # transport that works, and over UDP FFmpeg sends RTP/RTCP packets to whatever
        # `source=` address the camera's SETUP reply names, past the address policy.
        "rtsp_transport": "tcp",
    }


class HostNotFound(LookupError):
    """A stream URL's host name does not resolve."""


def pin_stream_url(url: str, policy: AddressPolicy) -> tuple[str, dict[str, str]]:
    """Resolve the host once, check every address against the policy, and return the URL to
    open with options: FFmpeg connects to the address checked here, never to a later lookup
    of the name (which a hostile DNS server could answer differently). Raises AddressRefused
    (the policy's) or HostNotFound."""
    parts = urlsplit(url)
    addresses = policy.check_url(url)  # AddressRefused
    if not addresses:
        raise HostNotFound(f"the host name {parts.hostname!r} does not resolve")
    scheme = parts.scheme.lower()
    options: dict[str, str] = {}
    if scheme in ("http", "https"):
        # A redirect could lead anywhere, the policy's refused addresses included: none is
        # followed, and a camera must be registered with its final URL.
        options["max_redirects"] = "0"
    if scheme not in _PINNED_SCHEMES:
        # rtsps/https keep the name, which TLS (SNI) needs; their lookup is checked above but
        # not pinned, a window the README states.
        return url, options
    address = addresses[0]
    host = f"[{address}]" if ":" in address else address
    userinfo, at, hostport = parts.netloc.rpartition("@")
    port = f":{parts.port}" if parts.port else ""
    if scheme == "http":
        # The camera still sees the name it was registered with.
        options["headers"] = f"Host: {hostport}\r\n"
    netloc = f"{userinfo}{at}{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), options


_PINNED_SCHEMES = frozenset({"rtsp", "http"})


def open_file(path: Path, what: str = "the source") -> InputContainer:
    """Open an untrusted local file for reading; MediaError(NOT_A_VIDEO) when FFmpeg cannot or
    may not.

    A missing file is the caller's bug, not the user's: that stays a FileNotFoundError.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        # An absolute path cannot be mistaken for a "protocol:" URL.
        return av.open(str(path.resolve()), "r", container_options=dict(FILE_OPTIONS))
    except av.error.FFmpegError as exc:
        raise MediaError(
            f"{what} is not a video file FFmpeg can read ({_open_failure(exc)})",
            reason="NOT_A_VIDEO",
        ) from exc


def video_stream(container: InputContainer, what: str = "the source") -> VideoStream:
    """The main video stream, its decoder guarded and multi-threaded; MediaError
    (NO_VIDEO_STREAM, UNDECODABLE) when there is none that may be decoded."""
    # Cover art in MP4/Matroska shows up as a one-frame video stream.
    candidates = [
        s for s in container.streams.video if not s.disposition & Disposition.attached_pic
    ]
    if not candidates:
        found = ", ".join(f"{s.type} ({decoder_name(s)})" for s in container.streams)
        raise MediaError(
            f"{what} has no video stream"
            + (f" (it holds: {found})" if found else " (it holds no streams at all)"),
            reason="NO_VIDEO_STREAM",
        )
    best = container.streams.best("video")
    vs = best if isinstance(best, VideoStream) and best in candidates else candidates[0]
    guard_decoder(vs, "video", what)
    width, height = vs.codec_context.width, vs.codec_context.height
    if width * height > MAX_PIXELS:
        raise MediaError(
            f"{what} video is {width}x{height}: more than the {MAX_PIXELS:,} pixels per "
            "picture supported",
            reason="UNDECODABLE",
        )
    # FFmpeg's default here is slice threading, which most streams cannot use; frame threading
    # makes decoding several times faster.
    vs.codec_context.thread_type = "AUTO"
    vs.codec_context.thread_count = 0
    return vs


def main_audio(container: InputContainer) -> AudioStream | None:
    """The main audio stream (None when there is none), its decoder not guarded: for describing
    it, which needs no decoder."""
    if not container.streams.audio:
        return None
    best = container.streams.best("audio")
    return best if isinstance(best, AudioStream) else container.streams.audio[0]


def audio_stream(container: InputContainer) -> AudioStream | None:
    """The main audio stream (None when there is none), its decoder guarded."""
    audio = main_audio(container)
    if audio is not None:
        guard_decoder(audio, "audio")
    return audio


def decoder_name(stream: Stream) -> str:
    # Streams FFmpeg has no decoder for have no codec context.
    ctx = stream.codec_context
    return ctx.codec.name if ctx is not None else "unknown"


def guard_decoder(
    stream: VideoStream | AudioStream, kind: Literal["video", "audio"], what: str = "the source"
) -> None:
    """Refuse (MediaError UNDECODABLE) a decoder off the allow-list, and make FFmpeg itself
    enforce the list and the picture size cap when it opens the decoder."""
    allowed = VIDEO_DECODERS if kind == "video" else AUDIO_DECODERS
    ctx = stream.codec_context
    name = decoder_name(stream)
    if ctx is None or name not in allowed:
        raise MediaError(
            f"{what}'s {kind} codec ({name}) is not supported; supported decoders: "
            + ", ".join(allowed),
            reason="UNDECODABLE",
        )
    # Enforced by FFmpeg itself when it opens the decoder, and on every picture it decodes,
    # whatever the checks here missed (or a stream that changes size midway).
    ctx.options = {
        **ctx.options,
        "codec_whitelist": DECODER_WHITELIST,
        "max_pixels": str(MAX_PIXELS),
    }


def ffmpeg_message(exc: av.error.FFmpegError) -> str:
    """FFmpeg's reason, without the URL or local file name it mentions (the caller adds a
    redacted one where it helps)."""
    message = exc.strerror or type(exc).__name__
    if exc.log and exc.log[1] is not None:
        message = f"{message}: {exc.log[1][2].strip()}"
    return message


def _open_failure(exc: av.error.FFmpegError) -> str:
    # FFmpeg refuses formats (and protocols) off the allow-lists with EINVAL.
    if exc.errno == errno.EINVAL:
        return f"only {FILE_FORMAT_NAMES} files are accepted"
    return ffmpeg_message(exc)
