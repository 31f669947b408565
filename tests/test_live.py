"""Live view over gRPC from a real recorder reading a real test camera: the init and fragments
decode to consecutive frames, a late viewer starts at a keyframe, resumption by sequence, one
camera connection for all viewers, GetCameraLiveStream's links, and the refusals."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.settings import Settings
from sparc_video.simulator import TestCamera
from tests.camera_helpers import expect_error
from tests.live_helpers import consecutive, frame_indices, live_setup, watch
from tests.recorder_helpers import FAST
from tests.test_cli import sparc_video


def live_settings(make: Callable[..., Settings], tmp_path: Path) -> Settings:
    return make(**FAST, recorder_buffer_dir=tmp_path / "buffer")


async def test_grpc_viewers_get_decodable_frames_from_the_one_camera_connection(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with TestCamera(size=(160, 96)) as camera:
        async with live_setup(live_settings(service_settings, tmp_path), camera) as live:
            # Three viewers at once; the camera still serves the recorder alone.
            first, *others = await asyncio.gather(*(watch(live.stub, 40) for _ in range(3)))
            assert camera.playing == 1
            inits, fragments = first
            assert len(inits) == 1 and inits[0].codecs.startswith("avc1.")
            assert fragments[0].keyframe
            sequences = [f.sequence for f in fragments]
            assert all(b == a + 1 for a, b in itertools.pairwise(sequences))
            indices = frame_indices(inits[0].data + b"".join(f.data for f in fragments))
            assert len(indices) == len(fragments) and consecutive(indices), indices
            for _, more in others:
                assert more[0].keyframe
            # Capture times: receive time until the camera's clock is known, then its clock.
            stamps = [f.capture_time.ToNanoseconds() for f in fragments]
            assert all(abs(s - time.time_ns()) < 30 * 10**9 for s in stamps)

            # Resuming after the last fragment seen continues right after it.
            _, resumed = await watch(live.stub, 3, after_sequence=sequences[-1])
            assert resumed[0].sequence == sequences[-1] + 1

            # A late viewer starts at a keyframe that decodes on its own.
            late_inits, late = await watch(live.stub, 10)
            assert late[0].keyframe and late[0].sequence > sequences[0]
            late_indices = frame_indices(late_inits[0].data + b"".join(f.data for f in late))
            assert consecutive(late_indices) and late_indices[0] > indices[0]

            stream = await live.stub.GetCameraLiveStream(
                svc.GetCameraLiveStreamRequest(name="cameras/cam/liveStream")
            )
            assert stream.name == "cameras/cam/liveStream"
            assert stream.recorder == "rec-live"
            assert stream.grpc_target == live.service.target
            assert stream.page_url.startswith(live.service.http_url + "/cameras/cam/live?")
            assert stream.websocket_url.startswith("ws://") and "sig=" in stream.websocket_url
            assert stream.expire_time.seconds > 0


async def test_an_unknown_camera_or_a_wrong_name_has_no_live_stream(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """(A camera not recorded is opened on demand, and one held elsewhere refused:
    tests/test_live_on_demand.py.)"""
    with TestCamera(size=(160, 96)) as camera:
        async with live_setup(live_settings(service_settings, tmp_path), camera) as live:
            call = live.stub.StreamCameraLive(svc.StreamCameraLiveRequest(name="cameras/nobody"))
            await expect_error(_first(call), grpc.StatusCode.NOT_FOUND)
            error = await expect_error(
                live.stub.GetCameraLiveStream(svc.GetCameraLiveStreamRequest(name="cameras/cam")),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            assert error.details()


async def _first(
    call: grpc.aio.UnaryStreamCall[svc.StreamCameraLiveRequest, svc.StreamCameraLiveResponse],
) -> None:
    async for _ in call:
        break


async def test_the_cli_saves_a_playable_live_file_and_prints_the_links(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    output = tmp_path / "live.mp4"
    with TestCamera(size=(160, 96)) as camera:
        async with live_setup(live_settings(service_settings, tmp_path), camera) as live:
            target = ["--target", live.service.target]
            saved = await sparc_video(
                "camera", "live", "cam", "--output", str(output), "--seconds", "2", *target
            )
            assert saved.rc == 0, saved.stderr
            assert "frames to" in saved.stdout
            links = await sparc_video(
                "camera", "live", "cam", "--link", "--format", "json", *target
            )
            assert links.rc == 0, links.stderr
            assert links.json["pageUrl"].startswith(live.service.http_url)
            refused = await sparc_video("camera", "live", "nobody", "--link", *target)
            assert refused.rc != 0 and "nobody" in refused.stderr
    indices = await asyncio.to_thread(frame_indices, output.read_bytes())
    # Two seconds at 25 fps, from a keyframe, every frame there.
    assert len(indices) >= 25 and consecutive(indices), indices
