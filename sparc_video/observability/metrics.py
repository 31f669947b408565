"""Prometheus metrics of the server and of the workers.

Who counts what, so that several replicas and workers add up without double counting:

- Each server process counts its own RPCs (`grpc_server_*`) in the default registry.
- Shared truths (exports by state, live workers, bytes stored) live in Redis; every server
  replica reads them at scrape time through `ServiceCollector` and reports the same values, so
  dashboards use max() or one replica's series, never sum().
- Each worker process counts its own jobs, operations and transfers in `WORKER_REGISTRY`,
  served on its own metrics port; sum() over workers is the fleet's total. The media child
  process counts nothing: it reports to the worker, which counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from sparc_video.core.keys import Keys
from sparc_video.exports.models import ExportState
from sparc_video.exports.records import ExportStore
from sparc_video.media.codecs import NVENC_UNAVAILABLE

log = logging.getLogger(__name__)

# --- server: RPCs (default registry, served by the server's /metrics) -------------------------

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from receiving an RPC to its status (for streams: the stream's whole life).",
    ["grpc_service", "grpc_method", "grpc_type"],
    buckets=_LATENCY_BUCKETS,
)
GRPC_STREAMS_ACTIVE = Gauge(
    "grpc_server_streams_active",
    "Server streams open now (WatchExport watchers, health watches).",
    ["grpc_service", "grpc_method"],
)

# --- worker (WORKER_REGISTRY, served by each worker's metrics port) ----------------------------

WORKER_REGISTRY = CollectorRegistry()
ProcessCollector(registry=WORKER_REGISTRY)
PlatformCollector(registry=WORKER_REGISTRY)
GCCollector(registry=WORKER_REGISTRY)

_JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
_SIZE_BUCKETS = tuple(float(64 * 1024 * 4**i) for i in range(10))  # 64 KiB … 16 GiB
_SPEED_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)

JOBS = Counter(
    "video_processing_jobs",
    "Export attempts finished by this worker, by outcome (succeeded, failed, cancelled, "
    "retrying, interrupted, superseded, duplicate, skipped, error).",
    ["status"],
    registry=WORKER_REGISTRY,
)
JOB_DURATION = Histogram(
    "video_processing_job_duration_seconds",
    'Wall time of an attempt (operation="export") and of each media operation in it '
    '(operation="transcode", "thumbnail"), by outcome.',
    ["operation", "status"],
    buckets=_JOB_BUCKETS,
    registry=WORKER_REGISTRY,
)
ERRORS = Counter(
    "video_processing_errors",
    "Attempts that ended in an error, by the export's error reason and the phase it failed in "
    "(download, process, transcode, thumbnail, upload).",
    ["reason", "operation"],
    registry=WORKER_REGISTRY,
)
RETRIES = Counter(
    "video_processing_retries",
    "Attempts that failed transiently and were scheduled again, by reason.",
    ["reason"],
    registry=WORKER_REGISTRY,
)
SPEED = Histogram(
    "video_processing_speed_ratio",
    "Media seconds processed per wall second, per completed operation.",
    ["operation"],
    buckets=_SPEED_BUCKETS,
    registry=WORKER_REGISTRY,
)
MEDIA_SECONDS = Counter(
    "video_processing_media_seconds",
    "Media seconds processed by completed operations (rate over job_duration_seconds_sum "
    "gives the fleet's speed).",
    ["operation"],
    registry=WORKER_REGISTRY,
)
EXPORT_SIZE = Histogram(
    "video_export_size_bytes",
    "Total size of a succeeded export's outputs.",
    buckets=_SIZE_BUCKETS,
    registry=WORKER_REGISTRY,
)
BUSY_SLOTS = Gauge(
    "video_worker_busy_slots",
    "Jobs this worker process is running now.",
    registry=WORKER_REGISTRY,
)
SLOTS = Gauge(
    "video_worker_slots",
    "Jobs this worker process may run at once (VIDEO_WORKER_CONCURRENCY).",
    registry=WORKER_REGISTRY,
)
TRANSFER_BYTES = Counter(
    "video_storage_transfer_bytes",
    "Bytes moved between the worker and storage.",
    ["backend", "direction"],
    registry=WORKER_REGISTRY,
)
TRANSFER_ERRORS = Counter(
    "video_storage_transfer_errors",
    "Storage transfers (download, upload, delete) that failed.",
    ["backend", "direction"],
    registry=WORKER_REGISTRY,
)
TRANSFER_SECONDS = Histogram(
    "video_storage_transfer_seconds",
    "Duration of storage transfers.",
    ["backend", "direction"],
    buckets=_JOB_BUCKETS,
    registry=WORKER_REGISTRY,
)


# --- bytes stored, shared through Redis ------------------------------------------------------

# Sizes are kept per object key so an overwrite counts once and a deleted prefix gives back
# exactly what it held; the sorted set (all scores 0) finds a prefix's keys by range.
_RECORD_OBJECT = """
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return redis.call('INCRBY', KEYS[3], tonumber(ARGV[2]) - old)
"""
_FORGET_PREFIX = """
local keys = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[1], '[' .. ARGV[1] .. '\\255')
local freed = 0
for i = 1, #keys, 500 do
  local batch = {unpack(keys, i, math.min(i + 499, #keys))}
  for _, key in ipairs(batch) do
    freed = freed + tonumber(redis.call('HGET', KEYS[2], key) or '0')
  end
  redis.call('ZREM', KEYS[1], unpack(batch))
  redis.call('HDEL', KEYS[2], unpack(batch))
end
return redis.call('DECRBY', KEYS[3], freed)
"""


class StorageUsage:
    """Bytes the workers hold in storage, in Redis so every process agrees."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def record(self, key: str, size: int) -> None:
        await self._redis.eval(  # type: ignore[misc]
            _RECORD_OBJECT,
            3,
            self._keys.stored_objects,
            self._keys.stored_sizes,
            self._keys.stored_bytes,
            key,
            str(size),
        )

    async def forget_prefix(self, prefix: str) -> None:
        await self._redis.eval(  # type: ignore[misc]
            _FORGET_PREFIX,
            3,
            self._keys.stored_objects,
            self._keys.stored_sizes,
            self._keys.stored_bytes,
            prefix,
        )

    async def total(self) -> int:
        raw = await self._redis.get(self._keys.stored_bytes)
        return int(raw or 0)


# --- server: shared gauges computed from Redis at scrape time --------------------------------


class HealthResult(Protocol):
    ok: bool
    critical: bool
    latency_ms: float


@dataclass
class _Snapshot:
    counts: Mapping[ExportState, int] = field(default_factory=dict)
    oldest_queued_age_s: float = 0.0
    live_workers: int = 0
    stored_bytes: int = 0
    ok: bool = False
    nvenc_workers: int = 0


class ServiceCollector(Collector):
    """Exports by state, live workers and bytes stored, read from Redis for each scrape.

    prometheus_client collects synchronously, so the HTTP handler awaits `refresh()` first; a
    Redis that does not answer within the timeout leaves these series out (stale numbers would
    look like truth) and sets video_service_redis_scrape_ok to 0.
    """

    def __init__(
        self,
        store: ExportStore,
        usage: StorageUsage,
        backend: str,
        health_results: Mapping[str, HealthResult] | None = None,
    ) -> None:
        self._store = store
        self._usage = usage
        self._backend = backend
        self._health = health_results or {}
        self._snapshot = _Snapshot()

    async def refresh(self, timeout_s: float = 2.0) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                counts, oldest, workers, stored, hardware = await asyncio.gather(
                    self._store.count_by_state(),
                    self._store.oldest_in_state(ExportState.QUEUED),
                    self._store.live_workers(),
                    self._usage.total(),
                    self._store.live_worker_hardware(),
                )
        except Exception as exc:  # Redis down or slow: report that, not stale numbers
            log.warning("metrics: cannot read queue state from Redis: %s", exc)
            self._snapshot = _Snapshot()
            return
        age = max(0.0, time.time() - oldest.create_time) if oldest is not None else 0.0
        nvenc = sum(
            n for summary, n in hardware.items() if not summary.startswith(NVENC_UNAVAILABLE)
        )
        self._snapshot = _Snapshot(counts, age, workers, stored, ok=True, nvenc_workers=nvenc)

    def collect(self) -> Iterable[Metric]:
        snap = self._snapshot
        yield GaugeMetricFamily(
            "video_service_redis_scrape_ok",
            "1 when this scrape could read the shared queue state from Redis.",
            value=1 if snap.ok else 0,
        )
        if snap.ok:
            queue = GaugeMetricFamily(
                "video_processing_queue_size",
                "Exports by state (shared truth from Redis: same on every server replica).",
                labels=["state"],
            )
            for state in ExportState:
                queue.add_metric([state.value.lower()], snap.counts.get(state, 0))
            yield queue
            yield GaugeMetricFamily(
                "video_processing_oldest_queued_age_seconds",
                "Age of the oldest QUEUED export (0 when none is queued).",
                value=snap.oldest_queued_age_s,
            )
            yield GaugeMetricFamily(
                "video_workers_live",
                "Worker processes whose heartbeat was seen in the last 30 s.",
                value=snap.live_workers,
            )
            yield GaugeMetricFamily(
                "video_workers_nvenc",
                "Live workers whose start-up probe found a working NVENC encoder.",
                value=snap.nvenc_workers,
            )
            used = GaugeMetricFamily(
                "video_storage_used_bytes",
                "Bytes of export outputs the service holds in storage (written minus deleted).",
                labels=["backend"],
            )
            used.add_metric([self._backend], snap.stored_bytes)
            yield used
        ok = GaugeMetricFamily(
            "video_health_check_ok",
            "Result of the last background dependency check (critical ones gate SERVING).",
            labels=["check", "critical"],
        )
        latency = GaugeMetricFamily(
            "video_health_check_latency_seconds",
            "Duration of the last background dependency check.",
            labels=["check"],
        )
        for name, result in self._health.items():
            ok.add_metric([name, str(result.critical).lower()], 1 if result.ok else 0)
            latency.add_metric([name], result.latency_ms / 1000)
        yield ok
        yield latency
