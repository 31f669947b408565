"""The health checks beyond Redis and storage: media libraries, workers, temp space.

Each check returns a short detail for /health or raises with what is wrong. None of them gates
SERVING (see `health.py`): they describe whether exports will *run*, while the API itself needs
only Redis and storage.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

from sparc_video.core.errors import Unavailable
from sparc_video.exports.worker_registry import WorkerRegistry
from sparc_video.media import launcher

# Encoders the operations use: H.264 video and AAC audio for transcodes, MJPEG for thumbnails.
REQUIRED_ENCODERS = ("libx264", "aac", "mjpeg")
# A worker heartbeats every 5 s; GetQueueStats counts workers seen within this window.
WORKER_WINDOW_S = 30.0
# The installed media libraries only change with a deploy; a passing result is reused this long.
MEDIA_RECHECK_S = 600.0
MEDIA_TIMEOUT_S = 20.0

# Runs in a fresh interpreter: the server never imports PyAV (37 MiB and ~0.1 s it does not need),
# and a broken FFmpeg build crashes the probe, not the server.
_MEDIA_PROBE = """
import json, sys
import av
missing = []
for name in sys.argv[1:]:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        missing.append(name)
print(json.dumps({
    "pyav": av.__version__,
    "ffmpeg": str(getattr(av, "ffmpeg_version_info", "")),
    "missing": missing,
}))
"""


class MediaCheck:
    """PyAV imports and FFmpeg has every encoder the operations need.

    One instance per process (`media_check`), so many servers in one process (tests) or a short
    check interval do not spawn a probe each round.
    """

    def __init__(self, encoders: tuple[str, ...] = REQUIRED_ENCODERS) -> None:
        self._encoders = encoders
        self._passed_at = 0.0
        self._detail = ""

    async def __call__(self) -> str:
        if self._passed_at and time.monotonic() - self._passed_at < MEDIA_RECHECK_S:
            return self._detail
        # Started without forking the gRPC server (see `media/launcher.py`).
        try:
            done = await launcher.run_child(
                [sys.executable, "-c", _MEDIA_PROBE, *self._encoders],
                b"",
                MEDIA_TIMEOUT_S,
                capture_stderr=True,
            )
        except TimeoutError:
            raise Unavailable(f"the PyAV check took longer than {MEDIA_TIMEOUT_S:g} s") from None
        if done.returncode != 0:
            err = done.stderr
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise Unavailable(f"PyAV cannot be loaded (exit {done.returncode}): {last[0]}")
        try:
            report = json.loads(done.stdout)
        except ValueError:
            raise Unavailable("the PyAV check answered something other than its report") from None
        if report["missing"]:
            raise Unavailable(f"FFmpeg lacks encoders {', '.join(report['missing'])}")
        self._detail = f"PyAV {report['pyav']}, FFmpeg {report['ffmpeg']}: " + ", ".join(
            self._encoders
        )
        self._passed_at = time.monotonic()
        return self._detail


media_check = MediaCheck()


async def workers_alive(registry: WorkerRegistry) -> str:
    """Live workers, and the hardware encoders their start-up probes found, e.g.
    `2 live worker(s); media.hardware: nvenc unavailable: no NVIDIA device (...)`."""
    count = await registry.live(WORKER_WINDOW_S)
    if count == 0:
        raise Unavailable(
            f"no worker heartbeat in the last {WORKER_WINDOW_S:g} s: exports wait in the queue"
        )
    detail = f"{count} live worker(s)"
    hardware = await registry.hardware(WORKER_WINDOW_S)
    if hardware:
        # One line per kind of worker, with how many there are when they differ.
        kinds = [
            f"{summary} ({n})" if len(hardware) > 1 else summary
            for summary, n in sorted(hardware.items())
        ]
        detail += "; media.hardware: " + " | ".join(kinds)
    return detail


def _free_bytes(path: Path) -> int:
    # The worker creates the directory; before it has, the filesystem it will live on counts.
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


async def temp_space(path: Path, min_free: int) -> str:
    free = await asyncio.to_thread(_free_bytes, path)
    if free < min_free:
        raise Unavailable(
            f"{free} bytes free for {path}, below VIDEO_TEMP_MIN_FREE ({min_free} bytes)"
        )
    return f"{free} bytes free"
