"""The server's media child: reads a camera stream or a stored video with PyAV, in a process of
its own that `media_probe.MediaProber` starts per request and kills at the deadline.

Started as `python -m sparc_video.media.child_main` (a fresh interpreter, see `launcher.py`),
which reads one JSON request from stdin and writes one JSON reply to stdout (`handle`). A
stream URL with its credentials arrives on stdin, never in the command line (which any local
user can read in /proc). The server itself never imports PyAV.

What FFmpeg may do is limited as in the worker: an allow-list of protocols (network protocols
for streams, only `file` for stored videos), of demuxers and of decoders, and a cap on picture
size. Streams are opened only on addresses the camera address policy allows
(`address_policy.py`), checked here right before connecting.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import av
import av.error
import av.logging
from av.container import InputContainer
from av.stream import Disposition
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

from sparc_video.core.file_hashes import file_digest
from sparc_video.media import child_protocol
from sparc_video.security.address_policy import REFUSED_REASON, AddressPolicy, AddressRefused

# Each scheme opens only the protocols it is made of: an RTSP stream cannot turn into an HTTP
# fetch, nor anything into a file read.
STREAM_PROTOCOLS = {
    "rtsp": "rtsp,rtp,srtp,udp,tcp",
    "rtsps": "rtsps,rtp,srtp,udp,tcp,tls",
    "http": "http,tcp",
    "https": "https,tcp,tls",
}
# Demuxers cameras and recorders speak. No playlist formats (HLS, DASH, ffconcat): their
# entries name further URLs, on hosts the address policy never saw.
STREAM_FORMATS = (
    "rtsp", "mpegts", "mpjpeg", "mjpeg", "flv", "matroska,webm", "h264", "hevc",
    "mov,mp4,m4a,3gp,3g2,mj2",
)  # fmt: skip
FILE_FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "flv", "mpeg")
VIDEO_DECODERS = (
    "h264", "hevc", "vp8", "vp9", "av1", "libdav1d", "libvpx", "libvpx-vp9", "mpeg4",
    "mpeg1video", "mpeg2video", "h263", "mjpeg", "prores", "dnxhd", "vc1", "wmv3", "theora",
    "ffv1",
)  # fmt: skip
AUDIO_DECODERS = (
    "aac", "aac_fixed", "mp3", "mp3float", "mp2", "mp2float", "ac3", "ac3_fixed", "eac3",
    "opus", "libopus", "vorbis", "flac", "alac", "pcm_s16le", "pcm_s16be", "pcm_mulaw",
    "pcm_alaw", "adpcm_g726", "adpcm_g726le", "g723_1", "g729",
)  # fmt: skip
DECODER_WHITELIST = ",".join(VIDEO_DECODERS + AUDIO_DECODERS)
MAX_PIXELS = 8192 * 8192
# mjpeg quantiser scale, 2 (best) to 31, as the worker's thumbnails.
JPEG_QUALITY = 3
_FF_QP2LAMBDA = 118


class Failure(Exception):
    """Why the request failed: a stable reason and a message without URLs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def read_stream(request: dict[str, Any]) -> dict[str, Any]:
    """Open a live stream, decode one video frame; with `snapshot`, return it as a JPEG."""
    url = str(request["url"])
    timeout_s = float(request["timeout_s"])
    started = time.monotonic()

    def elapsed() -> float:
        return time.monotonic() - started

    policy = AddressPolicy.from_json(request.get("policy", {}))
    url, protocol_options = _pin(url, policy)
    micros = str(int(timeout_s * 1_000_000))
    options = {
        **protocol_options,
        "protocol_whitelist": STREAM_PROTOCOLS.get(urlsplit(url).scheme.lower(), "none"),
        "format_whitelist": ",".join(STREAM_FORMATS),
        "codec_whitelist": DECODER_WHITELIST,
        # Socket I/O timeouts (RTSP, HTTP) and any protocol's read/write timeout, microseconds.
        "timeout": micros,
        "rw_timeout": micros,
        # Interleaved RTP over the RTSP connection only: through firewalls and NAT it is the
        # transport that works, and over UDP FFmpeg sends RTP/RTCP packets to whatever
        # `source=` address the camera's SETUP reply names, past the address policy.
        "rtsp_transport": "tcp",
        # Enough to find the streams of a camera feed without waiting seconds for more.
        "analyzeduration": "2000000",
        "probesize": str(5 * 1024 * 1024),
    }
    try:
        # PyAV's own (open, read) timeouts interrupt any blocking FFmpeg call.
        with _redirects_refused():
            container = av.open(url, "r", options=options, timeout=(timeout_s, timeout_s))
    except av.error.FFmpegError as exc:
        redirects_refused = "max_redirects" in protocol_options
        raise _stream_failure(exc, elapsed() >= timeout_s * 0.95, redirects_refused) from None
    connect_s = elapsed()
    with container:
        vs = _video_stream(container, "the stream")
        frame: VideoFrame | None = None
        try:
            for packet in container.demux(vs):
                for decoded in _decode(vs, packet):
                    frame = decoded
                    break
                if frame is not None:
                    break
                if elapsed() > timeout_s:
                    raise Failure("TIMEOUT", f"no picture within {timeout_s:g} s")
        except av.error.FFmpegError as exc:
            raise _stream_failure(exc, elapsed() >= timeout_s * 0.95) from None
        if frame is None:
            raise Failure("NOT_A_STREAM", "the stream ended before a picture was decoded")
        first_frame_s = elapsed()
        reply: dict[str, Any] = {
            "ok": True,
            "connect_s": connect_s,
            "first_frame_s": first_frame_s,
            "info": _stream_info(container, vs, frame),
        }
        if request.get("snapshot"):
            reply["jpeg"] = base64.b64encode(_jpeg(frame)).decode("ascii")
        return reply


