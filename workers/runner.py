"""Running the arq worker so that it outlives Redis outages.

arq's poll loop lets a Redis connection error end the worker. `ResilientWorker` logs it, waits
with backoff and keeps polling, so a worker recovers by itself when Redis returns (running jobs
fail their writes meanwhile and are recovered through their expired leases). `arq
workers.WorkerSettings` runs plain arq and relies on the orchestrator to restart it instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.exceptions
from arq.worker import Worker

from sparc_video.settings import Settings
from workers.settings import worker_options

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


class ResilientWorker(Worker):
    _backoff_s = 0.0

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            self._backoff_s = min(MAX_BACKOFF_S, max(0.2, self._backoff_s * 2))
            log.warning("Redis unavailable (%s); retrying in %.1f s", exc, self._backoff_s)
            await asyncio.sleep(self._backoff_s)
        else:
            self._backoff_s = 0.0


def build_worker(settings: Settings, **overrides: Any) -> ResilientWorker:
    return ResilientWorker(**{**worker_options(settings), **overrides})


def run(settings: Settings) -> None:
    """`sparc-video worker`: run until SIGTERM/SIGINT, then shut down gracefully."""
    build_worker(settings).run()
