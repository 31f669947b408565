"""Dependency checks run in the background, feeding gRPC health and HTTP /health.

Probes read the last results and never wait on Redis or storage themselves, so a slow dependency
cannot make Kubernetes probes time out.

Only critical checks gate SERVING: Redis, storage and the database (PostgreSQL),
without which no RPC can succeed. The others are reported (/health, `video_health_check_ok`)
but leave the API SERVING:

- workers: with none alive, exports are still accepted and wait in the queue, and Get, List and
  Watch keep working. NOT_SERVING would take every API replica out of its load balancer because
  workers were scaled to zero or redeploying: an outage of the whole API for a backlog.
- media: the server does not decode video; the check says whether the image the workers share
  has PyAV and the encoders, which the operator fixes with a deploy, not with traffic.
- temp_space: the scratch space is the workers'; on a server it only warns of a full disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from sparc_video.api import dependency_checks
from sparc_video.app import App
from sparc_video.exports.worker_registry import WorkerRegistry

CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Check:
    run: Callable[[], Awaitable[object]]
    # Critical checks decide SERVING; the others are only reported.
    critical: bool
    timeout_s: float = CHECK_TIMEOUT_S


@dataclass
class CheckResult:
    ok: bool = False
    latency_ms: float = 0.0
    error: str = ""
    checked_at: float = 0.0
    critical: bool = True
    # What a passing check found (versions, free bytes, worker count), when it says.
    detail: str = ""


class HealthMonitor:
    def __init__(self, app: App, servicer: HealthServicer, service_names: list[str]) -> None:
        self._servicer = servicer
        self._service_names = ["", *service_names]
        settings = app.settings
        self.interval_s = settings.health_check_interval_s
        # The Redis checks have a connection of their own: a round never takes one from the
        # requests being served (nor grows the app's pool), and a pool saturated by requests
        # does not make the probe fail.
        self._redis = aioredis.Redis.from_url(
            settings.redis_url,
            single_connection_client=True,
            socket_connect_timeout=CHECK_TIMEOUT_S,
            socket_timeout=CHECK_TIMEOUT_S,
        )
        registry = WorkerRegistry(self._redis, app.store.keys)
        self._checks: dict[str, Check] = {
            "redis": Check(self._redis.ping, critical=True),
            "storage": Check(app.storage.check, critical=True),
            "workers": Check(partial(dependency_checks.workers_alive, registry), critical=False),
            "media": Check(
                dependency_checks.media_check,
                critical=False,
                timeout_s=dependency_checks.MEDIA_TIMEOUT_S,
            ),
            "temp_space": Check(
                partial(
                    dependency_checks.temp_space, settings.temp_dir, settings.temp_min_free_bytes
                ),
                critical=False,
            ),
        }
        # SELECT 1 on a connection of the check's own, not the app's pool: a pool that long
        # queries keep busy must not read as PostgreSQL being down (that saturation shows in
        # database_pool_waiting instead).
        self._checks["database"] = Check(app.database.check, critical=True)
        self.results = {
            name: CheckResult(critical=check.critical) for name, check in self._checks.items()
        }
        self._task: asyncio.Task[None] | None = None
        self._shutting_down = False
        self._serving = False

    @property
    def healthy(self) -> bool:
        return not self._shutting_down and self._serving

    async def start(self) -> None:
        await self.run_checks()
        self._task = asyncio.create_task(self._loop(), name="health-checks")

    async def shutdown(self) -> None:
        """Report NOT_SERVING for good (graceful shutdown) and stop checking."""
        self._shutting_down = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._servicer.enter_graceful_shutdown()
        await self._redis.aclose()

    async def run_checks(self) -> None:
        """One round: every check, then gRPC health, then /health and the metrics' view of it.

        A round's results are published together and after gRPC health, so a probe that sees
        /health change never then finds gRPC health still saying the old thing: were results
        written as each check ended, /health could report a failed storage check while gRPC
        health waited on the slower checks of the same round.
        """
        found = await asyncio.gather(*(self._check(check) for check in self._checks.values()))
        fresh = dict(zip(self._checks, found, strict=True))
        serving = all(r.ok for r in fresh.values() if r.critical)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving and not self._shutting_down
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._service_names:
            await self._servicer.set(name, status)
        self.results.update(fresh)
        self._serving = serving

    @staticmethod
    async def _check(check: Check) -> CheckResult:
        started = time.perf_counter()
        result = CheckResult(critical=check.critical)
        try:
            found = await asyncio.wait_for(check.run(), check.timeout_s)
            result.ok = True
            result.detail = found if isinstance(found, str) else ""
        except Exception as exc:  # any failure of a dependency is a failed check
            result.error = f"{type(exc).__name__}: {exc}"[:500]
        result.latency_ms = (time.perf_counter() - started) * 1000
        result.checked_at = time.time()
        return result

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.run_checks()

    def report(self) -> dict[str, object]:
        return {
            "status": "SERVING" if self.healthy else "NOT_SERVING",
            "interval_s": self.interval_s,
            "checks": {
                name: {
                    "ok": r.ok,
                    "critical": r.critical,
                    "latency_ms": round(r.latency_ms, 2),
                    "error": r.error,
                    "detail": r.detail,
                    "checked_at": r.checked_at,
                }
                for name, r in self.results.items()
            },
        }
