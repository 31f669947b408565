"""Driving headless Chromium over the DevTools protocol with aiohttp's WebSocket client: open a
page, evaluate JavaScript in it, and read back the picture a <video> element shows."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from PIL import Image

from sparc_video.simulator import FrameStamp, read_stamp
from tests.fixtures.chromium import Chromium

# Draws the <video> into a canvas: the picture on screen, as a PNG data URL.
_SHOWN = """(() => {
  const video = document.getElementById("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas.toDataURL("image/png");
})()"""


class DevTools:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._id = 0

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str = ""
    ) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self._ws.send_json(message)
        while True:  # events come in between: skip them
            reply = await self._ws.receive_json()
            if reply.get("id") == self._id:
                assert "error" not in reply, reply["error"]
                result: dict[str, Any] = reply["result"]
                return result

    async def open(self, url: str) -> str:
        """A new tab at `url`; its session id."""
        target = (await self.call("Target.createTarget", {"url": url}))["targetId"]
        attached = await self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        return str(attached["sessionId"])

    async def evaluate(self, session: str, expression: str) -> Any:
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        result = await self.call("Runtime.evaluate", params, session)
        return result["result"].get("value")

    async def shown_stamp(self, session: str) -> FrameStamp:
        """The stamp of the picture the page's video shows now (NoStamp if unreadable)."""
        url = await self.evaluate(session, _SHOWN)
        png = base64.b64decode(str(url).split(",", 1)[1])
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        return read_stamp(av.VideoFrame.from_ndarray(pixels, format="rgb24"))


@contextlib.asynccontextmanager
async def headless(chromium: Chromium, profile: Path) -> AsyncIterator[DevTools]:
    process = await asyncio.create_subprocess_exec(
        chromium.executable,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **chromium.env},
    )
    assert process.stderr is not None
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(90):
            while "DevTools listening on" not in (
                line := (await process.stderr.readline()).decode()
            ):
                assert line, "chromium exited before listening"
        # Its log keeps coming: read it so the pipe never fills and blocks the browser.
        drain = asyncio.create_task(_drain(process.stderr))
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(line.split()[-1], max_msg_size=0) as ws,
        ):
            yield DevTools(ws)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
        if drain is not None:
            drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
