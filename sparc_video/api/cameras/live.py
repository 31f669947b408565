"""Live view as the API serves it: the hubs of this process (fed by its recorder, `dev`), else
the address of the recorder process holding the camera; the signer of browser links, and the
conversions of what a hub yields to StreamCameraLive messages. A recorder's own live server
(`api/live_server.py`) uses the same object for its hubs."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from google.protobuf import timestamp_pb2
from sparc.video.v1 import camera_pb2, camera_service_pb2

from sparc_video.api.common import parse_camera_name, timestamp
from sparc_video.core.errors import FieldViolation, InvalidArgument, Unavailable
from sparc_video.live.fragments import InitSegment
from sparc_video.live.hub import LiveHubs, SequencedFragment
from sparc_video.live.links import LiveLinkSigner
from sparc_video.recording.leases import LiveAddress


class RecorderServesNoLive(Unavailable):
    reason = "LIVE_VIEW_UNREACHABLE"


@dataclass
class LiveEndpoints:
    hubs: LiveHubs
    signer: LiveLinkSigner
    # host:port of this gRPC server as clients reach it (set once the server listens).
    grpc_target: str = field(default="")

    def set_grpc_port(self, host: str, port: int) -> None:
        """A wildcard listen address is no target: the HTTP base URL's host is used then."""
        if host in ("", "0.0.0.0", "::", "[::]"):
            host = urlsplit(self.signer.base_url).hostname or "127.0.0.1"
        self.grpc_target = f"{host}:{port}"

    async def describe(
        self, camera_id: str, recorder_id: str, address: LiveAddress | None
    ) -> camera_pb2.CameraLiveStream:
        """The camera's live stream. `recorder_id`: the recorder holding the camera, `address`:
        where it serves live view. Served here when this process's recorder holds it (`dev`),
        once its first picture came (a camera whose recording is OFF is opened on demand;
        LIVE_LINGER keeps it open for the links' first viewer); else at `address`.
        CAMERA_NOT_RECORDING when no recorder holds it and none here can open it,
        LIVE_VIEW_UNREACHABLE when its recorder serves no live view."""
        here = camera_id in self.hubs or recorder_id in ("", self.hubs.recorder_id)
        grpc_target, base_url = self.grpc_target, ""
        if here or (address is None and self.hubs.recorder_id):
            hub = await self.hubs.attach(camera_id)  # a recorder here names the other holder
            await hub.started()
            recorder_id = recorder_id or self.hubs.recorder_id
        elif address is None:
            raise RecorderServesNoLive(
                f"camera {camera_id} is held by recorder {recorder_id}, which serves no live "
                "view (RECORDER_LIVE_GRPC_PORT and RECORDER_LIVE_HTTP_PORT unset) or has "
                "stopped; try again shortly"
            )
        else:
            grpc_target, base_url = address.grpc_target, address.http_base_url
        links = self.signer.links(camera_id, base_url=base_url)
        return camera_pb2.CameraLiveStream(
            name=f"cameras/{camera_id}/liveStream",
            grpc_target=grpc_target,
            recorder=recorder_id,
            page_url=links.page_url,
            websocket_url=links.websocket_url,
            hls_url=links.hls_url,
            expire_time=timestamp(links.expires),
        )

    async def stream(
        self, camera_id: str, after_sequence: int
    ) -> AsyncGenerator[camera_service_pb2.StreamCameraLiveResponse, None]:
        hub = await self.hubs.attach(camera_id)
        async with aclosing(hub.watch(after_sequence)) as items:
            async for item in items:
                yield to_message(item)


def to_message(
    item: InitSegment | SequencedFragment,
) -> camera_service_pb2.StreamCameraLiveResponse:
    if isinstance(item, InitSegment):
        return camera_service_pb2.StreamCameraLiveResponse(
            init_segment=camera_service_pb2.LiveInitSegment(data=item.data, codecs=item.codecs)
        )
    capture = timestamp_pb2.Timestamp()
    capture.FromNanoseconds(item.fragment.capture_ns)
    return camera_service_pb2.StreamCameraLiveResponse(
        fragment=camera_service_pb2.LiveFragment(
            sequence=item.sequence,
            data=item.fragment.data,
            keyframe=item.fragment.keyframe,
            capture_time=capture,
        )
    )


def parse_live_stream_name(name: str) -> str:
    """`cameras/{camera}/liveStream` → camera id."""
    camera, suffix = name.rsplit("/", 1) if name.count("/") == 2 else (name, "")
    if suffix != "liveStream":
        raise InvalidArgument(
            [
                FieldViolation(
                    "name", f"{name[:200]!r} is not a name such as cameras/dock-1/liveStream"
                )
            ]
        )
    return parse_camera_name(camera)
