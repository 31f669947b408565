"""What the live-view tests share: a service and recorder sharing live hubs over a test camera,
reading StreamCameraLive, and decoding what a viewer received with PyAV (each picture's stamp
tells which frame it is)."""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import av
from sparc.video.v1 import camera_service_pb2 as svc
from sparc.video.v1 import camera_service_pb2_grpc

from sparc_video.core.settings import Settings
from sparc_video.live.hub import LiveHubs
from sparc_video.simulator import NoStamp, TestCamera, read_stamp
from sparc_video.storage import LocalStorage
from tests.fixtures.service import RunningService, start_service
from tests.recorder_helpers import add_recorded_camera, running_recorder, wait_for


def frame_indices(data: bytes) -> list[int]:
    """The test camera's frame index of each picture decoded from an fMP4 byte string (a
    picture without a readable stamp counts as -1)."""
    found = []
    with av.open(io.BytesIO(data), "r", format="mp4") as container:
        for frame in container.decode(video=0):
            try:
                found.append(read_stamp(frame).index)
            except NoStamp:
                found.append(-1)
    return found


def consecutive(indices: list[int]) -> bool:
    return bool(indices) and all(b == a + 1 for a, b in itertools.pairwise(indices))


@dataclass
class LiveSetup:
    """A service and a recorder in this process sharing live hubs (as `dev` runs them), and a
    test camera recorded as `cameras/cam`."""

    service: RunningService
    stub: camera_service_pb2_grpc.CameraServiceStub
    hubs: LiveHubs
    camera: TestCamera


@contextlib.asynccontextmanager
async def live_setup(settings: Settings, camera: TestCamera) -> AsyncIterator[LiveSetup]:
    hubs = LiveHubs()
    async with start_service(settings, worker=False, live=hubs) as service:
        storage = LocalStorage.from_settings(settings)
        await add_recorded_camera(service.app.database, "cam", camera.url, segment_s=2.0)
        async with running_recorder(settings, service.app.database, storage, "rec-live", live=hubs):
            await wait_for(lambda: _live(hubs), 60, "the camera's live view begins")
            stub = camera_service_pb2_grpc.CameraServiceStub(service.channel)
            yield LiveSetup(service, stub, hubs, camera)


async def _live(hubs: LiveHubs) -> bool:
    return "cam" in hubs and hubs.get("cam").init is not None


async def watch(
    stub: camera_service_pb2_grpc.CameraServiceStub,
    fragments: int,
    after_sequence: int = 0,
    name: str = "cameras/cam",
) -> tuple[list[svc.LiveInitSegment], list[svc.LiveFragment]]:
    """Read StreamCameraLive until `fragments` fragments came: (inits, fragments)."""
    inits: list[svc.LiveInitSegment] = []
    got: list[svc.LiveFragment] = []
    call = stub.StreamCameraLive(
        svc.StreamCameraLiveRequest(name=name, after_sequence=after_sequence)
    )
    async for message in call:
        if message.HasField("init_segment"):
            inits.append(message.init_segment)
        else:
            got.append(message.fragment)
            if len(got) >= fragments:
                break
    call.cancel()
    return inits, got
