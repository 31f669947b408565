"""Live view for browsers on the HTTP port: the page and its WebSocket behind the signed links
GetCameraLiveStream hands out deliver the codecs, the init and fragments that decode; a link
that is missing, forged, for another camera or expired is refused; and a real headless
Chromium (Debian's, fetched by the `chromium` fixture) plays the page: its video's time
advances and the pictures it shows carry increasing frame indices."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.settings import Settings
from sparc_video.simulator import FrameStamp, NoStamp, TestCamera
from tests.devtools import headless
from tests.fixtures.chromium import Chromium
from tests.live_helpers import consecutive, frame_indices, live_setup
from tests.recorder_helpers import FAST, wait_for

FRAGMENTS = 40


async def test_the_page_and_websocket_deliver_the_live_stream_to_a_signed_link_only(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings(**FAST, recorder_buffer_dir=tmp_path / "buffer")
    with TestCamera(size=(160, 96)) as camera:
        async with live_setup(settings, camera) as live, aiohttp.ClientSession() as http:
            stream = await live.stub.GetCameraLiveStream(
                svc.GetCameraLiveStreamRequest(name="cameras/cam/liveStream")
            )
            async with http.get(stream.page_url) as page:
                assert page.status == 200
                body = await page.text()
                assert "MediaSource" in body and "/ws" in body

            async with http.ws_connect(stream.websocket_url) as ws:
                hello = json.loads(await ws.receive_str(timeout=30))
                assert hello["type"] == "init" and hello["codecs"].startswith("avc1.")
                data = [await ws.receive_bytes(timeout=30) for _ in range(FRAGMENTS + 1)]
            assert data[0][4:8] == b"ftyp" and all(d[4:8] == b"moof" for d in data[1:])
            indices = frame_indices(b"".join(data))
            assert len(indices) == FRAGMENTS and consecutive(indices), indices

            base = live.service.http_url + "/cameras/cam/live"
            query = parse_qs(urlsplit(stream.page_url).query)
            expires, sig = query["expires"][0], query["sig"][0]
            expired = live.service.server.live.signer.links("cam", ttl_s=-5)
            refused = {
                "no link": base,
                "forged": f"{base}?expires={expires}&sig={'0' * 64}",
                "another camera": base.replace("/cam/", "/idle/") + f"?expires={expires}&sig={sig}",
                "expired": expired.page_url,
                "later expiry": f"{base}?expires={int(expires) + 3600}&sig={sig}",
            }
            for what, url in refused.items():
                for address in (url, url.replace("/live", "/live/ws", 1)):
                    async with http.get(address) as answer:
                        assert answer.status == 403, (what, address, answer.status)
                        text = await answer.text()
                        assert "link" in text, text
            async with http.get(expired.page_url) as answer:
                assert "expired" in await answer.text()


async def test_the_page_plays_the_live_stream_in_headless_chromium(
    service_settings: Callable[..., Settings], tmp_path: Path, chromium: Chromium
) -> None:
    settings = service_settings(**FAST, recorder_buffer_dir=tmp_path / "buffer")
    with TestCamera(size=(320, 180)) as camera:
        async with live_setup(settings, camera) as live:
            stream = await live.stub.GetCameraLiveStream(
                svc.GetCameraLiveStreamRequest(name="cameras/cam/liveStream")
            )
            async with headless(chromium, tmp_path / "profile") as browser:
                page = await browser.open(stream.page_url)

                async def playing() -> bool:
                    now = await browser.evaluate(
                        page, "document.getElementById('video').currentTime"
                    )
                    return float(now or 0) > 1.0

                await wait_for(playing, 120, "the page's video plays")
                seen: list[FrameStamp] = []

                async def shows_a_later_frame() -> bool:
                    with contextlib.suppress(NoStamp):
                        seen.append(await browser.shown_stamp(page))
                    return len(seen) >= 2 and seen[-1].index > seen[0].index

                await wait_for(shows_a_later_frame, 60, "later frames shown", every_s=0.5)
                # For the record, not asserted (a loaded machine's timing is not the code's).
                lag = time.time() - seen[-1].capture_time_us / 1e6
                print(f"browser shows frame {seen[-1].index}, {lag:.3f} s after its capture")
