"""Stages of a pass that overlap: each in a thread of its own, bounded queues between them.

PyAV releases the GIL in its codec, filter and muxer calls, so a decoding thread, a filtering
thread and the caller's thread (encoding, muxing, reporting progress) keep several cores busy
where one loop would run them one after another. Queues hold QUEUE_ITEMS frames each, so memory
stays bounded whatever the video's length.

The caller's thread stays the one that reports progress, so the progress callback is still the
cancellation point: whatever it raises stops every stage (threads blocked on a queue wake at
once; one inside a codec call finishes that frame) and the threads are joined before the
exception goes on. An exception in a stage thread stops the others the same way and is raised
in the caller's thread as it was raised. Without `threaded` the same stages run one after
another in the caller's thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")

# Items (frames) waiting between two stages at most: enough to absorb the jitter of frame
# threads, few enough that memory stays small (8 1080p frames are 25 MB).
QUEUE_ITEMS = 8


@dataclass
class StageTimes:
    """Where one stage's time went: working, waiting for input, waiting for room downstream."""

    name: str
    items: int = 0
    busy_s: float = 0.0
    wait_in_s: float = 0.0
    wait_out_s: float = 0.0


@dataclass
class PassTrace:
    """One pipeline's run: its wall time and each stage's times (see `tracing`)."""

    threaded: bool
    wall_s: float = 0.0
    stages: list[StageTimes] = field(default_factory=list)


# Where finished pipelines leave their trace while `tracing` is on (benchmarks only).
_traces: list[PassTrace] | None = None


@contextlib.contextmanager
def tracing() -> Iterator[list[PassTrace]]:
    """Collect the trace of every pipeline that finishes in this process meanwhile."""
    global _traces
    collected: list[PassTrace] = []
    _traces = collected
    try:
        yield collected
    finally:
        _traces = None


class _Stopped(Exception):
    """The pipeline was stopped: a stage failed or the caller left."""


class _End:
    pass


_END = _End()


class _Channel(Generic[T]):
    """A bounded FIFO between two threads whose waits end when the pipeline stops."""

    def __init__(self, pipeline: Pipeline, depth: int) -> None:
        self._pipeline = pipeline
        self._depth = depth
        self._items: deque[T | _End] = deque()
        self.ready = threading.Condition()

    def put(self, item: T | _End) -> None:
        with self.ready:
            while len(self._items) >= self._depth and not self._pipeline.stopped:
                self.ready.wait()
            if self._pipeline.stopped:
                raise _Stopped
            self._items.append(item)
            self.ready.notify_all()

    def get(self) -> T | _End:
        with self.ready:
            while not self._items and not self._pipeline.stopped:
                self.ready.wait()
            if self._pipeline.stopped:
                raise _Stopped
            item = self._items.popleft()
            self.ready.notify_all()
            return item


class Pipeline:
    """A source, stages mapping its items, and a sink in the caller's thread:

        with Pipeline(threaded=True) as pipe:
            pipe.drain("encode", pipe.map("filter", pipe.source("decode", frames), scale), encode)

    Leaving the block (normally or not) stops and joins every thread.
    """

    def __init__(self, *, threaded: bool, depth: int = QUEUE_ITEMS) -> None:
        self._threaded = threaded
        self._depth = depth
        self._threads: list[threading.Thread] = []
        self._channels: list[_Channel[object]] = []
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.stopped = False
        self.trace = PassTrace(threaded)
        self._started = time.perf_counter()

    def source(self, name: str, items: Iterable[T]) -> Iterator[T]:
        """Iterate `items` (in a thread when threaded): the first stage."""
        times = self._times(name)

        def produce() -> Iterator[T]:
            iterator = iter(items)
            while True:
                started = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    times.busy_s += time.perf_counter() - started
                times.items += 1
                yield item

        return self._spawn(name, produce(), times, items)

    def map(self, name: str, items: Iterator[T], work: Callable[[T], U]) -> Iterator[U]:
        """`work` applied to each item (in a thread when threaded), in order."""
        times = self._times(name)

        def mapped() -> Iterator[U]:
            for item in self._timed_input(items, times):
                started = time.perf_counter()
                result = work(item)
                times.busy_s += time.perf_counter() - started
                yield result

        return self._spawn(name, mapped(), times, None)

    def drain(self, name: str, items: Iterator[T], work: Callable[[T], None]) -> None:
        """`work` applied to each item in the caller's thread: the last stage."""
        times = self._times(name)
        try:
            for item in self._timed_input(items, times):
                started = time.perf_counter()
                work(item)
                times.busy_s += time.perf_counter() - started
        except _Stopped:
            assert self._error is not None
            raise self._error from None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()
        for thread in self._threads:
            thread.join()
        self.trace.wall_s = time.perf_counter() - self._started
        if _traces is not None:
            _traces.append(self.trace)

    # --- internals

    def _times(self, name: str) -> StageTimes:
        times = StageTimes(name)
        self.trace.stages.append(times)
        return times

    def _timed_input(self, items: Iterator[T], times: StageTimes) -> Iterator[T]:
        while True:
            started = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                times.wait_in_s += time.perf_counter() - started
            times.items += 1
            yield item

    def _spawn(self, name: str, work: Iterator[T], times: StageTimes, owned: object) -> Iterator[T]:
        """Run the generator `work` in a thread that feeds a channel; returns its reader."""
        if not self._threaded:
            return work
        channel: _Channel[T] = _Channel(self, self._depth)
        self._channels.append(channel)  # type: ignore[arg-type]

        def run() -> None:
            try:
                for item in work:
                    started = time.perf_counter()
                    channel.put(item)
                    times.wait_out_s += time.perf_counter() - started
                channel.put(_END)
            except _Stopped:
                pass
            except BaseException as exc:
                self._fail(exc)
            finally:
                # The source's cleanup (closing a generator over an open container) runs here,
                # before the thread is joined, not whenever it is garbage collected.
                if isinstance(work, Generator):
                    work.close()
                if isinstance(owned, Generator):
                    owned.close()

        thread = threading.Thread(target=run, name=f"sparc-video-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return self._read(channel)

    def _read(self, channel: _Channel[T]) -> Iterator[T]:
        while True:
            item = channel.get()
            if isinstance(item, _End):
                return
            yield item

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self._stop()

    def _stop(self) -> None:
        self.stopped = True
        for channel in self._channels:
            with channel.ready:
                channel.ready.notify_all()
