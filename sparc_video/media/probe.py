"""Reading camera streams and stored videos for the server, each time in a child process.

PyAV calls block in C and cannot be cancelled: a camera that accepts a connection and then
stays silent, or a crafted file, would hold a thread (or the event loop) for as long as FFmpeg
likes. So every read runs in a media child, a fresh interpreter the server starts without
forking itself (`launcher.py` says why and what it costs) and kills at a hard deadline; a crash
in FFmpeg ends only that child; and the server never imports PyAV (0.1 s and ~40 MiB).
Requests, URLs with credentials included, go to the child on stdin.

A child that ends without a reply is never an UNKNOWN error: it is `Unavailable`
(MEDIA_PROCESS_FAILED, worth a retry) when it failed to start, was killed from outside, exited
or answered garbage, and, for a stored video, `MediaError` (UNDECODABLE) when it crashed on a
signal of its own (SIGSEGV, SIGABRT...) while reading it. The message names the signal or exit
status.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparc_video.core.errors import MediaError, ProcessingTimeout, Unavailable
from sparc_video.media.launcher import ChildFailure, run_media_child
from sparc_video.security.address_policy import AddressPolicy

log = logging.getLogger(__name__)

# Time a child needs to start Python and import PyAV (~0.1 s when idle), on top of the media
# time limit.
STARTUP_ALLOWANCE_S = 3.0
DEFAULT_CONCURRENCY = 4
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class StreamInfo:
    format: str
    video_codec: str
    width: int
    height: int
    fps: float
    audio_codec: str

    @classmethod
    def from_reply(cls, data: dict[str, Any]) -> StreamInfo:
        return cls(
            format=str(data["format"]),
            video_codec=str(data["video_codec"]),
            width=int(data["width"]),
            height=int(data["height"]),
            fps=float(data["fps"]),
            audio_codec=str(data["audio_codec"]),
        )


@dataclass(frozen=True)
class StreamRead:
    """The outcome of reading a live stream. Messages may name secrets: callers scrub them."""

    ok: bool
    info: StreamInfo | None = None
    connect_s: float = 0.0
    first_frame_s: float = 0.0
    reason: str = ""
    message: str = ""
    jpeg: bytes = b""


@dataclass(frozen=True)
class FileRead:
    info: StreamInfo
    duration_s: float
    frame_count: int
    size_bytes: int
    sha256: str


class MediaProber:
    """Starts media children, at most `concurrency` at once (others wait their turn)."""

    def __init__(self, memory_limit: int = 0, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self._memory_limit = memory_limit
        self._slots = asyncio.Semaphore(concurrency)

    async def read_stream(
        self,
        url: str,
        timeout_s: float,
        *,
        snapshot: bool = False,
        policy: AddressPolicy | None = None,
    ) -> StreamRead:
        """`policy` (default: the strictest, nothing extra allowed) is checked by the child on
        the addresses it resolves, right before it connects to one of them."""
        request = {
            "op": "stream",
            "url": url,
            "timeout_s": timeout_s,
            "snapshot": snapshot,
            "policy": (policy or AddressPolicy()).to_json(),
        }
        try:
            reply = await self._run(request, timeout_s + STARTUP_ALLOWANCE_S)
        except TimeoutError:
            return StreamRead(ok=False, reason="TIMEOUT", message="no answer in time")
        except ChildFailure as exc:
            # Nothing is known about the camera: the call fails, the camera's status stays.
            raise _unavailable(exc, "reading the camera stream") from None
        try:
            if not reply.get("ok"):
                return StreamRead(
                    ok=False, reason=str(reply["reason"]), message=str(reply["message"])
                )
            return StreamRead(
                ok=True,
                info=StreamInfo.from_reply(reply["info"]),
                connect_s=float(reply["connect_s"]),
                first_frame_s=float(reply["first_frame_s"]),
                jpeg=base64.b64decode(reply["jpeg"], validate=True) if "jpeg" in reply else b"",
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _unavailable(_garbled(exc), "reading the camera stream") from None

    async def read_file(self, path: Path, timeout_s: float) -> FileRead:
        """Describe a stored video; MediaError (with a reason) when it is not a usable one."""
        # The child reads at its own pace; only the kill at the deadline limits it.
        request = {"op": "file", "path": str(path)}
        try:
            reply = await self._run(request, timeout_s + STARTUP_ALLOWANCE_S)
        except TimeoutError:
            raise ProcessingTimeout(
                f"reading the video took longer than {timeout_s:g} s; it was stopped"
            ) from None
        except ChildFailure as exc:
            if exc.crashed:
                # FFmpeg crashed on this video, or it needed more than the memory limit.
                raise MediaError(
                    f"the video cannot be read: {exc.message} while reading it (a damaged or "
                    "crafted file, or past VIDEO_PROCESSING_MEMORY_LIMIT)",
                    reason="UNDECODABLE",
                ) from None
            raise _unavailable(exc, "reading the video") from None
        try:
            if not reply.get("ok"):
                raise MediaError(str(reply["message"]), reason=str(reply["reason"]))
            return FileRead(
                info=StreamInfo.from_reply(reply["info"]),
                duration_s=float(reply["duration_s"]),
                frame_count=int(reply["frame_count"]),
                size_bytes=int(reply["size_bytes"]),
                sha256=str(reply["sha256"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _unavailable(_garbled(exc), "reading the video") from None

    async def _run(self, request: dict[str, Any], deadline_s: float) -> dict[str, Any]:
        request["memory_limit"] = self._memory_limit
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p
        )
        async with self._slots:
            return await run_media_child(request, deadline_s, env)


def _garbled(exc: Exception) -> ChildFailure:
    return ChildFailure(
        f"the media process sent a reply without the fields expected ({type(exc).__name__})",
        started=True,
    )


def _unavailable(failure: ChildFailure, doing: str) -> Unavailable:
    log.warning("media child failed %s: %s", doing, failure.message)
    return Unavailable(
        f"{doing} failed: {failure.message}. The request was not at fault as far as is known: "
        "retry; if it keeps failing, the server cannot run its media processes (see its log)",
        reason="MEDIA_PROCESS_FAILED",
    )
