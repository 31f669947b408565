"""The worker's typed context: every client a job needs, opened once per worker process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis

from sparc_video.app import open_dependencies
from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings
from sparc_video.evidence.signing import ManifestSigner
from sparc_video.exports.queue import ExportQueue
from sparc_video.exports.records import ExportStore
from sparc_video.observability.metrics import StorageUsage
from sparc_video.storage import Storage
from workers.job import scratch
from workers.job.reconciler import Reconciler
from workers.pipeline.encoders import HardwareReport
from workers.sandbox.runner import probe_hardware_in_child
from workers.telemetry.worker import InstrumentedStorage, serve_worker_metrics

HEARTBEAT_INTERVAL_S = 5.0
_CTX_KEY = "sparc_video"


@dataclass
class WorkerContext:
    settings: Settings
    redis: ArqRedis
    storage: Storage
    store: ExportStore
    queue: ExportQueue
    keys: Keys
    worker_id: str
    signer: ManifestSigner
    _stack: AsyncExitStack = field(repr=False)
    # The hardware encoder probe, started with the worker (it runs in a media child, off the
    # event loop); jobs await it instead of probing again.
    _hardware: asyncio.Task[HardwareReport] | None = field(default=None, repr=False)
    # The scratch directories (names) this process's attempts are running in: never swept.
    scratch_in_use: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def of(cls, ctx: dict[str, Any]) -> WorkerContext:
        """The typed context stored in arq's ctx dict at startup (the only key we use)."""
        context = ctx[_CTX_KEY]
        assert isinstance(context, cls)
        return context

    @classmethod
    async def open(cls, settings: Settings, ctx: dict[str, Any]) -> WorkerContext:
        stack = AsyncExitStack()
        redis: ArqRedis = ctx["redis"]
        deps = await stack.enter_async_context(open_dependencies(settings, redis))
        storage: Storage = InstrumentedStorage(deps.storage, StorageUsage(redis, deps.keys))
        await stack.enter_async_context(serve_worker_metrics(settings))
        context = cls(
            settings=settings,
            redis=redis,
            storage=storage,
            store=deps.store,
            queue=deps.queue,
            keys=deps.keys,
            worker_id=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}",
            signer=deps.signer,
            _stack=stack,
        )
        context._hardware = asyncio.create_task(probe_hardware_in_child(), name="hardware-probe")
        stack.push_async_callback(_cancel, context._hardware)
        reconciler = Reconciler(settings, context.store, context.queue, storage, deps.uploads)
        settings.temp_dir.mkdir(parents=True, exist_ok=True)
        # The first sweep before any job of ours starts: what a killed predecessor left.
        await scratch.sweep(settings.temp_dir, context.store)
        sweeper = scratch.sweep_forever(
            settings.temp_dir,
            context.store,
            settings.reconcile_interval_s,
            context.scratch_in_use,
            settings.lease_ttl_s,
        )
        for task in (
            asyncio.create_task(context._heartbeat(), name="worker-heartbeat"),
            asyncio.create_task(reconciler.run_forever(), name="reconciler"),
            asyncio.create_task(sweeper, name="scratch-sweep"),
        ):
            stack.push_async_callback(_cancel, task)
        ctx[_CTX_KEY] = context
        return context

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def hardware(self) -> HardwareReport:
        """What the start-up probe found (waits for it during the worker's first seconds)."""
        assert self._hardware is not None
        return await asyncio.shield(self._hardware)

    async def _heartbeat(self) -> None:
        """Announce this worker (GetQueueStats counts workers seen in the last 30 s) and, once
        probed, its hardware encoders (server health and metrics show them)."""
        while True:
            hardware = ""
            if self._hardware is not None and self._hardware.done():
                hardware = self._hardware.result().summary()
            with contextlib.suppress(Exception):
                await self.store.workers.heartbeat(self.worker_id, hardware, self.signer.key_id)
            await asyncio.sleep(HEARTBEAT_INTERVAL_S if hardware else HEARTBEAT_INTERVAL_S / 5)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
