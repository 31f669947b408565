"""Run an export's media work in a child process the worker can stop.

arq's job timeout and abort only cancel the asyncio task; they cannot interrupt PyAV inside a C
call. A child process can be killed, a crash inside FFmpeg kills only the child, and resource
limits (address space, file size) apply to it alone. The worker's event loop stays free for
heartbeats, progress writes and other jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import multiprocessing
import resource
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from sparc_video.core.errors import (
    JobCancelled,
    MediaError,
    MediaLimitExceeded,
    PermanentProcessingError,
    ProcessingError,
    ProcessingTimeout,
)
from sparc_video.exports.operations import Operation
from workers.pipeline.encoders import HardwareReport
from workers.pipeline.join import JoinSpec
from workers.pipeline.media import MediaLimits
from workers.pipeline.wall_clock import WallClock
from workers.sandbox.child import (
    ChildFailure,
    ChildProgress,
    ProducedFile,
    probe_hardware_encoders,
    run_operations,
)

# forkserver: children fork from a small clean process (with PyAV preloaded) rather than from
# the worker, whose threads and sockets must not be duplicated.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["workers.sandbox.child"])

CANCEL_GRACE_S = 0.5
# Loading CUDA and opening each NVENC encoder takes a few seconds at most on a working driver.
PROBE_TIMEOUT_S = 60.0
_MEDIA_REASONS = {"INVALID_MEDIA", "NOT_A_VIDEO", "NO_VIDEO_STREAM", "UNDECODABLE"}
_LIMIT_REASONS = {"FRAME_TOO_LARGE", "SOURCE_TOO_LONG"}

OnProgress = Callable[[ChildProgress], Awaitable[None]]


@dataclass(frozen=True)
class ProcessLimits:
    """Limits applied inside the child; 0 means unlimited."""

    address_space: int = 0
    file_size: int = 0


def _limited(
    limits: ProcessLimits,
    target: Callable[..., None],
    args: tuple[Any, ...],
    send: Connection,
    cancel: Event,
) -> None:
    """Child entry point: apply the limits, run the target, report running out of them."""
    if limits.address_space:
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
    if limits.file_size:
        # Writing past the limit must fail the write, not kill the child with SIGXFSZ.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
    try:
        target(*args, send, cancel)
    except MemoryError:
        message = "processing needed more memory than VIDEO_PROCESSING_MEMORY_LIMIT allows"
        send.send(("error", ChildFailure("resources", "RESOURCE_LIMIT", message)))
    except OSError as exc:
        if exc.errno != errno.EFBIG:
            raise
        message = "an output grew past VIDEO_PROCESSING_FILE_SIZE_LIMIT"
        send.send(("error", ChildFailure("resources", "RESOURCE_LIMIT", message)))
    finally:
        send.close()


async def run_in_child(
    source: Path,
    workdir: Path,
    operations: list[Operation],
    on_progress: OnProgress,
    timeout_s: float,
    limits: ProcessLimits | None = None,
    join: JoinSpec | None = None,
    wall_clock: WallClock | None = None,
    hardware: HardwareReport | None = None,
    media_limits: MediaLimits | None = None,
) -> list[ProducedFile]:
    """Run the export's operations; `on_progress` may raise (e.g. JobCancelled) to stop them.
    `hardware`: the worker's start-up probe (None: software encoders only).

    With `join`, the child first writes `source` by joining a camera range's recordings."""
    result = await run_target_in_child(
        run_operations,
        (
            source,
            workdir,
            operations,
            join,
            wall_clock,
            hardware or HardwareReport(reason="not probed"),
            media_limits or MediaLimits(),
        ),
        on_progress,
        timeout_s=timeout_s,
        limits=limits or ProcessLimits(),
    )
    return list(result)


