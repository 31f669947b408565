"""Starting the server's media children without forking the server.

The server runs gRPC, whose fork support installs `pthread_atfork` handlers, and uvloop (for
`serve` and `dev`) starts subprocesses with libuv's `fork()`, which runs them. A child forked
that way from a process running the gRPC server died at start, often on a fresh server's first
probe: SIGSEGV or an abort (`ev_epoll1_linux.cc: Check failed: next_worker->state == KICKED`)
inside gRPC's event-engine code, and the RPC answered `UNKNOWN: RuntimeError: unable to perform
operation on <WriteUnixTransport closed=True>` from writing to the dead child's stdin.

So a child is started with `os.posix_spawn` (glibc implements it with `clone(CLONE_VM |
CLONE_VFORK)` followed by `exec`: no `fork()`, no atfork handler runs, nothing of gRPC's state
is used in the child) as a fresh interpreter, `python -m sparc_video.media.child_main`. Its
pipes and its exit are awaited on the event loop (non-blocking pipe ends, a pidfd), whatever
the loop is, with no thread per child.

Cost, measured on the 2-core development machine (machine loaded, load average ~7): spawning
a bare interpreter and reaping it takes ~0.025 s; a whole media child (interpreter, `import av`
~0.06 to 0.14 s and ~33 MiB, the ready line, a reply) ~0.13 s median, 0.09 s at best. A fork of
a process with PyAV already loaded would save about that 0.1 s per probe, small beside the
camera's own connect and first picture; `probe.STARTUP_ALLOWANCE_S` covers it on a loaded
machine.

Every way a child can end is told apart (`ChildFailure`): it could not be started, it died
before it was ready (a signal or an exit status while starting Python and PyAV), it died while
working (named signal or exit status), it sent no reply, a reply cut short, a garbled or too
large one. A deadline or a cancelled call kills the child's whole process group and reaps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparc_video.media.child_protocol import READY_LINE

CHILD_MODULE = "sparc_video.media.child_main"
# A snapshot's JPEG travels in the reply as base64; no picture the child may decode
# (8192x8192 at most) makes a JPEG anywhere near this.
MAX_OUTPUT_BYTES = 256 * 1024 * 1024
_CHUNK = 1024 * 1024
# Signals by which a process ends because of what it was running (FFmpeg on hostile input, a
# hit memory limit), rather than being stopped from outside (SIGKILL, SIGTERM).
CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
)
# Reapers of children whose caller was cancelled while the child was being killed.
_reapers: set[asyncio.Task[Any]] = set()


class ChildFailure(Exception):
    """A media child ended without a usable reply. The message names how (signal, exit status,
    what was wrong with the reply) and never quotes the request."""

    def __init__(self, message: str, *, started: bool, signal_number: int = 0) -> None:
        super().__init__(message)
        self.message = message
        # Ready (Python and PyAV up, limits set) before it ended.
        self.started = started
        self.signal_number = signal_number

    @property
    def crashed(self) -> bool:
        """Killed, while working, by a signal of its own doing (SIGSEGV, SIGABRT...)."""
        return self.started and self.signal_number in CRASH_SIGNALS


@dataclass(frozen=True)
class ChildOutput:
    stdout: bytes
    returncode: int
    # How writing the request failed (the child closed its stdin, i.e. died), or "".
    stdin_error: str = ""
    overflowed: bool = False
    # With `capture_stderr`; else stderr goes to /dev/null.
    stderr: bytes = b""


async def run_media_child(
    request: dict[str, Any], deadline_s: float, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run one request in a fresh media child: its reply, or ChildFailure; TimeoutError when
    the deadline passed (the child is killed and reaped)."""
    payload = json.dumps(request).encode("utf-8")
    try:
        output = await run_child([sys.executable, "-m", CHILD_MODULE], payload, deadline_s, env=env)
    except TimeoutError:
        # The deadline (an OSError too, not a failure to start).
        raise
    except OSError as exc:
        # No pipe or process to be had (EMFILE, EAGAIN, ENOMEM), or no interpreter.
        raise ChildFailure(
            f"the media process could not be started: {exc.strerror or exc}", started=False
        ) from None
    return parse_output(output)


def parse_output(output: ChildOutput) -> dict[str, Any]:
    """The child's reply, or ChildFailure saying how it ended."""
    started = output.stdout.startswith(READY_LINE)
    body = output.stdout[len(READY_LINE) :] if started else b""
    code = output.returncode
    signal_number = -code if code < 0 else 0
    if started and body.endswith(b"\n") and not output.overflowed:
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if isinstance(reply, dict):
            # A reply in full counts whatever came after it (the child answers, then exits).
            return reply
        raise ChildFailure(
            f"the media process sent a garbled reply ({len(body)} bytes, {_how(code)})",
            started=True,
            signal_number=signal_number,
        )
    if output.overflowed:
        problem = f"sent more than {MAX_OUTPUT_BYTES} bytes and was stopped"
    elif not started:
        problem = (
            "ended before it was ready (while starting Python and PyAV)"
            if not output.stdout or READY_LINE.startswith(output.stdout)
            else "wrote something other than its ready line"
        )
    elif body:
        problem = f"ended with its reply cut short after {len(body)} bytes"
    else:
        problem = "ended while working, before it replied"
    if output.stdin_error and not started:
        problem += f" (it closed its input: {output.stdin_error})"
    raise ChildFailure(
        f"the media process {problem}: {_how(code)}",
        started=started,
        signal_number=signal_number,
    )


