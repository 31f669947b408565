"""Reading camera streams and stored videos for the server, each time in a child process.

PyAV calls block in C and cannot be cancelled: a camera that accepts a connection and then
stays silent, or a crafted file, would hold a thread (or the event loop) for as long as FFmpeg
likes. So every read runs `python -m sparc_video.media.child`, which the server kills at a hard
deadline; a crash in FFmpeg ends only that child; and the server never imports PyAV (0.1 s and
~40 MiB). Requests, URLs with credentials included, go to the child on stdin.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparc_video.core.errors import MediaError, ProcessingTimeout
from sparc_video.security.address_policy import AddressPolicy

# Time a child needs to start Python and import PyAV, on top of the media time limit.
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
        except ChildDied as exc:
            return StreamRead(ok=False, reason="PROBE_FAILED", message=str(exc))
        if not reply.get("ok"):
            return StreamRead(ok=False, reason=str(reply["reason"]), message=str(reply["message"]))
        return StreamRead(
            ok=True,
            info=StreamInfo.from_reply(reply["info"]),
            connect_s=float(reply["connect_s"]),
            first_frame_s=float(reply["first_frame_s"]),
            jpeg=base64.b64decode(reply["jpeg"]) if "jpeg" in reply else b"",
        )

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
        except ChildDied as exc:
            raise MediaError(f"the video cannot be read: {exc}", reason="UNDECODABLE") from None
        if not reply.get("ok"):
            raise MediaError(str(reply["message"]), reason=str(reply["reason"]))
        return FileRead(
            info=StreamInfo.from_reply(reply["info"]),
            duration_s=float(reply["duration_s"]),
            frame_count=int(reply["frame_count"]),
            size_bytes=int(reply["size_bytes"]),
            sha256=str(reply["sha256"]),
        )

    async def _run(self, request: dict[str, Any], deadline_s: float) -> dict[str, Any]:
        request["memory_limit"] = self._memory_limit
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p
        )
        async with self._slots:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sparc_video.media.child",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
                # Its own process group: a terminal's Ctrl-C goes to the server, which stops
                # the child itself.
                start_new_session=True,
            )
            try:
                async with asyncio.timeout(deadline_s):
                    out, _ = await proc.communicate(json.dumps(request).encode("utf-8"))
            finally:
                # Deadline passed, or the RPC was cancelled: the child must not outlive it.
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        try:
            reply = json.loads(out)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            code = proc.returncode or 0
            how = (
                f"killed by {signal.Signals(-code).name}"
                if code < 0 and -code in signal.valid_signals()
                else f"exit status {code}"
            )
            raise ChildDied(f"the media process failed ({how})")
        return reply


class ChildDied(Exception):
    """The media child ended without a reply (a crash in FFmpeg, the memory limit)."""
