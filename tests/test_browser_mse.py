"""The headless Chromium the live-view tests use plays fragmented MP4 through Media Source
Extensions at all: a page served here appends a generated H.264 fMP4 clip to a SourceBuffer;
the video must play (currentTime advances) and show the clip's frames in order. Isolates the
browser (codecs, autoplay, frame capture) from the live stream of tests/test_live_browser.py.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import av
from aiohttp import web

from sparc_video.live.fragmenter import codecs_of
from tests.browser import open_page, play, shown_frames, watch_video
from tests.fixtures.chromium import Chromium
from tests.media import make_clip, read_frame_index
from tests.web_server import serving_app

_PAGE = """<!doctype html>
<video autoplay muted playsinline></video>
<script>
"use strict";
const video = document.querySelector("video");
const type = 'video/mp4; codecs="%(codecs)s"';
// Read by tests.browser.play: a clear failure instead of a video that never starts.
window.problem = MediaSource.isTypeSupported(type) ? null : "MSE cannot play " + type;
const source = new MediaSource();
video.src = URL.createObjectURL(source);
source.addEventListener("sourceopen", async () => {
  const buffer = source.addSourceBuffer(type);
  const data = await (await fetch("clip.mp4")).arrayBuffer();
  buffer.addEventListener("updateend", () => source.endOfStream(), { once: true });
  buffer.appendBuffer(data);
}, { once: true });
</script>
"""


def fragmented(clip: Path) -> bytes:
    """The clip's video remuxed (no re-encode) into fragmented MP4, as MSE takes it."""
    output = io.BytesIO()
    flags = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
    with av.open(str(clip)) as source, av.open(output, "w", format="mp4", options=flags) as out:
        video = source.streams.video[0]
        stream = out.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.dts is None:  # the demuxer's empty flush packet
                continue
            packet.stream = stream
            out.mux(packet)
    return output.getvalue()


@contextlib.asynccontextmanager
async def serve(clip: bytes) -> AsyncIterator[str]:
    page = _PAGE % {"codecs": codecs_of(clip)}

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def media(_: web.Request) -> web.Response:
        return web.Response(body=clip, content_type="video/mp4")

    app = web.Application()
    app.add_routes([web.get("/", index), web.get("/clip.mp4", media)])
    async with serving_app(app) as url:
        yield f"{url}/"


async def test_chromium_plays_fragmented_h264_through_media_source(
    chromium: Chromium, tmp_path: Path
) -> None:
    clip = fragmented(make_clip(tmp_path / "clip.mp4", duration_s=8, audio=False, gop=30))
    async with serve(clip) as url, open_page(chromium, tmp_path / "browser") as page:
        await page.navigate(url)
        await play(page, 0.01, timeout_s=60)
        await watch_video(page)
        await play(page, 2.0, timeout_s=60)
        frames = await shown_frames(page)

    indexes = [read_frame_index(frame.rgb) for frame in frames]
    assert len(indexes) >= 5, indexes
    # Played in order: what a loaded machine may do is skip pictures, never go back.
    assert indexes == sorted(indexes) and indexes[-1] > indexes[0], indexes
    times = [frame.media_time_s for frame in frames]
    assert times == sorted(times), times
