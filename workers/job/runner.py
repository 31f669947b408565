"""Running the arq worker so that it outlives Redis outages and starts queued jobs promptly.

arq's poll loop lets a Redis connection error end the worker. `ResilientWorker` logs it, waits
with backoff and keeps polling, so a worker recovers by itself when Redis returns (running jobs
fail their writes meanwhile and are recovered through their expired leases). `arq
workers.WorkerSettings` runs plain arq and relies on the orchestrator to restart it instead.

arq sleeps `poll_delay` between polls of its queue, so a job waits on average half of it before
an idle worker sees it. `ResilientWorker` instead waits for a reason to look: a message on the
queue's wake-up channel (published by `ExportQueue` with every enqueue), one of its own jobs
ending (a slot came free), the due time of the earliest deferred job, or at the latest
`fallback_poll_s` (a lost pub/sub message, or a job queued by something that does not publish).
Each poll is still arq's own, so what it starts, and how, is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.exceptions
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.asyncio.client import PubSub
from redis.commands.core import AsyncScript

from sparc_video.core.keys import Keys
from sparc_video.core.settings import Settings
from workers.job.settings import worker_options

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
# Wake-ups carry the normal case; this only bounds how late a missed one is noticed.
FALLBACK_POLL_S = 1.0

# A job is ours to run when no worker runs it (in-progress key) and it is still queued and due:
# then mark it in progress. Returns its score, or nil when it is not ours.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class ResilientWorker(Worker):
    _backoff_s = 0.0

    def __init__(
        self,
        *args: Any,
        wakeup_channel: str | None = None,
        fallback_poll_s: float = FALLBACK_POLL_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._wakeup_channel = wakeup_channel
        self._fallback_poll_s = max(fallback_poll_s, self.poll_delay_s)
        if wakeup_channel is not None:
            # arq's loop must not sleep on its own: _poll_iteration does the waiting.
            self.poll_delay_s = 0.0
        self._wake = asyncio.Event()
        # Registered with arq's pool once main() has made it.
        self._claim: AsyncScript | None = None
        self._listener: asyncio.Task[None] | None = None
        # The live subscription to the wake-up channel, None while reconnecting.
        self.wakeup_subscription: PubSub | None = None
        # Polls started by a wake-up or a freed slot, as opposed to the fallback timer.
        self.woken_polls = 0

    async def main(self) -> None:
        try:
            await super().main()
        finally:
            await self._stop_listener()

    async def close(self) -> None:
        await self._stop_listener()
        # arq's close() cancels running jobs and then gathers them without return_exceptions:
        # one cancelled job raises CancelledError out of close() and skips on_shutdown and the
        # pool's close. Let the jobs end here first, so close() only sees finished tasks.
        if not self._handle_signals:
            for task in self.tasks.values():
                task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        await super().close()

    async def _poll_iteration(self) -> None:
        # Cleared before looking, so whatever arrives while we look triggers another look.
        self._wake.clear()
        try:
            await super()._poll_iteration()
        except _REDIS_DOWN as exc:
            self._backoff_s = min(MAX_BACKOFF_S, max(0.2, self._backoff_s * 2))
            log.warning("Redis unavailable (%s); retrying in %.1f s", exc, self._backoff_s)
            await asyncio.sleep(self._backoff_s)
            return
        self._backoff_s = 0.0
        if self._wakeup_channel is None:
            return
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(
                self._listen(self._wakeup_channel), name="queue-wakeups"
            )
        await self._wait_for_work()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's start_jobs, with its claim of each job in one script instead of four round
        trips (WATCH, EXISTS, ZSCORE, MULTI/PSETEX/EXEC): the same checks, atomically."""
        # arq keeps running jobs in its queue until they end and would check each id it read
        # before skipping it as in progress. Ours are known to be running: skip them here.
        running = {job_id for job_id, task in self.tasks.items() if not task.done()}
        if self._claim is None:
            self._claim = self.pool.register_script(_CLAIM)
        for job_id_b in job_ids:
            job_id = job_id_b.decode()
            if job_id in running:
                continue
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            score = await self._claim(
                keys=[in_progress_key_prefix + job_id, self.queue_name],
                args=[job_id, timestamp_ms(), int(self.in_progress_timeout_s * 1000)],
            )
            if score is None:
                # Started elsewhere, finished, or deferred again meanwhile.
                self.job_counter -= 1
                self.sem.release()
                continue
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        # A slot came free: the next queued job should not wait for a timer.
        self._wake.set()

    def _has_free_slot(self) -> bool:
        return self.allow_pick_jobs and self.job_counter < self.max_jobs

    async def _wait_for_work(self) -> None:
        timeout = self._fallback_poll_s
        if self._has_free_slot():
            with contextlib.suppress(*_REDIS_DOWN, redis.exceptions.RedisError):
                now_ms = time.time() * 1000
                # Running jobs stay in arq's queue until they end, so "the first score" may be a
                # running job: ask for the first one that is not due yet.
                due = await self.pool.zrangebyscore(
                    self.queue_name, f"({now_ms:.0f}", "+inf", start=0, num=1, withscores=True
                )
                if due:
                    timeout = min(timeout, max(0.0, (due[0][1] - now_ms) / 1000))
        # Not asyncio.wait_for: on 3.11 it swallows a cancellation that arrives together with
        # the wake-up, and the worker would then ignore its shutdown.
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            return
        self.woken_polls += 1

    async def _listen(self, channel: str) -> None:
        """Set the wake-up event for every enqueue while a slot is free; reconnect on errors."""
        backoff = 0.2
        while True:
            try:
                async with self.pool.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel)
                    self.wakeup_subscription = pubsub
                    # Whatever was enqueued while we were not subscribed.
                    self._wake.set()
                    backoff = 0.2
                    async for _ in pubsub.listen():
                        if self._has_free_slot():
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except (*_REDIS_DOWN, redis.exceptions.RedisError) as exc:
                self.wakeup_subscription = None
                log.debug("queue wake-ups interrupted (%s); polling until they return", exc)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def _stop_listener(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None


def build_worker(settings: Settings, **overrides: Any) -> ResilientWorker:
    options = {
        **worker_options(settings),
        "wakeup_channel": Keys(settings.redis_prefix).queue_wakeup,
        **overrides,
    }
    return ResilientWorker(**options)


def run(settings: Settings) -> None:
    """`sparc-video worker`: run until SIGTERM/SIGINT, then shut down gracefully."""
    build_worker(settings).run()
