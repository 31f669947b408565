"""Live view from a separate `sparc-video recorder` process (the Kubernetes deployment): the
API's GetCameraLiveStream points at the address the recorder holding the camera advertises (for
a camera nobody holds, recording OFF, the recorder that opens it on demand);
StreamCameraLive there and the WebSocket behind the API-signed link deliver frames that decode;
a link signed with another key is refused."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import grpc
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from sparc.video.v1 import camera_pb2, camera_service_pb2_grpc
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.api.cameras.live import LiveEndpoints
from sparc_video.api.live_server import LiveServer
from sparc_video.cameras.records import CameraRecord
from sparc_video.core.errors import FailedPrecondition, Unavailable
from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings
from sparc_video.live.fragments import InitSegment
from sparc_video.live.hub import LiveHubs
from sparc_video.live.links import LiveLinkSigner
from sparc_video.recording.leases import LiveAddress
from sparc_video.simulator import TestCamera
from tests.auth_helpers import TOKENS, auth_settings, bearer
from tests.camera_helpers import expect_error
from tests.fixtures.redis import free_port
from tests.fixtures.service import settings_env, start_service
from tests.live_helpers import frame_indices, watch
from tests.recorder_helpers import FAST, ROOT, add_recorded_camera, start_recorder, wait_for

FRAGMENTS = 20


@pytest.mark.timeout(240)
async def test_a_separate_recorder_serves_its_cameras_live_view_at_its_advertised_address(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings(**FAST, live_link_key=SecretStr(secrets.token_hex(32)))
    grpc_port, http_port = free_port(), free_port()
    live_env = {
        "RECORDER_LIVE_GRPC_PORT": str(grpc_port),
        "RECORDER_LIVE_HTTP_PORT": str(http_port),
        "RECORDER_ADVERTISE_ADDRESS": "127.0.0.1",
    }
    with TestCamera(size=(160, 96)) as camera, TestCamera(size=(160, 96)) as idle_camera:
        async with start_service(settings, worker=False) as service:
            store = await add_recorded_camera(
                service.app.database, "cam", camera.url, segment_s=2.0
            )
            # Recording OFF: opened on demand by the recorder the API sends its viewers to.
            await store.create_camera(CameraRecord(id="idle", stream_url=idle_camera.url), "t")
            process = start_recorder(settings, tmp_path / "buffer", env=live_env)
            try:
                stub = camera_service_pb2_grpc.CameraServiceStub(service.channel)
                request = svc.GetCameraLiveStreamRequest(name="cameras/cam/liveStream")
                found: list[camera_pb2.CameraLiveStream] = []

                async def described() -> bool:
                    try:
                        found.append(await stub.GetCameraLiveStream(request))
                    except grpc.aio.AioRpcError:
                        return False  # not yet held (CAMERA_NOT_RECORDING)
                    return True

                await wait_for(described, 90, "GetCameraLiveStream answers for the recorder")
                stream = found[-1]
                assert stream.grpc_target == f"127.0.0.1:{grpc_port}"
                assert stream.recorder
                base = f"http://127.0.0.1:{http_port}/cameras/cam/live?"
                assert stream.page_url.startswith(base)
                ws_url = stream.websocket_url
                assert ws_url.startswith(f"ws://127.0.0.1:{http_port}/cameras/cam/live/ws?")

                async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                    inits, got = await watch(
                        camera_service_pb2_grpc.CameraServiceStub(channel), FRAGMENTS
                    )
                data = inits[0].data + b"".join(f.data for f in got)
                assert len(frame_indices(data)) == FRAGMENTS

                async with aiohttp.ClientSession() as http:
                    async with http.ws_connect(ws_url) as ws:
                        hello = json.loads(await ws.receive_str(timeout=30))
                        assert hello["type"] == "init"
                        parts = [await ws.receive_bytes(timeout=30) for _ in range(FRAGMENTS + 1)]
                    assert len(frame_indices(b"".join(parts))) == FRAGMENTS

                    stranger = LiveLinkSigner(f"http://127.0.0.1:{http_port}", b"k" * 32)
                    forged = stranger.links("cam")
                    for url in (forged.page_url, forged.hls_url):
                        async with http.get(url) as answer:
                            assert answer.status == 403, (url, answer.status)
                idle = await stub.GetCameraLiveStream(
                    svc.GetCameraLiveStreamRequest(name="cameras/idle/liveStream")
                )
                assert (idle.grpc_target, idle.recorder) == (stream.grpc_target, stream.recorder)
                assert idle_camera.total_plays == 0  # nobody watches yet
                async with grpc.aio.insecure_channel(idle.grpc_target) as channel:
                    stub_there = camera_service_pb2_grpc.CameraServiceStub(channel)
                    inits, got = await watch(stub_there, FRAGMENTS, name="cameras/idle")
                assert len(frame_indices(inits[0].data + b"".join(f.data for f in got))) > 0
                assert idle_camera.total_plays == 1
                process.terminate()
                assert await asyncio.to_thread(process.wait, 60) == 0
                # Stopped, it no longer advertises where it served.
                redis = aioredis.Redis.from_url(settings.redis_url)
                keys = Keys(settings.redis_prefix)
                assert not await redis.keys(keys.recorder_live_address("*"))
                await redis.aclose()
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()


async def test_a_camera_whose_recorder_serves_no_live_view_is_unavailable() -> None:
    """Held by a recorder that advertises no live address (no live ports, or just died)."""
    live = LiveEndpoints(LiveHubs(), LiveLinkSigner("http://127.0.0.1:1", b"k" * 32))
    with pytest.raises(Unavailable) as raised:
        await live.describe("cam", "rec-1", None)
    assert raised.value.reason == "LIVE_VIEW_UNREACHABLE" and "rec-1" in raised.value.message
    with pytest.raises(FailedPrecondition):  # held by no recorder: CAMERA_NOT_RECORDING
        await live.describe("cam", "", None)
    there = await live.describe("cam", "rec-1", LiveAddress("rec-1.r:50052", "http://rec-1.r:8081"))
    assert there.grpc_target == "rec-1.r:50052"
    assert there.hls_url.startswith("http://rec-1.r:8081/cameras/cam/live.m3u8?")


def test_a_live_recorder_on_s3_storage_refuses_to_start_without_the_shared_link_key(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Pods sharing no directory would each keep a link key: every API link refused."""
    env = {
        **settings_env(service_settings()),
        "PATH": "/usr/bin:/bin",
        "S3_BUCKET": "recordings",
        "RECORDER_METRICS_PORT": "0",
        "RECORDER_LIVE_GRPC_PORT": str(free_port()),
        "RECORDER_LIVE_HTTP_PORT": str(free_port()),
    }
    env.pop("LIVE_LINK_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "sparc_video.cli", "recorder"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert b"LIVE_LINK_KEY" in done.stderr, done.stderr[-2000:]


async def test_the_recorders_live_port_takes_the_apis_authentication_and_roles(
    service_settings: Callable[..., Settings],
) -> None:
    settings = auth_settings(
        service_settings,
        grpc_host="127.0.0.1",
        recorder_live_grpc_port=free_port(),
        recorder_live_http_port=free_port(),
        recorder_advertise_address="127.0.0.1",
    )
    hubs = LiveHubs()
    hubs.open("cam").publish_init(InitSegment(b"init", "avc1.42C01E"))
    server = LiveServer(settings, hubs)
    address = await server.start()
    try:
        async with grpc.aio.insecure_channel(address.grpc_target) as channel:
            stub = camera_service_pb2_grpc.CameraServiceStub(channel)
            request = svc.StreamCameraLiveRequest(name="cameras/cam")

            async def first(metadata: tuple[tuple[str, str], ...]) -> svc.StreamCameraLiveResponse:
                call = stub.StreamCameraLive(request, metadata=metadata, timeout=30)
                async for message in call:
                    call.cancel()
                    return message
                raise AssertionError("the stream ended without a message")

            await expect_error(first(()), grpc.StatusCode.UNAUTHENTICATED)
            message = await first(bearer(TOKENS["viewer-1"][1]))
            assert message.init_segment.data == b"init"
            # Only live view is served here; the camera catalogue is the API's.
            await expect_error(
                stub.GetCamera(
                    svc.GetCameraRequest(name="cameras/cam"),
                    metadata=bearer(TOKENS["admin-1"][1]),
                ),
                grpc.StatusCode.UNIMPLEMENTED,
            )
    finally:
        await server.stop(0)
