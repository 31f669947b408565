"""Live-view benchmark: glass-to-glass latency of the gRPC and WebSocket live streams with many
viewers, against reading the camera's RTSP directly in the same run.

    .venv/bin/python -m benchmarks.live [--seconds 15] [--viewers 1,50,200] [--size 640x360]

Processes: a test camera (25 fps H.264, each frame stamped with its capture time in its
pixels); the service as `dev` runs it (API server and recorder in one process sharing their
live hubs, on the Redis and PostgreSQL `benchmarks.control_plane` finds or starts, in a
database of its own); the viewers; and the reference, a PyAV RTSP client of the same camera.
For each viewer count N, N gRPC viewers read StreamCameraLive: one of them (the probe) decodes
every frame and reads its stamp, latency = clock at decode - stamped capture time; the others
record each fragment's arrival against its `capture_time`. One WebSocket viewer (the page's
feed) decodes the same way, and the reference decodes the RTSP stream directly. Also the
service's RSS growth per viewer. All clocks are this host's: the test camera's runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import socket
import struct
import tempfile
import time
import uuid
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.control_plane.processes import rss_mb
from benchmarks.control_plane.results import pct
from benchmarks.control_plane.services import local_redis, run_database

FPS = 25


def camera_main(size: tuple[int, int], send: Connection, bitrate: int | None = None) -> None:
    from sparc_video.simulator import TestCamera

    with TestCamera(size=size, fps=FPS, threads=2, bitrate=bitrate) as cam:
        send.send(cam.url)
        send.recv()


def service_main(
    redis_url: str, database_url: str, camera_url: str, root: str, send: Connection
) -> None:
    asyncio.run(_serve(redis_url, database_url, camera_url, Path(root), send))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _serve(
    redis_url: str, database_url: str, camera_url: str, root: Path, send: Connection
) -> None:
    from pydantic import SecretStr

    from sparc_video.api.server import Server
    from sparc_video.app import open_app, run_recorder
    from sparc_video.cameras.records import CameraRecord, CameraStore
    from sparc_video.core.settings import Settings
    from sparc_video.evidence.signing import new_private_key_pem
    from sparc_video.exports.holds import RecordingHolds
    from sparc_video.live.hub import LiveHubs
    from sparc_video.recording.policy import RecordingMode, RecordingPolicy, set_policy

    settings = Settings(
        redis_url=redis_url,
        redis_prefix=f"bench-live-{uuid.uuid4().hex[:8]}",
        database_url=SecretStr(database_url),
        grpc_host="127.0.0.1",
        grpc_port=0,
        http_host="127.0.0.1",
        http_port=_free_port(),
        local_storage_dir=root / "storage",
        temp_dir=root / "work",
        recorder_buffer_dir=root / "buffer",
        auth_disabled=True,
        manifest_signing_key=SecretStr(new_private_key_pem().decode()),
        camera_allowed_networks=("127.0.0.0/8",),
        recorder_poll_interval_s=0.5,
    )
    hubs = LiveHubs()
    async with open_app(settings) as app:
        store = CameraStore(app.database, RecordingHolds(app.database))
        await store.create_camera(CameraRecord(id="bench", stream_url=camera_url), "bench")
        policy = RecordingPolicy(RecordingMode.CONTINUOUS, segment_s=10.0)
        await set_policy(app.database, "bench", policy, "bench")
        server = Server(app, hubs)
        await server.start()
        stop = asyncio.Event()
        recorder = asyncio.create_task(run_recorder(settings, stop, "bench-recorder", hubs))
        for _ in range(1200):  # up to 2 minutes for the recorder to take the camera
            if "bench" in hubs and hubs.get("bench").init is not None:
                break
            await asyncio.sleep(0.1)
        links = server.live.signer.links("bench", ttl_s=3600)
        send.send((f"127.0.0.1:{server.grpc_port}", links.websocket_url))
        await asyncio.get_running_loop().run_in_executor(None, send.recv)
        stop.set()
        await recorder
        await server.stop(0)


class Probe:
    """Decodes a live stream's fragments as they come (the init's avcC configures the
    decoder; each mdat is one length-prefixed H.264 access unit) and reads each stamp."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self._ctx: Any = None

    def init(self, data: bytes) -> None:
        import av

        at = data.find(b"avcC")
        size = struct.unpack(">I", data[at - 4 : at])[0]
        self._ctx = av.CodecContext.create("h264", "r")
        self._ctx.extradata = data[at + 4 : at - 4 + size]

    def fragment(self, data: bytes) -> None:
        import av

        from sparc_video.simulator import NoStamp, read_stamp

        at = data.find(b"mdat")
        if self._ctx is None or at < 0:
            return
        for frame in self._ctx.decode(av.Packet(data[at + 4 :])):
            try:
                stamp = read_stamp(frame)
            except NoStamp:
                continue
            self.latencies.append(time.time() - stamp.capture_time_us / 1e6)


