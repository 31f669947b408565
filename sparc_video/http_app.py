"""The HTTP port: Prometheus /metrics, /health (readiness), /healthz (liveness), local downloads."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from sparc_video.health import HealthMonitor
from sparc_video.storage import Storage
from sparc_video.storage.http_routes import local_download_routes, local_upload_routes
from sparc_video.storage.local import LocalStorage


def build_http_app(health: HealthMonitor, storage: Storage) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
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
    if isinstance(storage, LocalStorage):
        app.add_routes(local_download_routes(storage))
        app.add_routes(local_upload_routes(storage))
    return app
