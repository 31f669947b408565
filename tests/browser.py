"""A headless Chromium driven over the Chrome DevTools Protocol: start it, open a page, run
JavaScript in it and read back what it returns. A few lines of aiohttp's WebSocket client (a
dependency already) instead of Playwright: nothing is downloaded, and any Chromium the fixture
finds will do (tests/fixtures/chromium.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt

from tests.fixtures.chromium import Chromium

_START_TIMEOUT_S = 60.0
_CALL_TIMEOUT_S = 60.0
_FLAGS = (
    "--headless",
    # Root on the test machines; the sandbox refuses to run as root.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--mute-audio",
    # A live page plays without a click.
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class BrowserError(AssertionError):
    """The page threw, or the browser did not answer in time."""


class Page:
    """One tab, over its DevTools WebSocket."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            waiter = self._waiting.pop(data.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(data)
            # Events (no id) are not needed: the tests poll the page's own state.
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(BrowserError("the browser closed its DevTools socket"))

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[number] = waiter
        await self._socket.send_json({"id": number, "method": method, "params": params})
        try:
            reply = await asyncio.wait_for(waiter, _CALL_TIMEOUT_S)
        except TimeoutError:
            raise BrowserError(f"no answer to {method} within {_CALL_TIMEOUT_S} s") from None
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (a promise is awaited), as JSON gives it."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            thrown = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"the page threw: {thrown}")
        return result["result"].get("value")

    async def navigate(self, url: str) -> None:
        reply = await self.call("Page.navigate", url=url)
        if reply.get("errorText"):
            raise BrowserError(f"cannot open {url}: {reply['errorText']}")
        # Page.navigate answers once the response starts; the tests want the page's script run.
        deadline = time.monotonic() + _CALL_TIMEOUT_S
        loaded = "location.href !== 'about:blank' && document.readyState === 'complete'"
        while not await self.evaluate(loaded):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} not loaded within {_CALL_TIMEOUT_S} s")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self._socket.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def _devtools_port(folder: Path, process: asyncio.subprocess.Process, log: Path) -> int:
    """Chromium writes the port it chose into DevToolsActivePort once it listens."""
    marker = folder / "DevToolsActivePort"
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not marker.exists() or not marker.read_text().strip():
        if process.returncode is not None or time.monotonic() > deadline:
            raise BrowserError(f"Chromium did not start: {log.read_text()[-3000:]}")
        await asyncio.sleep(0.1)
    return int(marker.read_text().splitlines()[0])


@contextlib.asynccontextmanager
async def open_page(chromium: Chromium, folder: Path) -> AsyncIterator[Page]:
    """A fresh Chromium (its profile in `folder`) showing about:blank; closed on exit."""
    profile = folder / "profile"
    profile.mkdir(parents=True, exist_ok=True)
    log = folder / "chromium.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            chromium.executable,
            *_FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env={**os.environ, **chromium.env},
        )
    try:
        port = await _devtools_port(profile, process, log)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            (tab,) = [t for t in targets if t["type"] == "page"]
            socket = await session.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0)
            page = Page(socket)
            try:
                yield page
            finally:
                await page.close()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def play(page: Page, for_s: float, timeout_s: float) -> tuple[float, float]:
    """Wait until the page's <video> has played `for_s` seconds of media from where it was
    first seen playing: (that currentTime, the current one). Fails on a media error, or the
    page's `window.problem` where it sets one."""
    deadline = time.monotonic() + timeout_s
    state_of = """(() => {
      const video = document.querySelector("video");
      return { time: video.currentTime, ready: video.readyState,
               problem: window.problem || (video.error && "media error " + video.error.code
                                           + " " + video.error.message) || null };
    })()"""
    first: float | None = None
    while True:
        state = await page.evaluate(state_of)
        if state["problem"]:
            raise BrowserError(state["problem"])
        # HAVE_CURRENT_DATA: a picture is on screen at currentTime.
        if first is None and state["ready"] >= 2:
            first = float(state["time"])
        if first is not None and state["time"] >= first + for_s:
            return first, float(state["time"])
        if time.monotonic() > deadline:
            raise BrowserError(f"not {for_s} s played within {timeout_s} s: {state}")
        await asyncio.sleep(0.1)


# Installed in a page: each picture its first <video> presents, drawn onto a small canvas, is
# kept (RGB, base64) with the wall-clock time the browser expected to show it, until
# `shown_frames` drains them. Pixels go to Python so the stamps are read by the same decoders
# the other tests use, not by a copy in JavaScript.
_WATCH_VIDEO = """
(() => {
  const video = document.querySelector("video");
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  window.__shown = [];
  const keep = (now, metadata) => {
    const scale = Math.min(1, %(width)d / metadata.width);
    canvas.width = Math.round(metadata.width * scale);
    canvas.height = Math.round(metadata.height * scale);
    context.drawImage(video, 0, 0, canvas.width, canvas.height);
    const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const rgb = new Uint8Array(canvas.width * canvas.height * 3);
    for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
      rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
    }
    let binary = "";
    for (let i = 0; i < rgb.length; i += 8192) {
      binary += String.fromCharCode.apply(null, rgb.subarray(i, i + 8192));
    }
    window.__shown.push({
      shown_ms: performance.timeOrigin + metadata.expectedDisplayTime,
      media_time_s: metadata.mediaTime,
      width: canvas.width, height: canvas.height, rgb: btoa(binary),
    });
    // Bounded: a test that polls slowly loses the oldest pictures, not memory.
    if (window.__shown.length > %(keep)d) window.__shown.shift();
    video.requestVideoFrameCallback(keep);
  };
  video.requestVideoFrameCallback(keep);
  return true;
})()
"""


@dataclass(frozen=True)
class ShownFrame:
    shown_unix_s: float  # when the browser expected it on screen, wall clock
    media_time_s: float
    rgb: npt.NDArray[np.uint8]  # (height, width, 3)


async def watch_video(page: Page, width: int = 160, keep: int = 90) -> None:
    """Start keeping the pictures the page's <video> shows, scaled to at most `width`. Small:
    the stamps survive it, and copying 320x180 pictures out of a page at 25 fps made it drop a
    fifth to a quarter of them on a loaded machine (none at 160)."""
    await page.evaluate(_WATCH_VIDEO % {"width": width, "keep": keep})


async def shown_frames(page: Page) -> list[ShownFrame]:
    """The pictures shown since the last call, oldest first (at most `keep` of them)."""
    taken = await page.evaluate("window.__shown.splice(0)")
    return [
        ShownFrame(
            item["shown_ms"] / 1000,
            item["media_time_s"],
            np.frombuffer(base64.b64decode(item["rgb"]), np.uint8).reshape(
                item["height"], item["width"], 3
            ),
        )
        for item in taken
    ]
