"""arq worker settings, derived from the service's Settings.

`arq workers.WorkerSettings` reads the class below (built from the environment at import);
`sparc-video worker` and the tests build the same options with `worker_options(settings)`.
"""

from __future__ import annotations

from typing import Any

from arq.worker import func

from sparc_video.app import redis_settings
from sparc_video.core.keys import RUN_EXPORT_JOB, Keys
from sparc_video.core.settings import Settings
from sparc_video.observability.tracing import setup_tracing
from workers.job.context import WorkerContext
from workers.job.export_job import run_export
from workers.job.observed import observed

# Download and upload happen outside the child's processing timeout.
TRANSFER_ALLOWANCE_S = 600
# Our records count failed attempts and decide on retries. arq counts every start, including
# ones interrupted by a worker shutdown (arq #267), so its limit must never be what ends a job.
ARQ_MAX_TRIES = 1000


def worker_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for arq.Worker."""
    job_timeout_s = settings.processing_timeout_ms / 1000 + TRANSFER_ALLOWANCE_S

    async def on_startup(ctx: dict[str, Any]) -> None:
        # `arq workers.WorkerSettings` has no other start-up hook; a no-op when already set up.
        setup_tracing("sparc-video-worker")
        await WorkerContext.open(settings, ctx)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "sparc_video" in ctx:
            await WorkerContext.of(ctx).aclose()

    return {
        "functions": [
            func(
                observed(run_export),
                name=RUN_EXPORT_JOB,
                timeout=job_timeout_s,
                max_tries=ARQ_MAX_TRIES,
            )
        ],
        "queue_name": Keys(settings.redis_prefix).queue,
        "redis_settings": redis_settings(settings),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "max_jobs": settings.worker_concurrency,
        "job_timeout": job_timeout_s,
        # Our records hold results; a kept arq result would only block re-enqueueing the id.
        "keep_result": 0,
        "poll_delay": 0.1,
        "handle_signals": True,
        # SIGTERM: stop taking jobs, let running ones finish for this long, then hand them back.
        "job_completion_wait": settings.worker_shutdown_grace_s,
    }


def settings_class(settings: Settings) -> type:
    return type("WorkerSettings", (), worker_options(settings))
