"""The HTTP port: Prometheus /metrics, /health (readiness), /healthz (liveness), local downloads,
live view for browsers (`live_http.py`) and HLS players (`live_hls.py`)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from sparc_video.api.cameras.live import LiveEndpoints
from sparc_video.api.health import HealthMonitor
from sparc_video.api.live_hls import hls_routes
from sparc_video.api.live_http import live_routes
from sparc_video.api.service_metrics import ServiceCollector
from sparc_video.storage import Storage
from sparc_video.storage.http_routes import local_download_routes, local_upload_routes
from sparc_video.storage.local import LocalStorage


def build_http_app(
    health: HealthMonitor,
    storage: Storage,
    service_metrics: ServiceCollector | None = None,
    live: LiveEndpoints | None = None,
) -> web.Application:
    # This server's own series (process-wide registry) plus the shared ones read from Redis,
    # which live in a registry of their own so several servers in one process never collide.
    shared = CollectorRegistry()
    if service_metrics is not None:
        shared.register(service_metrics)

    async def metrics(_: web.Request) -> web.Response:
        if service_metrics is not None:
            await service_metrics.refresh()
        body = generate_latest(REGISTRY) + generate_latest(shared)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def readiness(_: web.Request) -> web.Response:
        return web.json_response(health.report(), status=200 if health.healthy else 503)

    async def liveness(_: web.Request) -> web.Response:
        # Only says the process is alive: a Redis blip must not get the pod killed.
        return web.json_response({"status": "alive"})

    app = web.Application()
    app.add_routes(
        [
            web.get("/metrics", metrics),
            web.get("/health", readiness),
            web.get("/healthz", liveness),
        ]
    )
    if live is not None:
        app.add_routes(live_routes(live))
        app.add_routes(hls_routes(live))
    if isinstance(storage, LocalStorage):
        app.add_routes(local_download_routes(storage))
        app.add_routes(local_upload_routes(storage))
    return app
