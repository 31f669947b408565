"""The server's media child: reads a camera stream or a stored video with PyAV, in a process of
its own that `media_probe.MediaProber` starts per request and kills at the deadline.

Started as `python -m sparc_video.media.child_main` (a fresh interpreter, see `launcher.py`),
which reads one JSON request from stdin and writes one JSON reply to stdout (`handle`). A
stream URL with its credentials arrives on stdin, never in the command line (which any local
user can read in /proc). The server itself never imports PyAV.

What FFmpeg may do is limited by the worker's allow-lists (`safe_open.py`): of protocols (network
protocols for streams, only `file` for stored videos), of demuxers and of decoders, and a cap on
picture size. Streams are opened only on addresses the camera address policy allows
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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import av.error
import av.logging
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from sparc_video.core.errors import MediaError
from sparc_video.core.file_hashes import file_digest
from sparc_video.media import child_protocol, safe_open
from sparc_video.media.safe_open import (
    HostNotFound,
    ffmpeg_message,
    live_stream_options,
    pin_stream_url,
)
from sparc_video.media.still import encode_jpeg
from sparc_video.security.address_policy import REFUSED_REASON, AddressPolicy, AddressRefused


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
    options = {
        **protocol_options,
        **live_stream_options(urlsplit(url).scheme, timeout_s),
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
        vs = safe_open.video_stream(container, "the stream")
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
            reply["jpeg"] = base64.b64encode(encode_jpeg(frame)).decode("ascii")
        return reply


def read_file(request: dict[str, Any]) -> dict[str, Any]:
    """Describe a stored video exactly: every video packet is read (not decoded) to measure the
    duration and count frames, the first picture is decoded, and the file is hashed."""
    path = Path(str(request["path"]))
    container = safe_open.open_file(path, "the object")
    with container:
        vs = safe_open.video_stream(container, "the object")
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
            raise Failure(
                "UNDECODABLE", f"the video cannot be read ({ffmpeg_message(exc)})"
            ) from None
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
    try:
        return pin_stream_url(url, policy)
    except AddressRefused as exc:
        raise Failure(REFUSED_REASON, str(exc)) from None
    except HostNotFound as exc:
        raise Failure("HOST_NOT_FOUND", str(exc)) from None


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


def _stream_failure(
    exc: av.error.FFmpegError, timed_out: bool, redirects_refused: bool = False
) -> Failure:
    message = ffmpeg_message(exc)
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


_HANDLERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "stream": read_stream,
    "file": read_file,
}


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one request; run by `child_main.py`, which owns the process protocol."""
    try:
        return _HANDLERS[request["op"]](request)
    except (Failure, MediaError) as failure:
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
