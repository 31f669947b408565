"""Run an export's media work in a child process the worker can stop.

arq's job timeout and abort only cancel the asyncio task; they cannot interrupt PyAV inside a C
call. A child process can be signalled, and a crash inside FFmpeg kills only the child. The
event loop of the worker stays free for heartbeats, progress writes and other jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sparc_video.errors import (
    JobCancelled,
    MediaError,
    PermanentProcessingError,
    ProcessingTimeout,
)
from sparc_video.models import Operation
from workers.child import ChildFailure, ChildProgress, ProducedFile, run_operations

# forkserver: children fork from a small clean process (with PyAV preloaded) rather than from
# the worker, whose threads and sockets must not be duplicated.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["workers.child"])

CANCEL_GRACE_S = 0.5

OnProgress = Callable[[ChildProgress], Awaitable[None]]


async def run_in_child(
    source: Path,
    workdir: Path,
    operations: list[Operation],
    on_progress: OnProgress,
    timeout_s: float,
) -> list[ProducedFile]:
    """Run the operations; `on_progress` may raise (e.g. JobCancelled) to stop the child."""
    receive, send = _CONTEXT.Pipe(duplex=False)
    cancel = _CONTEXT.Event()
    process = _CONTEXT.Process(
        target=run_operations,
        args=(source, workdir, operations, send, cancel),
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
                    return list(body)
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
        if failure.reason in {"INVALID_MEDIA", "NOT_A_VIDEO", "NO_VIDEO_STREAM", "UNDECODABLE"}:
            return MediaError(failure.message, reason=failure.reason)
        return PermanentProcessingError(failure.message, reason=failure.reason)
    return PermanentProcessingError(
        f"processing failed unexpectedly: {failure.message}", reason=failure.reason
    )
