"""Dependency checks run in the background, feeding gRPC health and HTTP /health.

Probes read the last results and never wait on Redis or storage themselves, so a slow dependency
cannot make Kubernetes probes time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from sparc_video.app import App

CHECK_INTERVAL_S = 5.0
CHECK_TIMEOUT_S = 2.0


@dataclass
class CheckResult:
    ok: bool = False
    latency_ms: float = 0.0
    error: str = ""
    checked_at: float = 0.0


class HealthMonitor:
    def __init__(self, app: App, servicer: HealthServicer, service_names: list[str]) -> None:
        self._servicer = servicer
        self._service_names = ["", *service_names]
        self._checks: dict[str, Callable[[], Awaitable[object]]] = {
            "redis": app.redis.ping,
            "storage": app.storage.check,
        }
        self.results = {name: CheckResult() for name in self._checks}
        self._task: asyncio.Task[None] | None = None
        self._shutting_down = False

    @property
    def healthy(self) -> bool:
        return not self._shutting_down and all(r.ok for r in self.results.values())

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

    async def run_checks(self) -> None:
        await asyncio.gather(*(self._check(name, fn) for name, fn in self._checks.items()))
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._service_names:
            await self._servicer.set(name, status)

    async def _check(self, name: str, fn: Callable[[], Awaitable[object]]) -> None:
        started = time.perf_counter()
        result = self.results[name]
        try:
            await asyncio.wait_for(fn(), CHECK_TIMEOUT_S)
            result.ok, result.error = True, ""
        except Exception as exc:  # any failure of a dependency is a failed check
            result.ok, result.error = False, f"{type(exc).__name__}: {exc}"[:500]
        result.latency_ms = (time.perf_counter() - started) * 1000
        result.checked_at = time.time()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            await self.run_checks()

    def report(self) -> dict[str, object]:
        return {
            "status": "SERVING" if self.healthy else "NOT_SERVING",
            "checks": {
                name: {
                    "ok": r.ok,
                    "latency_ms": round(r.latency_ms, 2),
                    "error": r.error,
                    "checked_at": r.checked_at,
                }
                for name, r in self.results.items()
            },
        }
