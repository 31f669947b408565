"""A real browser watches a camera live: headless Chromium opens the built-in page
(`/cameras/{camera}/live` behind GetCameraLiveStream's signed link), which plays the WebSocket's
fMP4 through Media Source Extensions. The video plays (currentTime advances), the pictures it
shows carry the test camera's increasing frame indexes, and glass-to-glass latency (when the
browser shows a picture minus the capture time the camera burnt into it) is printed.

Only a generous latency bound is asserted: this runs beside other tests on a loaded machine.
The issue's targets are measured by `python -m benchmarks.live` (docs/live.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.settings import Settings
from sparc_video.simulator import FrameStamp, NoStamp, TestCamera, read_stamp
from tests.browser import Page, ShownFrame, open_page, play, shown_frames, watch_video
from tests.fixtures.chromium import Chromium
from tests.live_helpers import live_setup
from tests.recorder_helpers import FAST

WATCH_S = 6.0
# Far above the targets (p50 0.8 s, p95 1.2 s): a page that buffered instead of
# keeping to the live edge would exceed it; a loaded test machine should not.
LATENCY_BOUND_S = 3.0


# How far the shown picture is behind the newest one the page has received (its buffer).
BEHIND = """(() => {
  const video = document.querySelector("video"), ranges = video.buffered;
  return ranges.length ? ranges.end(ranges.length - 1) - video.currentTime : null;
})()"""


def stamp_of(frame: ShownFrame) -> FrameStamp | None:
    """The test camera's stamp, read by its own decoder from the pixels the browser showed."""
    try:
        return read_stamp(av.VideoFrame.from_ndarray(frame.rgb, format="rgb24"))
    except NoStamp:
        return None


async def watched(page: Page, seconds: float) -> list[ShownFrame]:
    """The pictures the page shows over `seconds`, drained often enough to miss none."""
    frames: list[ShownFrame] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        frames += await shown_frames(page)
    return frames


async def test_chromium_plays_the_live_page_in_order_near_the_live_edge(
    service_settings: Callable[..., Settings], chromium: Chromium, tmp_path: Path
) -> None:
    settings = service_settings(**FAST, recorder_buffer_dir=tmp_path / "buffer")
    with TestCamera() as camera:
        async with live_setup(settings, camera) as live:
            stream = await live.stub.GetCameraLiveStream(
                svc.GetCameraLiveStreamRequest(name="cameras/cam/liveStream")
            )
            async with open_page(chromium, tmp_path / "browser") as page:
                await page.navigate(stream.page_url)
                await play(page, 0.5, timeout_s=90)
                await watch_video(page)
                frames = await watched(page, WATCH_S)
                behind_s = await page.evaluate(BEHIND)
                behind = "none" if behind_s is None else f"{behind_s:.3f} s"
                first_s, last_s = await play(page, 1.0, timeout_s=30)

    stamps = [(frame, stamp) for frame in frames if (stamp := stamp_of(frame)) is not None]
    indexes = [stamp.index for _, stamp in stamps]
    assert len(stamps) >= WATCH_S * 2, f"{len(stamps)} stamped of {len(frames)} pictures"
    # Shown in capture order; a loaded machine may skip pictures (the page jumps to the live
    # edge when behind), never show an older one after a newer.
    assert indexes == sorted(indexes) and indexes[-1] > indexes[0], indexes
    assert last_s > first_s
    latencies = np.array(
        [frame.shown_unix_s - stamp.capture_time_us / 1e6 for frame, stamp in stamps]
    )
    p50, p95 = np.percentile(latencies, [50, 95])
    print(
        f"browser live latency: p50 {p50:.3f} s, p95 {p95:.3f} s over {len(stamps)} pictures"
        f" (frames {indexes[0]}..{indexes[-1]}, {len(frames)} shown in {WATCH_S} s);"
        f" the page's buffer ahead of the shown picture: {behind}"
    )
    assert p50 <= LATENCY_BOUND_S, latencies