def read_file(request: dict[str, Any]) -> dict[str, Any]:
    """Describe a stored video exactly: every video packet is read (not decoded) to measure the
    duration and count frames, the first picture is decoded, and the file is hashed."""
    path = Path(str(request["path"]))
    options = {
        "protocol_whitelist": "file",
        "format_whitelist": ",".join(FILE_FORMATS),
        "codec_whitelist": DECODER_WHITELIST,
        "enable_drefs": "0",
        "use_absolute_path": "0",
    }
    try:
        container = av.open(str(path.resolve()), "r", options=options)
    except av.error.FFmpegError as exc:
        raise Failure(
            "NOT_A_VIDEO", f"the object is not a video FFmpeg can read ({_message(exc)})"
        ) from None
    with container:
        vs = _video_stream(container, "the object")
        first: VideoFrame | None = None
        frames = 0
        start: int | None = None
        end: int | None = None
        try:
            for packet in container.demux(vs):
                if packet.size == 0 or packet.is_discard:
                    continue
                if first is None:
                    first = next(iter(_decode(vs, packet)), None)
                pts = packet.pts if packet.pts is not None else packet.dts
                if pts is None:
                    continue
                frames += 1
                start = pts if start is None else min(start, pts)
                packet_end = pts + (packet.duration or 0)
                end = packet_end if end is None else max(end, packet_end)
            if first is None:
                first = next(iter(_decode(vs, None)), None)
        except av.error.FFmpegError as exc:
            raise Failure("UNDECODABLE", f"the video cannot be read ({_message(exc)})") from None
        if first is None or start is None or end is None or vs.time_base is None:
            raise Failure("UNDECODABLE", "the video stream holds no picture FFmpeg can decode")
        duration = float((end - start) * vs.time_base)
        if duration <= 0 and container.duration:
            duration = container.duration / av.time_base
        info = _stream_info(container, vs, first)
    size, sha256 = file_digest(path)
    return {
        "ok": True,
        "info": info,
        "duration_s": duration,
        "frame_count": frames,
        "size_bytes": size,
        "sha256": sha256,
    }


def _pin(url: str, policy: AddressPolicy) -> tuple[str, dict[str, str]]:
    """Resolve the host once, check every address against the policy, and return the URL to
    open with options: FFmpeg connects to the address checked here, never to a later lookup
    of the name (which a hostile DNS server could answer differently)."""
    parts = urlsplit(url)
    try:
        addresses = policy.check_url(url)
    except AddressRefused as exc:
        raise Failure(REFUSED_REASON, str(exc)) from None
    if not addresses:
        raise Failure("HOST_NOT_FOUND", f"the host name {parts.hostname!r} does not resolve")
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
REDIRECT_REFUSED = {
    "ok": False,
    "reason": "REDIRECT_REFUSED",
    "message": "the stream answered with a redirect, which is not followed (its target is not "
    "checked against the address policy); register the camera with the final URL",
}


class _RedirectGuard(logging.Handler):
    """FFmpeg's RTSP client follows redirects (no option turns that off), logging "Redirecting
    to ..." just before it connects to the new address. PyAV hands FFmpeg's log lines to
    Python logging synchronously, in the thread about to connect: the child answers and exits
    right there, so the target, which the address policy never saw, gets no connection."""

    def emit(self, record: logging.LogRecord) -> None:
        if "Redirecting to" in record.getMessage():
            _reply(REDIRECT_REFUSED)
            os._exit(0)


@contextlib.contextmanager
def _redirects_refused() -> Iterator[None]:
    """FFmpeg's log lines reach Python only while the stream is opened (where RTSP redirects
    happen): with decoder threads running, a log callback waiting for the GIL can deadlock."""
    libav = logging.getLogger("libav")
    guard = _RedirectGuard()
    libav.setLevel(logging.INFO)
    libav.propagate = False
    libav.addHandler(guard)
    av.logging.set_level(av.logging.INFO)
    try:
        yield
    finally:
        av.logging.set_level(None)
        libav.removeHandler(guard)