async def probe_hardware_in_child(timeout_s: float = PROBE_TIMEOUT_S) -> HardwareReport:
    """Which hardware encoders work here, found in a media child: a driver that hangs or
    crashes while CUDA loads costs this probe, not the worker."""

    async def no_progress(_: ChildProgress) -> None:
        return None

    try:
        report = await run_target_in_child(
            probe_hardware_encoders, (), no_progress, timeout_s=timeout_s, limits=ProcessLimits()
        )
    except ProcessingError as exc:
        return HardwareReport(reason=f"the probe failed: {exc.message}")
    except Exception as exc:  # the worker runs on, with software encoders
        return HardwareReport(reason=f"the probe failed: {type(exc).__name__}: {exc}")
    assert isinstance(report, HardwareReport)
    return report


async def run_target_in_child(
    target: Callable[..., None],
    args: tuple[Any, ...],
    on_progress: OnProgress,
    *,
    timeout_s: float,
    limits: ProcessLimits,
) -> Any:
    """Run `target(*args, send, cancel)` in a child; return the body of its ("done", …) message.

    The target reports over `send` with ("progress", ChildProgress), then ("done", result) or
    ("error", ChildFailure), and should stop soon after `cancel` is set. Cancelling the calling
    task, a timeout or an exception from on_progress kills the child; it is always reaped.
    """
    receive, send = _CONTEXT.Pipe(duplex=False)
    cancel = _CONTEXT.Event()
    process = _CONTEXT.Process(
        target=_limited,
        args=(limits, target, args, send, cancel),
        name="sparc-video-media",
        daemon=True,
    )
    process.start()
    send.close()
    messages: asyncio.Queue[Any] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    loop.add_reader(receive.fileno(), _drain, receive, messages)
    exit_grace_s = 0.0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await messages.get()
                if message is None:
                    break
                tag, body = message
                if tag == "progress":
                    try:
                        await on_progress(body)
                    except BaseException:
                        cancel.set()
                        await _stop(process, CANCEL_GRACE_S)
                        raise
                elif tag == "done":
                    exit_grace_s = 5.0
                    return body
                else:
                    raise _as_error(body)
    except TimeoutError:
        raise ProcessingTimeout(
            f"processing ran past VIDEO_PROCESSING_TIMEOUT ({timeout_s:g} s) and was stopped"
        ) from None
    finally:
        loop.remove_reader(receive.fileno())
        receive.close()
        await _stop(process, exit_grace_s)
    exitcode = process.exitcode
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        raise PermanentProcessingError(
            f"the media processor crashed ({name}) while processing this source",
            reason="PROCESSOR_CRASHED",
        )
    raise PermanentProcessingError(
        f"the media processor exited unexpectedly (exit code {exitcode})",
        reason="PROCESSOR_CRASHED",
    )


def _drain(receive: Connection, messages: asyncio.Queue[Any]) -> None:
    try:
        while receive.poll():
            messages.put_nowait(receive.recv())
    except (EOFError, OSError):
        messages.put_nowait(None)
        asyncio.get_running_loop().remove_reader(receive.fileno())


async def _stop(process: multiprocessing.process.BaseProcess, grace_s: float) -> None:
    """Wait up to grace_s for the child to exit by itself, then kill it; always reap it."""
    if grace_s > 0:
        await asyncio.to_thread(process.join, grace_s)
    if process.is_alive():
        process.kill()
    with contextlib.suppress(Exception):
        await asyncio.to_thread(process.join, 5)


def _as_error(failure: ChildFailure) -> Exception:
    if failure.error_type == "cancelled":
        return JobCancelled(failure.message)
    if failure.error_type == "permanent":
        if failure.reason in _LIMIT_REASONS:
            return MediaLimitExceeded(failure.message, reason=failure.reason)
        if failure.reason in _MEDIA_REASONS:
            return MediaError(failure.message, reason=failure.reason)
        return PermanentProcessingError(failure.message, reason=failure.reason)
    if failure.error_type == "resources":
        return PermanentProcessingError(failure.message, reason="RESOURCE_LIMIT")
    return PermanentProcessingError(
        f"processing failed unexpectedly: {failure.message}", reason=failure.reason
    )
