"""The worker's side of observability: instrumented storage and its own /metrics port.

`InstrumentedStorage` wraps the worker's storage backend: every transfer gets a span, bytes,
duration and errors by backend and direction, and bytes written or deleted are kept in Redis
(`StorageUsage`) so the servers can report what the service holds in storage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from opentelemetry.trace import Span
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sparc_video.core.errors import ObjectNotFound, SparcVideoError
from sparc_video.core.settings import Settings, reveal
from sparc_video.observability.metrics import (
    SLOTS,
    TRANSFER_BYTES,
    TRANSFER_ERRORS,
    TRANSFER_SECONDS,
    WORKER_REGISTRY,
    StorageUsage,
)
from sparc_video.observability.tracing import record_error, tracer
from sparc_video.storage import ObjectInfo, Storage
from workers.telemetry import observer as job_observer

log = logging.getLogger(__name__)


@dataclass
class _Transfer:
    span: Span
    bytes: int = 0


class InstrumentedStorage:
    """A Storage that measures what goes through it; behaves exactly like the one it wraps."""

    def __init__(self, inner: Storage, usage: StorageUsage) -> None:
        self._inner = inner
        self._usage = usage
        self.backend_name = inner.backend_name

    @contextmanager
    def _transfer(self, direction: str, key: str) -> Iterator[_Transfer]:
        attributes = {"storage.backend": self.backend_name, "storage.key": key}
        observer = job_observer.current()
        if observer is not None:
            attributes["sparc.export_id"] = observer.export_id
        with tracer().start_as_current_span(
            direction, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            transfer = _Transfer(span)
            started = time.perf_counter()
            try:
                yield transfer
            except asyncio.CancelledError:
                # Stopped from outside (cancel, shutdown): not a failure of the storage.
                span.set_attribute("storage.cancelled", True)
                raise
            except Exception as exc:
                # A missing object is an answer, not a failed transfer.
                if not isinstance(exc, ObjectNotFound):
                    TRANSFER_ERRORS.labels(self.backend_name, direction).inc()
                reason = exc.reason if isinstance(exc, SparcVideoError) else ""
                record_error(span, exc, reason=reason)
                raise
            TRANSFER_SECONDS.labels(self.backend_name, direction).observe(
                time.perf_counter() - started
            )
            TRANSFER_BYTES.labels(self.backend_name, direction).inc(transfer.bytes)
            span.set_attribute("storage.bytes", transfer.bytes)

    async def download_file(self, key: str, path: Path, max_bytes: int = 0) -> int:
        observer = job_observer.current()
        if observer is not None:
            observer.downloading()
        with self._transfer("download", key) as transfer:
            transfer.bytes = await self._inner.download_file(key, path, max_bytes)
        if observer is not None:
            observer.downloaded()
        return transfer.bytes

    async def upload_file(
        self,
        path: Path,
        key: str,
        content_type: str,
        sha256: str | None = None,
        *,
        give_up: bool = False,
    ) -> ObjectInfo:
        observer = job_observer.current()
        if observer is not None:
            observer.uploading()
        with self._transfer("upload", key) as transfer:
            info = await self._inner.upload_file(path, key, content_type, sha256, give_up=give_up)
            transfer.bytes = info.size_bytes
        await self._written(info)
        return info

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        with self._transfer("upload", key) as transfer:
            info = await self._inner.put_bytes(key, data, content_type)
            transfer.bytes = info.size_bytes
        await self._written(info)
        return info

    async def delete_prefix(self, prefix: str) -> int:
        with self._transfer("delete", prefix) as transfer:
            deleted = await self._inner.delete_prefix(prefix)
            transfer.span.set_attribute("storage.objects", deleted)
        try:
            await self._usage.forget_prefix(prefix)
        except Exception as exc:  # the objects are gone; only the usage figure lags
            log.warning("storage usage not updated after deleting %s: %s", prefix, exc)
        return deleted

    async def _written(self, info: ObjectInfo) -> None:
        observer = job_observer.current()
        if observer is not None:
            observer.uploaded_bytes += info.size_bytes
        try:
            await self._usage.record(info.key, info.size_bytes)
        except Exception as exc:  # the object is stored; failing the export for a metric is wrong
            log.warning("storage usage not updated for %s: %s", info.key, exc)

    async def stat(self, key: str) -> ObjectInfo:
        return await self._inner.stat(key)

    async def download_url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        return await self._inner.download_url(key, ttl_s, filename)

    async def check(self) -> None:
        await self._inner.check()

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def serve_worker_metrics(settings: Settings) -> AsyncIterator[int]:
    """This worker process's /metrics and /healthz on WORKER_METRICS_PORT; yields the port.

    Each worker process serves only its own counters; the shared gauges (queue by state,
    storage used) come from the servers, so a sum over workers never counts them twice. With
    DATABASE_URL set it adds its PostgreSQL pool's series (`database_*`): its own pool, so a sum
    over workers and servers is what PostgreSQL sees.
    """
    registries = [WORKER_REGISTRY]
    if reveal(settings.database_url):
        # Imported only here, as the server does: no database series where none is configured.
        from sparc_video.database.metrics import DATABASE_REGISTRY

        registries.append(DATABASE_REGISTRY)
    SLOTS.inc(settings.worker_concurrency)
    try:
        if not settings.worker_metrics_port:
            yield 0
            return

        async def metrics(_: web.Request) -> web.Response:
            # Text exposition: families of several registries may follow one another.
            body = b"".join(generate_latest(registry) for registry in registries)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def liveness(_: web.Request) -> web.Response:
            return web.json_response({"status": "alive"})

        app = web.Application()
        app.add_routes([web.get("/metrics", metrics), web.get("/healthz", liveness)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.http_host, settings.worker_metrics_port)
            try:
                await site.start()
            except OSError as exc:
                # Several worker processes on one host (not one per pod): processing matters
                # more than this process's counters, so it keeps working without them.
                log.error(
                    "worker metrics port %d unavailable (%s); set WORKER_METRICS_PORT per process",
                    settings.worker_metrics_port,
                    exc,
                )
                yield 0
                return
            log.info("worker metrics on port %d", settings.worker_metrics_port)
            yield settings.worker_metrics_port
        finally:
            await runner.cleanup()
    finally:
        SLOTS.dec(settings.worker_concurrency)