def _video_stream(container: InputContainer, what: str) -> VideoStream:
    # Cover art shows up as a one-picture video stream.
    candidates = [
        s for s in container.streams.video if not s.disposition & Disposition.attached_pic
    ]
    if not candidates:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
        raise Failure("NO_VIDEO_STREAM", f"{what} has no video (it holds {kinds})")
    vs = candidates[0]
    ctx = vs.codec_context
    name = ctx.codec.name if ctx is not None else "unknown"
    if ctx is None or name not in VIDEO_DECODERS:
        raise Failure("UNDECODABLE", f"{what} has video in {name}, which is not supported")
    if ctx.width * ctx.height > MAX_PIXELS:
        raise Failure("UNDECODABLE", f"{what} is {ctx.width}x{ctx.height}: too large a picture")
    ctx.options = {**ctx.options, "codec_whitelist": DECODER_WHITELIST}
    ctx.thread_type = "AUTO"
    return vs


def _decode(vs: VideoStream, packet: Any) -> list[VideoFrame]:
    try:
        return vs.codec_context.decode(packet)
    except av.error.InvalidDataError:
        # A damaged packet, or a live stream joined between keyframes: keep going.
        return []


def _stream_info(container: InputContainer, vs: VideoStream, frame: VideoFrame) -> dict[str, Any]:
    audio = next(iter(container.streams.audio), None)
    audio_codec = ""
    if audio is not None and audio.codec_context is not None:
        audio_codec = audio.codec_context.codec.name
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    return {
        "format": container.format.name,
        "video_codec": vs.codec_context.codec.name,
        "width": frame.width,
        "height": frame.height,
        "fps": float(rate) if rate else 0.0,
        "audio_codec": audio_codec,
    }


def _jpeg(frame: VideoFrame) -> bytes:
    picture = frame.reformat(format="yuvj420p")
    ctx = av.CodecContext.create("mjpeg", "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = picture.width, picture.height, "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    # A square pixel aspect makes the encoder write a JFIF header, which some viewers want.
    ctx.sample_aspect_ratio = Fraction(1, 1)
    ctx.qscale = True
    ctx.global_quality = JPEG_QUALITY * _FF_QP2LAMBDA
    picture.pts = 0
    picture.time_base = ctx.time_base
    picture.pict_type = PictureType.NONE
    return b"".join(bytes(p) for p in ctx.encode(picture) + ctx.encode(None))


def _stream_failure(
    exc: av.error.FFmpegError, timed_out: bool, redirects_refused: bool = False
) -> Failure:
    message = _message(exc)
    if timed_out or isinstance(exc, av.error.ExitError | TimeoutError):
        return Failure("TIMEOUT", "no answer in time")
    checks: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str]] = [
        (ConnectionRefusedError, "CONNECTION_REFUSED"),
        (av.error.HTTPUnauthorizedError, "UNAUTHORIZED"),
        (av.error.HTTPForbiddenError, "FORBIDDEN"),
        (av.error.HTTPNotFoundError, "STREAM_NOT_FOUND"),
        (av.error.InvalidDataError, "NOT_A_STREAM"),
    ]
    for kind, reason in checks:
        if isinstance(exc, kind):
            return Failure(reason, message)
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
        return Failure("HOST_UNREACHABLE", message)
    if redirects_refused and isinstance(exc, OSError) and exc.errno == errno.EIO:
        # How FFmpeg's http protocol ends on a redirect past max_redirects (0 here).
        message += " (or an HTTP redirect: redirects are not followed; register the final URL)"
    return Failure("STREAM_ERROR", message)


_UNREACHABLE_ERRNOS = frozenset({101, 113})  # ENETUNREACH, EHOSTUNREACH


def _message(exc: av.error.FFmpegError) -> str:
    """FFmpeg's reason without the URL or path it names (the caller adds a redacted one)."""
    message = exc.strerror or type(exc).__name__
    if exc.log and exc.log[1] is not None:
        message = f"{message}: {exc.log[1][2].strip()}"
    return message


_HANDLERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "stream": read_stream,
    "file": read_file,
}


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one request; run by `child_main.py`, which owns the process protocol."""
    try:
        return _HANDLERS[request["op"]](request)
    except Failure as failure:
        return {"ok": False, "reason": failure.reason, "message": failure.message}
    except MemoryError:
        return {
            "ok": False,
            "reason": "RESOURCE_LIMIT",
            "message": "reading the video needed more memory than VIDEO_PROCESSING_MEMORY_LIMIT",
        }
    except Exception as exc:
        # Only the type: the message of an unexpected error may quote the URL or a local path.
        return {
            "ok": False,
            "reason": "PROBE_FAILED",
            "message": f"unexpected {type(exc).__name__} while reading",
        }


def _reply(reply: dict[str, Any]) -> None:
    child_protocol.write(child_protocol.encode_reply(reply))