async def _grpc_viewer(target: str, probe: Probe | None, arrivals: list[float]) -> None:
    import grpc
    from sparc.video.v1 import camera_service_pb2 as svc
    from sparc.video.v1 import camera_service_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = camera_service_pb2_grpc.CameraServiceStub(channel)
        async for message in stub.StreamCameraLive(
            svc.StreamCameraLiveRequest(name="cameras/bench")
        ):
            if message.HasField("init_segment"):
                if probe is not None:
                    probe.init(message.init_segment.data)
                continue
            arrivals.append(time.time() - message.fragment.capture_time.ToNanoseconds() / 1e9)
            if probe is not None:
                probe.fragment(message.fragment.data)


async def _ws_viewer(url: str, probe: Probe) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        first = True
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                first = True
            elif message.type == aiohttp.WSMsgType.BINARY:
                (probe.init if first else probe.fragment)(message.data)
                first = False


def viewers_main(target: str, ws_url: str, count: int, seconds: float, send: Connection) -> None:
    send.send(asyncio.run(_view(target, ws_url, count, seconds)))


async def _view(target: str, ws_url: str, count: int, seconds: float) -> dict[str, Any]:
    grpc_probe, ws_probe = Probe(), Probe()
    arrivals: list[list[float]] = [[] for _ in range(count)]
    tasks = [
        asyncio.create_task(_grpc_viewer(target, grpc_probe if i == 0 else None, arrivals[i]))
        for i in range(count)
    ]
    tasks.append(asyncio.create_task(_ws_viewer(ws_url, ws_probe)))
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # The first second is start-up (connecting, the first keyframe): left out.
    skip = FPS
    return {
        "grpc": grpc_probe.latencies[skip:],
        "ws": ws_probe.latencies[skip:],
        "arrival": [x for one in arrivals for x in one[skip:]],
        "frames": [len(one) for one in arrivals],
    }


def reference_main(url: str, seconds: float, send: Connection) -> None:
    import av

    from sparc_video.simulator import NoStamp, read_stamp

    latencies: list[float] = []
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(10, 10)) as container:
        started = time.monotonic()
        for frame in container.decode(video=0):
            with contextlib.suppress(NoStamp):
                latencies.append(time.time() - read_stamp(frame).capture_time_us / 1e6)
            if time.monotonic() - started > seconds:
                break
    send.send(latencies[FPS:])


def _spawn(target: Any, *args: Any) -> tuple[multiprocessing.process.BaseProcess, Connection]:
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    process = ctx.Process(target=target, args=(*args, theirs), daemon=True)
    process.start()
    return process, mine


def _row(what: str, viewers: int, samples: list[float]) -> str:
    if not samples:
        return f"| {what} | {viewers} | - | - | - | 0 |"
    p = [f"{pct(samples, q):.3f}" for q in (0.5, 0.95, 0.99)]
    return f"| {what} | {viewers} | {' | '.join(p)} | {len(samples)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--viewers", default="1,50,200")
    parser.add_argument("--size", default="640x360")
    # The camera sends 4 Mbit/s (--bitrate 4000000); the still test picture alone far less.
    parser.add_argument("--bitrate", type=int, default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    counts = [int(v) for v in args.viewers.split(",")]
    with (
        tempfile.TemporaryDirectory() as folder,
        local_redis(Path(folder)) as redis_url,
        run_database(Path(folder)) as database_url,
    ):
        cam, cam_pipe = _spawn(partial(camera_main, bitrate=args.bitrate), (width, height))
        url = cam_pipe.recv()
        service, service_pipe = _spawn(service_main, redis_url, database_url, url, folder)
        target, ws_url = service_pipe.recv()
        time.sleep(2)  # the recorder settles (its first segment, its status)
        rows = [
            "| stream | viewers | p50 s | p95 s | p99 s | samples |",
            "|---|---|---|---|---|---|",
        ]
        memory = []
        for count in counts:
            before = rss_mb(service.pid or 0)
            viewers, viewer_pipe = _spawn(viewers_main, target, ws_url, count, args.seconds)
            reference, reference_pipe = _spawn(reference_main, url, args.seconds)
            time.sleep(args.seconds * 0.8)
            during = rss_mb(service.pid or 0)
            result, direct = viewer_pipe.recv(), reference_pipe.recv()
            viewers.join()
            reference.join()
            rows += [
                _row("gRPC, decoded (probe)", count, result["grpc"]),
                _row("gRPC, arrival (all viewers)", count, result["arrival"]),
                _row("WebSocket, decoded", count, result["ws"]),
                _row("reference: RTSP direct, decoded", count, direct),
            ]
            frames = result["frames"]
            memory.append(
                f"{count} viewers: service RSS {before:.0f} -> {during:.0f} MB "
                f"({(during - before) / (count + 1) * 1024:.0f} KiB per viewer); fragments "
                f"per gRPC viewer min {min(frames)}, max {max(frames)} in {args.seconds:g} s"
            )
        service_pipe.send("stop")
        service.join(30)
        cam_pipe.send("stop")
        cam.join(10)
    print("\n".join(rows))
    print("\n".join(memory))


if __name__ == "__main__":
    main()
