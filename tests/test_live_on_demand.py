"""Live view on demand from a real recorder: a camera whose recording is OFF is opened for its
viewers (one connection however many), closed LIVE_LINGER after the last leaves with nothing
recorded, the same for a browser's WebSocket, recorded in place when recording is turned on
meanwhile; an unreachable camera's viewers are told why, and a camera another recorder holds
is not opened a second time."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
import redis.asyncio as aioredis
from sparc.video.v1 import camera_service_pb2 as svc
from sparc.video.v1 import camera_service_pb2_grpc

from sparc_video.cameras.records import CameraRecord, CameraStore
from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings
from sparc_video.exports.holds import RecordingHolds
from sparc_video.live.hub import LiveHubs, LiveUnavailable, NotRecordingHere
from sparc_video.recording.policy import RecordingMode, RecordingPolicy, set_policy
from sparc_video.recording.recorder import Recorder
from sparc_video.simulator import TestCamera
from sparc_video.storage import LocalStorage
from tests.camera_helpers import expect_error, reason_of, status_of
from tests.fixtures.redis import free_port
from tests.fixtures.service import RunningService, start_service
from tests.live_helpers import consecutive, frame_indices, watch
from tests.recorder_helpers import FAST, running_recorder, wait_for

LINGER_S = 3.0
# How long a let-go may take past the linger: a recorder round, the ingest thread's stop.
DEADLINE_S = 20.0


@dataclass
class OnDemand:
    service: RunningService
    stub: camera_service_pb2_grpc.CameraServiceStub
    store: CameraStore
    recorder: Recorder


@contextlib.asynccontextmanager
async def on_demand(
    make: Callable[..., Settings], tmp_path: Path, url: str
) -> AsyncIterator[OnDemand]:
    """A service and its recorder sharing hubs (as `dev` runs them) and `cameras/cam` at
    `url`, its recording OFF with 1 s segments (were it turned on)."""
    settings = make(**FAST, recorder_buffer_dir=tmp_path / "buffer", live_linger_s=LINGER_S)
    hubs = LiveHubs()
    async with start_service(settings, worker=False, live=hubs) as service:
        database = service.app.database
        store = CameraStore(database, RecordingHolds(database))
        await store.create_camera(CameraRecord(id="cam", stream_url=url), "alice")
        await set_policy(database, "cam", RecordingPolicy(RecordingMode.OFF, 1.0), "alice")
        storage = LocalStorage.from_settings(settings)
        async with running_recorder(settings, database, storage, "rec-demand", live=hubs) as rec:
            stub = camera_service_pb2_grpc.CameraServiceStub(service.channel)
            yield OnDemand(service, stub, store, rec)


async def test_a_camera_not_recorded_opens_once_for_its_viewers_and_closes_after_them(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with TestCamera(size=(160, 96)) as camera:
        async with on_demand(service_settings, tmp_path, camera.url) as live:
            stream = await live.stub.GetCameraLiveStream(
                svc.GetCameraLiveStreamRequest(name="cameras/cam/liveStream")
            )
            assert stream.recorder == "rec-demand" and "sig=" in stream.page_url
            (inits, fragments), _ = await asyncio.gather(watch(live.stub, 40), watch(live.stub, 40))
            indices = frame_indices(inits[0].data + b"".join(f.data for f in fragments))
            assert consecutive(indices), indices
            # Two viewers and the links, one camera connection.
            assert camera.total_plays == 1
            assert live.recorder.live_only == {"cam"}

            async def closed() -> bool:
                return camera.playing == 0 and not live.recorder.live_only

            await wait_for(closed, LINGER_S + DEADLINE_S, "the connection closes after the linger")
            assert await live.store.all_recordings("cam") == []
            status = await live.stub.GetCamera(svc.GetCameraRequest(name="cameras/cam"))
            assert status.recording_status.state == status.recording_status.STATE_OFF

            # A viewer coming back opens it again.
            await watch(live.stub, 5)
            assert camera.total_plays == 2


async def test_a_browser_websocket_opens_a_camera_not_recorded(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with TestCamera(size=(160, 96)) as camera:
        async with on_demand(service_settings, tmp_path, camera.url) as live:
            # A link signed here, so the WebSocket (not GetCameraLiveStream) asks for the camera.
            links = live.service.server.live.signer.links("cam")
            async with aiohttp.ClientSession() as http, http.ws_connect(links.websocket_url) as ws:
                hello = json.loads(await ws.receive_str(timeout=40))
                assert hello["type"] == "init"
                data = [await ws.receive_bytes(timeout=30) for _ in range(11)]
            assert consecutive(frame_indices(b"".join(data)))
            assert camera.total_plays == 1
            # The browser closed its socket: it no longer counts as a viewer.
            await wait_for(lambda: _closed(camera), LINGER_S + DEADLINE_S, "the camera closes")


async def test_recording_turned_on_while_watched_keeps_the_connection(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with TestCamera(size=(160, 96)) as camera:
        async with on_demand(service_settings, tmp_path, camera.url) as live:
            viewer = asyncio.create_task(watch(live.stub, 10**6))
            await wait_for(lambda: _playing(camera), 60, "the camera opens for the viewer")
            database = live.service.app.database
            on = RecordingPolicy(RecordingMode.CONTINUOUS, 1.0)
            await set_policy(database, "cam", on, "alice")

            async def recorded() -> bool:
                return bool(await live.store.all_recordings("cam"))

            await wait_for(recorded, 60, "a segment is recorded")
            assert camera.total_plays == 1 and not live.recorder.live_only
            assert not viewer.done()
            viewer.cancel()
            await asyncio.gather(viewer, return_exceptions=True)


async def test_recording_turned_on_with_another_segment_length_hands_over(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with TestCamera(size=(160, 96)) as camera:
        async with on_demand(service_settings, tmp_path, camera.url) as live:
            viewer = asyncio.create_task(watch(live.stub, 10**6))
            await wait_for(lambda: _playing(camera), 60, "the camera opens for the viewer")
            on = RecordingPolicy(RecordingMode.CONTINUOUS, 2.0)
            await set_policy(live.service.app.database, "cam", on, "alice")

            async def recorded() -> bool:
                return bool(await live.store.all_recordings("cam"))

            await wait_for(recorded, 60, "a segment is recorded")
            # A second connection replaced the first; the viewer's stream ended.
            assert camera.total_plays == 2 and camera.playing == 1
            error = await expect_error(viewer, grpc.StatusCode.UNAVAILABLE)
            assert reason_of(status_of(error)) == "LIVE_STREAM_ENDED"


async def _closed(camera: TestCamera) -> bool:
    return camera.playing == 0


async def _playing(camera: TestCamera) -> bool:
    return camera.playing == 1


async def test_an_unreachable_camera_is_unavailable_with_the_reason(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/stream"
    async with on_demand(service_settings, tmp_path, url) as live:
        call = live.stub.StreamCameraLive(svc.StreamCameraLiveRequest(name="cameras/cam"))
        error = await expect_error(_first(call), grpc.StatusCode.UNAVAILABLE)
        assert reason_of(status_of(error)) == "CAMERA_UNAVAILABLE"
        assert "unreachable" in (error.details() or "") or "cannot" in (error.details() or "")
        await wait_for(lambda: _released(live.recorder), 30, "the failed camera is let go")


async def _released(recorder: Recorder) -> bool:
    return not recorder.supervisors


async def test_a_camera_held_by_another_recorder_is_not_opened_again(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with TestCamera(size=(160, 96)) as camera:
        async with on_demand(service_settings, tmp_path, camera.url) as live:
            settings = live.service.settings
            redis = aioredis.Redis.from_url(settings.redis_url)
            lease = Keys(settings.redis_prefix).recorder_lease("cam")
            await redis.set(lease, "rec-elsewhere", px=60_000)
            try:
                error = await expect_error(
                    live.stub.GetCameraLiveStream(
                        svc.GetCameraLiveStreamRequest(name="cameras/cam/liveStream")
                    ),
                    grpc.StatusCode.FAILED_PRECONDITION,
                )
            finally:
                await redis.delete(lease)
                await redis.aclose()
            assert reason_of(status_of(error)) == "CAMERA_NOT_RECORDING"
            assert "rec-elsewhere" in (error.details() or "")
            assert camera.total_plays == 0


async def _first(
    call: grpc.aio.UnaryStreamCall[svc.StreamCameraLiveRequest, svc.StreamCameraLiveResponse],
) -> None:
    async for _ in call:
        break


async def test_hubs_attach_asks_the_opener_once_and_passes_on_its_answer() -> None:
    hubs = LiveHubs()
    with pytest.raises(NotRecordingHere):  # no recorder here: nothing opens on demand
        await hubs.attach("cam")
    asked: list[str] = []
    hubs.set_opener("rec", asked.append)
    waiting = [asyncio.create_task(hubs.attach("cam")) for _ in range(2)]
    await wait_for(lambda: _true(asked == ["cam"]), 5, "the opener is asked once")
    hub = hubs.open("cam")
    assert [await w for w in waiting] == [hub, hub]
    assert hub.viewers == 0 and hub.idle_s >= 0
    refused = asyncio.create_task(hubs.attach("other"))
    await wait_for(lambda: _true("other" in asked), 5, "the opener is asked for another")
    hubs.refuse("other", NotRecordingHere("held elsewhere"))
    with pytest.raises(NotRecordingHere):
        await refused
    with pytest.raises(LiveUnavailable):
        await hubs.attach("silent", timeout_s=0.05)
    hub.close(LiveUnavailable("camera unreachable"))
    with pytest.raises(LiveUnavailable):
        await hub.started()


async def _true(value: bool) -> bool:
    return value
