"""Refusing RTSP redirects while the ingest opens a camera.

FFmpeg's RTSP client follows a 3xx answer to DESCRIBE or SETUP on its own (no option turns that
off), to a host the camera address policy never saw, logging "Redirecting to ..." right before
it connects there. The media child exits on that line; the ingest runs in a thread of the
recorder, so it makes the open fail instead: while a thread opens a camera, FFmpeg's log lines
reach the handler here (PyAV hands them over synchronously, in the thread that logged), and once
that thread has logged a redirect, PyAV's interrupt callback for it reads an infinite clock, so
its open timeout has passed. FFmpeg checks the interrupt as soon as its connect() to the target
is under way (and before each write): the target's name may be looked up and the target may see a
TCP connection opened and closed, never an RTSP request (nor the camera's credentials).

PyAV's interrupt callback reads `time.monotonic()` through its own module's `time`; that name is
replaced here by a clock that is `time`'s own for every thread but one caught redirecting.
Should a PyAV release stop reading it so, importing this module fails rather than following
redirects silently (and tests/test_ingest.py's redirect test fails with it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import av.container.core
import av.logging

_lock = threading.Lock()
_opening: set[int] = set()  # threads opening a camera now
_redirected: set[int] = set()  # of those, the ones FFmpeg is redirecting


class _InterruptingClock:
    """`time` to PyAV's interrupt callback, but infinitely late in a redirected thread."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def monotonic(self) -> float:
        if _redirected and threading.get_ident() in _redirected:
            return math.inf
        return time.monotonic()


class _RedirectWatch(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        ident = threading.get_ident()
        if ident in _opening and "Redirecting to" in record.getMessage():
            _redirected.add(ident)


def _install_clock() -> None:
    if not isinstance(getattr(av.container.core, "time", None), types.ModuleType):
        raise RuntimeError(
            "this PyAV release's interrupt callback no longer reads av.container.core.time: "
            "the recorder cannot refuse RTSP redirects"
        )
    av.container.core.time = _InterruptingClock()  # type: ignore[attr-defined]


_install_clock()
_watch = _RedirectWatch()
_libav = logging.getLogger("libav")
_saved: tuple[int, bool, bool] = (logging.NOTSET, True, True)


@contextlib.contextmanager
def redirects_refused() -> Iterator[Callable[[], bool]]:
    """Around av.open in the calling thread: a redirect makes the open fail (FFmpeg reports an
    exit, as on a timeout) before the target gets a request; the yielded function says,
    after the open failed, whether that was why."""
    global _saved
    ident = threading.get_ident()
    with _lock:
        if not _opening:
            # FFmpeg's log lines go nowhere otherwise (PyAV's default): only while a camera
            # opens do they reach Python, and only this handler (they may carry URLs).
            _saved = (_libav.level, _libav.propagate, av.logging.get_skip_repeated())
            _libav.setLevel(logging.INFO)
            _libav.propagate = False
            _libav.addHandler(_watch)
            # PyAV holds back a line equal to the one before: the same camera redirecting
            # again on its next try would otherwise go unseen.
            av.logging.set_skip_repeated(False)
            av.logging.set_level(av.logging.INFO)
        _opening.add(ident)
    try:
        yield lambda: ident in _redirected
    finally:
        with _lock:
            _opening.discard(ident)
            _redirected.discard(ident)
            if not _opening:
                av.logging.set_level(None)
                av.logging.set_skip_repeated(_saved[2])
                _libav.removeHandler(_watch)
                _libav.setLevel(_saved[0])
                _libav.propagate = _saved[1]
