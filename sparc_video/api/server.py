"""Build, start and gracefully stop the gRPC server and its HTTP side port."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from sparc.video.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    camera_service_pb2,
    camera_service_pb2_grpc,
    export_service_pb2,
    export_service_pb2_grpc,
    upload_service_pb2,
    upload_service_pb2_grpc,
)

from sparc_video.api.audit.handlers import AuditServicer
from sparc_video.api.auth_interceptor import AuthInterceptor
from sparc_video.api.cameras.handlers import CameraServicer
from sparc_video.api.cameras.live import LiveEndpoints
from sparc_video.api.exports.handlers import ExportServicer
from sparc_video.api.health import HealthMonitor
from sparc_video.api.http import build_http_app
from sparc_video.api.interceptors import ObservabilityInterceptor, tracing_interceptor
from sparc_video.api.request_decoding import RequestDecodingInterceptor
from sparc_video.api.service_metrics import ServiceCollector
from sparc_video.api.status import ErrorInterceptor
from sparc_video.api.uploads.handlers import UploadServicer
from sparc_video.app import App, open_app
from sparc_video.core.errors import Unavailable
from sparc_video.core.settings import Settings
from sparc_video.live.hub import LiveHubs
from sparc_video.live.links import LiveLinkSigner
from sparc_video.observability.metrics import StorageUsage
from sparc_video.security.auth import Authenticator
from sparc_video.security.quota import RateLimiter

log = logging.getLogger(__name__)

EXPORT_SERVICE = export_service_pb2.DESCRIPTOR.services_by_name["ExportService"].full_name
CAMERA_SERVICE = camera_service_pb2.DESCRIPTOR.services_by_name["CameraService"].full_name
UPLOAD_SERVICE = upload_service_pb2.DESCRIPTOR.services_by_name["UploadService"].full_name
AUDIT_SERVICE = audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
SHUTDOWN_GRACE_S = 10.0


def interceptors(
    settings: Settings, authenticator: Authenticator, limiter: RateLimiter | None
) -> list[grpc.aio.ServerInterceptor]:
    """Outermost first. Tracing and metrics see the final status of every call, the error
    interceptor turns whatever a handler or authentication raises into it. The API's server
    and a recorder's live server (`live_server.py`) both use these."""
    return [
        tracing_interceptor(),
        ObservabilityInterceptor(),
        ErrorInterceptor(),
        AuthInterceptor(authenticator, limiter, reflection=settings.grpc_reflection),
        # Innermost: it replaces how the request is decoded (see its module).
        RequestDecodingInterceptor(),
    ]


def listen(server: grpc.aio.Server, settings: Settings, port: int) -> int:
    """Add GRPC_HOST:`port` to `server`, over TLS when TLS_CERT is set; the port bound."""
    address = f"{settings.grpc_host}:{port}"
    if settings.tls_cert:
        credentials = grpc.ssl_server_credentials(
            [(settings.tls_key, settings.tls_cert)],
            root_certificates=settings.tls_client_ca or None,
            require_client_auth=bool(settings.tls_client_ca) and settings.tls_require_client_cert,
        )
        bound = server.add_secure_port(address, credentials)
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on gRPC port {port} (in use?)")
    return bound


