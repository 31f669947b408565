"""ProbeCamera and CaptureSnapshot against real streams on loopback: an HTTP server streaming an
H.264 MPEG-TS made with PyAV, a closed port, and a server that accepts and never answers."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import av
import grpc
import pytest
from google.protobuf import duration_pb2
from sparc.video.v1 import camera_pb2
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.errors import ProcessingTimeout
from sparc_video.core.settings import Settings
from sparc_video.media import probe as media_probe
from sparc_video.media.synth import read_frame_index
from tests.camera_helpers import (
    LOOPBACK_CAMERAS,
    camera_service,
    closed_port,
    expect_error,
    in_thread,
    live_stream,
    make_ts_clip,
    reason_of,
    silent_server,
    status_of,
)

Camera = camera_pb2.Camera


async def test_probe_and_snapshot_of_a_live_stream(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    clip = await in_thread(make_ts_clip, tmp_path / "live.ts")
    async with (
        camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams,
        live_stream(clip, "u", "p") as live,
    ):
        stub = cams.stub
        camera = await stub.CreateCamera(
            svc.CreateCameraRequest(
                camera_id="lobby",
                camera=Camera(
                    stream_url=live.url("/private.ts"),
                    credentials=camera_pb2.CameraCredentials(username="u", password="p"),
                ),
            )
        )
        before = time.time()
        probe = await stub.ProbeCamera(svc.ProbeCameraRequest(name=camera.name))
        assert probe.reachable and not probe.HasField("error")
        info = probe.stream_info
        assert (info.format, info.video_codec, info.width, info.height) == (
            "mpegts",
            "h264",
            320,
            240,
        )
        assert info.fps == 25 and info.audio_codec == ""
        connect_s = probe.connect_latency.ToNanoseconds() / 1e9
        latency_s = probe.latency.ToNanoseconds() / 1e9
        assert 0 < connect_s <= latency_s < 5
        assert probe.probe_time.ToNanoseconds() / 1e9 >= before - 1
        recorded = probe.camera
        assert recorded.status == Camera.STATUS_ONLINE
        assert recorded.stream_info == info and not recorded.HasField("last_error")
        assert recorded.last_seen_time.ToNanoseconds() > recorded.last_probe_time.ToNanoseconds()
        assert await stub.GetCamera(svc.GetCameraRequest(name=camera.name)) == recorded

        snapshot = await stub.CaptureSnapshot(
            svc.CaptureSnapshotRequest(name=camera.name, url_ttl=duration_pb2.Duration(seconds=60))
        )
        assert snapshot.storage_key.startswith("cameras/lobby/snapshots/")
        assert snapshot.storage_key.endswith(".jpg")
        assert (snapshot.width, snapshot.height) == (320, 240)
        assert 55 <= snapshot.expire_time.seconds - time.time() <= 61
        async with aiohttp.ClientSession() as session, session.get(snapshot.download_url) as got:
            assert got.status == 200 and got.content_type == "image/jpeg"
            jpeg = await got.read()
        assert len(jpeg) == snapshot.size_bytes and jpeg[:2] == b"\xff\xd8"
        with av.open(io.BytesIO(jpeg)) as image:
            frame = next(image.decode(video=0))
            assert (frame.width, frame.height) == (320, 240)
            # The clip numbers its frames: the snapshot is a real picture, the stream's first.
            assert read_frame_index(frame.to_ndarray(format="rgb24")) == 0

        # Disabled cameras can still be checked: that is how one is brought back into service.
        await stub.UpdateCamera(
            svc.UpdateCameraRequest(camera=Camera(name=camera.name, enabled=False))
        )
        assert (await stub.ProbeCamera(svc.ProbeCameraRequest(name=camera.name))).reachable


async def test_unreachable_cameras_are_reported_within_the_timeout(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    clip = await in_thread(make_ts_clip, tmp_path / "live.ts")
    async with (
        camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams,
        live_stream(clip, "u", "p") as live,
    ):
        stub = cams.stub

        async def probe(url: str, timeout_s: int = 5) -> svc.ProbeCameraResponse:
            camera = await stub.CreateCamera(svc.CreateCameraRequest(camera=Camera(stream_url=url)))
            return await stub.ProbeCamera(
                svc.ProbeCameraRequest(
                    name=camera.name, timeout=duration_pb2.Duration(seconds=timeout_s)
                )
            )

        refused = await probe(f"rtsp://127.0.0.1:{closed_port()}/stream1")
        assert not refused.reachable and reason_of(refused.error) == "CONNECTION_REFUSED"
        assert refused.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert "Connection refused" in refused.error.message
        assert refused.camera.status == Camera.STATUS_OFFLINE
        assert refused.camera.last_error == refused.error
        assert not refused.camera.HasField("last_seen_time")

        missing = await probe(live.url("/nothing-here.ts"))
        assert reason_of(missing.error) == "STREAM_NOT_FOUND"
        unauthorized = await probe(live.url("/private.ts"))
        assert reason_of(unauthorized.error) == "UNAUTHORIZED"
        unknown = await probe("rtsp://no-such-camera.invalid/stream1")
        assert reason_of(unknown.error) == "HOST_NOT_FOUND"

        with silent_server() as port:
            for url in (f"http://127.0.0.1:{port}/live.ts", f"rtsp://127.0.0.1:{port}/s"):
                started = time.monotonic()
                hung = await probe(url, timeout_s=1)
                elapsed = time.monotonic() - started
                assert reason_of(hung.error) == "TIMEOUT", hung.error
                assert "no picture within 1 s" in hung.error.message
                # FFmpeg's own timeouts fired (the message above), not the server's hard kill;
                # the bound only catches a probe left hanging.
                assert elapsed < 30, elapsed

            camera = await stub.CreateCamera(
                svc.CreateCameraRequest(camera=Camera(stream_url=f"http://127.0.0.1:{port}/x"))
            )
            error = await expect_error(
                stub.CaptureSnapshot(
                    svc.CaptureSnapshotRequest(
                        name=camera.name, timeout=duration_pb2.Duration(seconds=1)
                    )
                ),
                grpc.StatusCode.UNAVAILABLE,
            )
            assert reason_of(status_of(error)) == "TIMEOUT"
            after = await stub.GetCamera(svc.GetCameraRequest(name=camera.name))
            assert after.status == Camera.STATUS_OFFLINE


def children() -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found |= {int(pid) for pid in (task / "children").read_text().split()}
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return found


async def test_media_children_die_at_the_deadline_and_with_their_call(
    service_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = children()
    # No allowance for starting Python: the hard deadline passes before the child can answer.
    monkeypatch.setattr(media_probe, "STARTUP_ALLOWANCE_S", 0.0)
    prober = media_probe.MediaProber()
    read = await prober.read_stream("http://127.0.0.1:9/x.ts", 0.05)
    assert (read.ok, read.reason) == (False, "TIMEOUT")
    with pytest.raises(ProcessingTimeout):
        await prober.read_file(await in_thread(make_ts_clip, tmp_path / "clip.ts"), 0.05)
    assert children() == before
    monkeypatch.undo()

    # A client giving up cancels the RPC, which takes its media child with it.
    async with camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams:
        with silent_server() as port:
            camera = await cams.stub.CreateCamera(
                svc.CreateCameraRequest(camera=Camera(stream_url=f"rtsp://127.0.0.1:{port}/"))
            )
            before = children()
            call = asyncio.ensure_future(
                expect_error(
                    cams.stub.ProbeCamera(
                        svc.ProbeCameraRequest(
                            name=camera.name, timeout=duration_pb2.Duration(seconds=30)
                        ),
                        timeout=1.0,
                    ),
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
            )
            while not children() - before and not call.done():
                await asyncio.sleep(0.02)
            assert children() - before, "the probe started no media child"
            await call
            deadline = time.monotonic() + 5
            while children() - before and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not children() - before
