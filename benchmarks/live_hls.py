"""LL-HLS benchmark: glass-to-glass latency of the LL-HLS live stream with many viewers.

    .venv/bin/python -m benchmarks.live_hls [--seconds 15] [--viewers 1,50,200] [--size 640x360]

The camera and the service run as in `benchmarks.live` (its processes are reused). For each
viewer count N, N LL-HLS viewers follow the playlist by blocking reloads (`_HLS_msn`,
`_HLS_part`) and fetch every part as it is listed; one of them (the probe) decodes each part's
frames and reads their stamps: latency = clock at decode - stamped capture time. It plays a part
as soon as it has it, without the playlist's PART-HOLD-BACK a player may add. Also the service's
RSS growth per viewer and the parts each viewer got.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.control_plane.processes import rss_mb
from benchmarks.control_plane.services import local_redis, run_database
from benchmarks.live import FPS, Probe, _row, _spawn, camera_main, service_main


class LowLatencyViewer:
    """An LL-HLS client: a blocking playlist reload for the part after the newest it has, then
    each part the playlist newly lists, in order, handed to `on_part` (after the init to
    `on_init`). Starts at the newest independent part."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        on_init: Callable[[bytes], Awaitable[None]],
        on_part: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self._http, self._url = http, url
        self._base = url.split("?")[0].rsplit("/", 1)[0] + "/"
        self._on_init, self._on_part = on_init, on_part
        self.parts = 0
        self.reloads = 0

    async def _get(self, uri: str) -> bytes:
        async with self._http.get(uri) as response:
            if response.status != 200:
                raise RuntimeError(f"{uri}: {response.status} {await response.text()}")
            return await response.read()

    async def play(self, enough: Callable[[], bool] = lambda: False) -> None:
        text = (await self._get(self._url)).decode()
        await self._on_init(await self._get(self._base + _map_uri(text)))
        listed = parts_of(text)
        start = max(i for i, (_, _, independent) in enumerate(listed) if independent)
        done = listed[start][0]
        await self._part(listed[start][1])
        while not enough():
            msn, part = done
            query = f"&_HLS_msn={msn}&_HLS_part={part + 1}"
            text = (await self._get(self._url + query)).decode()
            self.reloads += 1
            for number, uri, _ in parts_of(text):
                if number > done:
                    await self._part(uri)
                    done = number

    async def _part(self, uri: str) -> None:
        await self._on_part(await self._get(self._base + uri))
        self.parts += 1


def _map_uri(text: str) -> str:
    line = next(line for line in text.splitlines() if line.startswith("#EXT-X-MAP:"))
    return line.split('URI="')[1].split('"')[0]


def parts_of(text: str) -> list[tuple[tuple[int, int], str, bool]]:
    """A playlist's parts: ((msn, part), URI, independent), read from their URIs' names."""
    found = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-PART:"):
            uri = line.split('URI="')[1].split('"')[0]
            msn, part = uri.split("/")[1].split(".")[:2]
            found.append(((int(msn), int(part)), uri, "INDEPENDENT=YES" in line))
    return found


def fragments_of(part: bytes) -> list[bytes]:
    """A part's fragments (moof+mdat each), as the hub holds them."""
    found, position, start = [], 0, 0
    while position + 8 <= len(part):
        size, kind = struct.unpack_from(">I4s", part, position)
        if kind == b"moof":
            start = position
        position += max(size, 8)
        if kind == b"mdat":
            found.append(part[start:position])
    return found


async def _viewer(url: str, probe: Probe | None, viewers: list[LowLatencyViewer]) -> None:
    async def init(data: bytes) -> None:
        if probe is not None:
            probe.init(data)

    async def part(data: bytes) -> None:
        if probe is not None:
            for fragment in fragments_of(data):
                probe.fragment(fragment)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        viewer = LowLatencyViewer(http, url, init, part)
        viewers.append(viewer)
        await viewer.play()


def viewers_main(url: str, count: int, seconds: float, send: Connection) -> None:
    send.send(asyncio.run(_view(url, count, seconds)))


async def _view(url: str, count: int, seconds: float) -> dict[str, Any]:
    probe = Probe()
    viewers: list[LowLatencyViewer] = []
    tasks = [
        asyncio.create_task(_viewer(url, probe if i == 0 else None, viewers)) for i in range(count)
    ]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if not isinstance(r, asyncio.CancelledError | type(None))]
    return {
        "latencies": probe.latencies[FPS:],  # the first second is start-up
        "parts": [viewer.parts for viewer in viewers],
        "errors": [repr(error) for error in errors][:3],
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--viewers", default="1,50,200")
    parser.add_argument("--size", default="640x360")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with (
        tempfile.TemporaryDirectory() as folder,
        local_redis(Path(folder)) as redis_url,
        run_database(Path(folder)) as database_url,
    ):
        cam, cam_pipe = _spawn(camera_main, (width, height))
        camera_url = cam_pipe.recv()
        service, service_pipe = _spawn(service_main, redis_url, database_url, camera_url, folder)
        _, ws_url = service_pipe.recv()
        # benchmarks.live hands out the WebSocket link; the playlist's has the same query.
        url = ws_url.replace("ws://", "http://", 1).replace("/live/ws?", "/live.m3u8?", 1)
        time.sleep(2)
        rows = [
            "| stream | viewers | p50 s | p95 s | p99 s | samples |",
            "|---|---|---|---|---|---|",
        ]
        notes = []
        for count in (int(v) for v in args.viewers.split(",")):
            before = rss_mb(service.pid or 0)
            viewers, pipe = _spawn(viewers_main, url, count, args.seconds)
            time.sleep(args.seconds * 0.1)
            cpu = [_cpu_s(service.pid or 0), _cpu_s(viewers.pid or 0), time.monotonic()]
            time.sleep(args.seconds * 0.7)
            during = rss_mb(service.pid or 0)
            wall = time.monotonic() - cpu[2]
            service_cpu = (_cpu_s(service.pid or 0) - cpu[0]) / wall * 100
            viewers_cpu = (_cpu_s(viewers.pid or 0) - cpu[1]) / wall * 100
            result = pipe.recv()
            viewers.join()
            rows.append(_row("LL-HLS parts, decoded (probe)", count, result["latencies"]))
            parts = result["parts"] or [0]
            notes.append(
                f"{count} viewers: service RSS {before:.0f} -> {during:.0f} MB "
                f"({(during - before) / count * 1024:.0f} KiB per viewer); parts per viewer "
                f"min {min(parts)}, max {max(parts)} in {args.seconds:g} s; CPU: service "
                f"{service_cpu:.0f} %, viewers' process {viewers_cpu:.0f} % of a core; "
                f"errors {result['errors'] or 'none'}"
            )
        service_pipe.send("stop")
        service.join(30)
        cam_pipe.send("stop")
        cam.join(10)
    print("\n".join(rows))
    print("\n".join(notes))


if __name__ == "__main__":
    main()
