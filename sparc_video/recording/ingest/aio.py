"""run_ingest from asyncio: the blocking loop in a thread, its segments delivered on the event
loop in order, and the loop's stop (or cancellation) passed to the thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from sparc_video.recording.ingest.models import (
    IngestSource,
    IngestStats,
    PacketTap,
    SegmentFile,
    SegmentPolicy,
)
from sparc_video.recording.ingest.run import run_ingest


async def ingest(
    source: IngestSource,
    policy: SegmentPolicy,
    buffer_dir: Path,
    on_segment: Callable[[SegmentFile], Awaitable[None]],
    on_stats: Callable[[IngestStats], None],
    stop: asyncio.Event,
    tap: PacketTap | None = None,
) -> None:
    """The same as run_ingest, from asyncio: runs it in a thread and awaits on_segment for each
    segment, in order, on the loop. Cancelling it stops the thread and waits for it (its last
    segment is still handed over)."""
    loop = asyncio.get_running_loop()
    segments: asyncio.Queue[SegmentFile | None] = asyncio.Queue()
    halt = threading.Event()

    def segment_ready(segment: SegmentFile) -> None:
        loop.call_soon_threadsafe(segments.put_nowait, segment)

    def stats_ready(stats: IngestStats) -> None:
        loop.call_soon_threadsafe(on_stats, stats)

    def run() -> None:
        try:
            run_ingest(source, policy, buffer_dir, segment_ready, stats_ready, halt, tap)
        finally:
            loop.call_soon_threadsafe(segments.put_nowait, None)

    async def deliver() -> None:
        while (segment := await segments.get()) is not None:
            await on_segment(segment)

    async def relay_stop() -> None:
        await stop.wait()
        halt.set()

    thread = asyncio.ensure_future(asyncio.to_thread(run))
    delivery = asyncio.ensure_future(deliver())
    stopper = asyncio.ensure_future(relay_stop())
    try:
        done, _ = await asyncio.wait({thread, delivery}, return_when=asyncio.FIRST_EXCEPTION)
        if delivery in done:
            # on_segment failed (delivery ends otherwise only after the thread): stop reading.
            halt.set()
        # Every segment the thread handed over is delivered before its outcome is raised.
        await asyncio.gather(thread, delivery, return_exceptions=True)
        delivery.result()
        thread.result()
    finally:
        halt.set()
        stopper.cancel()
        # Cancelled: the thread ends at its next packet (or read timeout); its last segment
        # is still delivered.
        await asyncio.shield(asyncio.gather(thread, delivery, return_exceptions=True))