def _how(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit status {returncode}"


async def run_child(
    argv: Sequence[str],
    stdin: bytes,
    deadline_s: float,
    *,
    env: Mapping[str, str] | None = None,
    max_output: int = MAX_OUTPUT_BYTES,
    capture_stderr: bool = False,
) -> ChildOutput:
    """Start `argv` (argv[0] a path) with posix_spawn, in a session of its own, stderr to
    /dev/null unless captured; write `stdin`, read stdout to its end and wait for the exit. At
    the deadline (TimeoutError) or on cancellation the child's process group is killed and
    reaped first."""
    child = _Child.spawn(argv, env, capture_stderr)
    returncode: int | None = None
    try:
        async with asyncio.timeout(deadline_s):
            async with asyncio.TaskGroup() as group:
                reading = group.create_task(child.read(child.stdout, max_output))
                errors = group.create_task(child.read(child.stderr, max_output))
                writing = group.create_task(child.write_and_close(stdin))
            stdout, overflowed = reading.result()
            returncode = await child.wait()
    finally:
        child.close_pipes()
        if returncode is None:
            # Deadline passed, or the RPC was cancelled: the child must not outlive it.
            child.kill()
            await child.reap_in_background()
        else:
            child.close()
    return ChildOutput(stdout, returncode, writing.result(), overflowed, errors.result()[0])


class _Child:
    def __init__(self, pid: int, stdin: int, stdout: int, stderr: int) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.pidfd = -1
        with contextlib.suppress(OSError, AttributeError):
            self.pidfd = os.pidfd_open(pid)
        self.returncode: int | None = None

    @classmethod
    def spawn(
        cls, argv: Sequence[str], env: Mapping[str, str] | None, capture_stderr: bool
    ) -> _Child:
        # os.pipe() ends are close-on-exec: the child keeps only what dup2 puts on 0, 1, 2.
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe() if capture_stderr else (-1, -1)
        stderr_action: tuple[Any, ...] = (
            (os.POSIX_SPAWN_DUP2, err_w, 2)
            if capture_stderr
            else (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)
        )
        try:
            pid = os.posix_spawn(
                argv[0],
                list(argv),
                dict(os.environ if env is None else env),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, in_r, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    stderr_action,
                ],
                # Its own session and process group: a terminal's Ctrl-C goes to the server,
                # which stops the child itself, and a kill reaches anything it started.
                setsid=True,
                # As subprocess's restore_signals: the server ignores SIGPIPE and SIGXFSZ.
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
                setsigmask=(),
            )
        except BaseException:
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                if fd >= 0:
                    os.close(fd)
            raise
        for fd in (in_r, out_w, err_w):
            if fd >= 0:
                os.close(fd)
        for fd in (in_w, out_r, err_r):
            if fd >= 0:
                os.set_blocking(fd, False)
        return cls(pid, in_w, out_r, err_r)

    async def read(self, fd: int, limit: int) -> tuple[bytes, bool]:
        """All of `fd`; past `limit` the child is killed (which ends its other pipes too)."""
        data, overflowed = await _read_all(fd, limit)
        if overflowed:
            self.kill()
        return data, overflowed

    async def write_and_close(self, data: bytes) -> str:
        """Write stdin, then close it; "" or how writing failed (the child closed its end)."""
        try:
            return await _write_all(self.stdin, data)
        finally:
            os.close(self.stdin)
            self.stdin = -1

    def kill(self) -> None:
        if self.returncode is not None:
            return
        # The pid is ours until reaped, and so is the process group it leads.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    async def wait(self) -> int:
        while self.returncode is None:
            if self._poll():
                break
            if self.pidfd >= 0:
                await _ready(self.pidfd, writable=False)
            else:
                await asyncio.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def _poll(self) -> bool:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            # Reaped by someone else (a handler waiting on any child): the status is lost.
            self.returncode = 255
            return True
        if pid == 0:
            return False
        self.returncode = os.waitstatus_to_exitcode(status)
        return True

    async def reap_in_background(self) -> None:
        """Wait for the killed child; a second cancellation leaves the wait to a task."""
        reaper = asyncio.ensure_future(self._reap())
        _reapers.add(reaper)
        reaper.add_done_callback(_reapers.discard)
        await asyncio.shield(reaper)

    async def _reap(self) -> None:
        try:
            await self.wait()
        finally:
            self.close()

    def close_pipes(self) -> None:
        for fd in (self.stdin, self.stdout, self.stderr):
            if fd >= 0:
                os.close(fd)
        self.stdin = self.stdout = self.stderr = -1

    def close(self) -> None:
        self.close_pipes()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


async def _ready(fd: int, *, writable: bool) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await done
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _write_all(fd: int, data: bytes) -> str:
    """ "" or how writing failed (a child that died closed its end)."""
    offset = 0
    try:
        while offset < len(data):
            try:
                offset += os.write(fd, data[offset : offset + _CHUNK])
            except BlockingIOError:
                await _ready(fd, writable=True)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return ""


async def _read_all(fd: int, limit: int) -> tuple[bytes, bool]:
    """Everything up to end of file; (what was read, True) once past `limit`. Nothing from
    fd -1."""
    chunks: list[bytes] = []
    if fd < 0:
        return b"", False
    size = 0
    while True:
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            await _ready(fd, writable=False)
            continue
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), True
    return b"".join(chunks), False