class Server:
    """The gRPC API plus the HTTP port, sharing one App (clients)."""

    def __init__(self, app: App, live: LiveHubs | None = None) -> None:
        """`live`: the hubs of a recorder running in this process (`dev`), whose cameras'
        live view this server serves; without, every camera's live view is refused here."""
        self.app = app
        settings = app.settings
        self.live = LiveEndpoints(
            live or LiveHubs(), LiveLinkSigner.from_settings(settings, settings.http_base_url)
        )
        # Refuses (AuthNotConfigured) a server that would serve anyone without saying so.
        authenticator = Authenticator(settings)
        limiter = (
            RateLimiter(app.redis, app.store.keys, settings.quota_requests_per_minute)
            if settings.quota_requests_per_minute
            else None
        )
        self._grpc = grpc.aio.server(
            interceptors=interceptors(settings, authenticator, limiter),
            options=[
                # GRPC_MAX_MESSAGE_SIZE: a larger request is refused by gRPC itself with
                # RESOURCE_EXHAUSTED ("received message larger than max") before any handler.
                ("grpc.max_receive_message_length", app.settings.grpc_max_message_bytes),
                ("grpc.max_send_message_length", app.settings.grpc_max_message_bytes),
                ("grpc.so_reuseport", 0),
                # Calls the event loop has not taken up yet. gRPC's defaults (1,000, hard 3,000)
                # cancel calls of a burst such as thousands of watchers reconnecting after a
                # deploy; each waiting call costs a few hundred bytes.
                ("grpc.server.max_pending_requests", 20_000),
                ("grpc.server.max_pending_requests_hard_limit", 40_000),
            ],
        )
        self._health_servicer = HealthServicer()
        self.health = HealthMonitor(
            app,
            self._health_servicer,
            [EXPORT_SERVICE, CAMERA_SERVICE, UPLOAD_SERVICE, AUDIT_SERVICE],
        )
        self.metrics = ServiceCollector(
            app.store,
            StorageUsage(app.redis, app.store.keys),
            app.settings.storage_backend,
            self.health.results,
            app.storage,
            app.signer.verification_keys,
        )
        export_service_pb2_grpc.add_ExportServiceServicer_to_server(
            ExportServicer(app.exports, app.signer), self._grpc
        )
        camera_service_pb2_grpc.add_CameraServiceServicer_to_server(
            CameraServicer(app.cameras, app.recordings, app.recording, self.live), self._grpc
        )
        upload_service_pb2_grpc.add_UploadServiceServicer_to_server(
            UploadServicer(app.uploads), self._grpc
        )
        audit_service_pb2_grpc.add_AuditServiceServicer_to_server(
            AuditServicer(app.audit), self._grpc
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health_servicer, self._grpc)
        if settings.grpc_reflection != "off":
            reflection.enable_server_reflection(
                [
                    EXPORT_SERVICE,
                    CAMERA_SERVICE,
                    UPLOAD_SERVICE,
                    AUDIT_SERVICE,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ],
                self._grpc,
            )
        self._http_runner: web.AppRunner | None = None
        self.grpc_port = 0

    async def start(self) -> None:
        settings = self.app.settings
        self.grpc_port = listen(self._grpc, settings, settings.grpc_port)
        self.live.set_grpc_port(settings.grpc_host, self.grpc_port)
        await self.health.start()
        await self._grpc.start()
        self._http_runner = web.AppRunner(
            build_http_app(self.health, self.app.storage, self.metrics, self.live)
        )
        await self._http_runner.setup()
        await web.TCPSite(self._http_runner, settings.http_host, settings.http_port).start()
        log.info(
            "serving gRPC%s on port %d and HTTP on port %d (storage: %s)",
            " over TLS" if settings.tls_cert else "",
            self.grpc_port,
            settings.http_port,
            settings.storage_backend,
        )
        if settings.auth_disabled:
            log.warning(
                "AUTH_DISABLED=true: no authentication, every caller is the local admin "
                "principal; never expose this port"
            )

    async def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        # NOT_SERVING first so load balancers stop routing here while calls drain. Watch streams
        # would otherwise hold the grace period open: end them with UNAVAILABLE, which clients
        # treat as "reconnect (elsewhere) and resume after the last event id".
        await self.health.shutdown()
        self.app.hub.end_watches(
            Unavailable("the server is shutting down; reconnect and resume with after_event_id")
        )
        await self._grpc.stop(grace_s)
        if self._http_runner is not None:
            await self._http_runner.cleanup()


async def serve(
    settings: Settings, stop: asyncio.Event | None = None, live: LiveHubs | None = None
) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then shut down gracefully. `live`: see
    Server."""
    Authenticator(settings)  # no auth configured: refuse before connecting to anything
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_app(settings) as app:
        server = Server(app, live)
        await server.start()
        await stop.wait()
        log.info("shutting down")
        await server.stop()
