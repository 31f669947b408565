"""A recorder's live server: its cameras' live view where viewers reach it directly.

`sparc-video recorder` holds its cameras' hubs in its own process, so it serves them itself
(docs/live.md, "Deployment"): StreamCameraLive on RECORDER_LIVE_GRPC_PORT, behind the API's
interceptors (authentication, roles, errors, metrics), and the browser page, its WebSocket and
LL-HLS on RECORDER_LIVE_HTTP_PORT, checking links the API signed with the shared LIVE_LINK_KEY.
It advertises where it listens (`LiveAddress`) beside its lease membership; GetCameraLiveStream
on the API points viewers there. Every other method answers UNIMPLEMENTED here.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc
from aiohttp import web
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.api.cameras.live import LiveEndpoints
from sparc_video.api.common import parse_camera_name
from sparc_video.api.live_hls import hls_routes
from sparc_video.api.live_http import live_routes
from sparc_video.api.server import CAMERA_SERVICE, SHUTDOWN_GRACE_S, interceptors, listen
from sparc_video.core.settings import Settings
from sparc_video.live.hub import LiveHubs
from sparc_video.live.links import LiveLinkSigner
from sparc_video.recording.leases import LiveAddress
from sparc_video.security.auth import Authenticator

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[object, object]


class LiveServicer:
    """StreamCameraLive for the cameras this recorder holds (the camera exists: it records)."""

    def __init__(self, live: LiveEndpoints) -> None:
        self._live = live

    async def StreamCameraLive(
        self, request: svc.StreamCameraLiveRequest, context: Context
    ) -> AsyncIterator[svc.StreamCameraLiveResponse]:
        camera_id = parse_camera_name(request.name)
        async with aclosing(self._live.stream(camera_id, request.after_sequence)) as messages:
            async for message in messages:
                yield message


class LiveServer:
    def __init__(self, settings: Settings, hubs: LiveHubs) -> None:
        self._settings = settings
        host = settings.recorder_advertise_address or socket.gethostname()
        self._host = host
        base_url = f"http://{host}:{settings.recorder_live_http_port}"
        self.live = LiveEndpoints(hubs, LiveLinkSigner.from_settings(settings, base_url))
        self._grpc = grpc.aio.server(
            interceptors=interceptors(settings, Authenticator(settings), None),
            options=[("grpc.so_reuseport", 0)],
        )
        # Only StreamCameraLive, under its CameraService name: the same clients and roles.
        stream = grpc.unary_stream_rpc_method_handler(
            LiveServicer(self.live).StreamCameraLive,
            request_deserializer=svc.StreamCameraLiveRequest.FromString,
            response_serializer=svc.StreamCameraLiveResponse.SerializeToString,
        )
        self._grpc.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(CAMERA_SERVICE, {"StreamCameraLive": stream}),)
        )
        self._http: web.AppRunner | None = None
        self.grpc_port = 0
        self.http_port = 0

    async def start(self) -> LiveAddress:
        """Listen on both ports; where viewers reach them."""
        settings = self._settings
        self.grpc_port = listen(self._grpc, settings, settings.recorder_live_grpc_port)
        await self._grpc.start()
        app = web.Application()
        app.add_routes(live_routes(self.live))
        app.add_routes(hls_routes(self.live))
        self._http = web.AppRunner(app)
        await self._http.setup()
        site = web.TCPSite(self._http, settings.http_host, settings.recorder_live_http_port)
        await site.start()
        self.http_port = self._http.addresses[0][1]
        address = LiveAddress(
            f"{self._host}:{self.grpc_port}", f"http://{self._host}:{self.http_port}"
        )
        log.info("serving live view: gRPC %s, HTTP %s", address.grpc_target, address.http_base_url)
        return address

    async def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        await self._grpc.stop(grace_s)
        if self._http is not None:
            await self._http.cleanup()
