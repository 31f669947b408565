"""Prometheus metrics of the server and of the workers.

Who counts what, so that several replicas and workers add up without double counting:

- Each server process counts its own RPCs (`grpc_server_*`) in the default registry.
- Shared truths (exports by state, live workers, bytes stored) live in Redis; every server
  replica reads them at scrape time through `api.service_metrics.ServiceCollector` and reports
  the same values, so dashboards use max() or one replica's series, never sum().
- Each worker process counts its own jobs, operations and transfers in `WORKER_REGISTRY`,
  served on its own metrics port; sum() over workers is the fleet's total. The media child
  process counts nothing: it reports to the worker, which counts.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from sparc_video.core.keys import Keys

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
