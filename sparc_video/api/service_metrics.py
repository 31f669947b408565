"""The server's shared gauges, computed from Redis at each scrape.

Exports by state, the oldest queued export, live workers and bytes stored are shared truths:
every server replica reads them here and reports the same values (see `observability.metrics`
for who counts what). They read the export store, so they belong to the server, not to the
domain-free metric definitions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sparc_video.exports.models import ExportState
from sparc_video.exports.records import ExportStore
from sparc_video.media.codecs import NVENC_UNAVAILABLE
from sparc_video.observability.metrics import StorageUsage
from sparc_video.storage.base import BoundedStorage, Capacity

log = logging.getLogger(__name__)


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
    capacity: Capacity | None = None
    unknown_key_workers: int = 0


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
        storage: object = None,
        verification_key_ids: Collection[str] = (),
    ) -> None:
        """`storage`: the backend; one on a file system (BoundedStorage) also reports its free
        and total bytes, so an alert can fire before it fills up."""
        self._store = store
        self._bounded = storage if isinstance(storage, BoundedStorage) else None
        self._usage = usage
        self._backend = backend
        self._health = health_results or {}
        self._key_ids = frozenset(verification_key_ids)
        self._snapshot = _Snapshot()

    async def refresh(self, timeout_s: float = 2.0) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                counts, oldest, workers, stored, hardware, keys = await asyncio.gather(
                    self._store.count_by_state(),
                    self._store.oldest_in_state(ExportState.QUEUED),
                    self._store.workers.live(),
                    self._usage.total(),
                    self._store.workers.hardware(),
                    self._store.workers.signing_keys(),
                )
        except Exception as exc:  # Redis down or slow: report that, not stale numbers
            log.warning("metrics: cannot read queue state from Redis: %s", exc)
            self._snapshot = _Snapshot()
            return
        age = max(0.0, time.time() - oldest.create_time) if oldest is not None else 0.0
        nvenc = sum(
            n for summary, n in hardware.items() if not summary.startswith(NVENC_UNAVAILABLE)
        )
        capacity = None
        if self._bounded is not None:
            try:
                capacity = await self._bounded.capacity()
            except OSError as exc:  # the directory vanished: the storage check says so
                log.warning("metrics: cannot read the storage's free space: %s", exc)
        # Workers signing with a key this server does not publish make bundles nobody can
        # verify: a misconfigured MANIFEST_SIGNING_KEY, worth an alert.
        unknown = sum(n for key_id, n in keys.items() if key_id not in self._key_ids)
        self._snapshot = _Snapshot(
            counts,
            age,
            workers,
            stored,
            ok=True,
            nvenc_workers=nvenc,
            capacity=capacity,
            unknown_key_workers=unknown,
        )

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
            yield GaugeMetricFamily(
                "video_workers_unknown_signing_key",
                "Live workers signing manifests with a key this server does not publish "
                "(their bundles would not verify): MANIFEST_SIGNING_KEY differs between them.",
                value=snap.unknown_key_workers,
            )
        if snap.capacity is not None:
            free = GaugeMetricFamily(
                "video_storage_free_bytes",
                "Free bytes on the file system of a local storage backend (absent for S3).",
                labels=["backend"],
            )
            free.add_metric([self._backend], snap.capacity.free_bytes)
            yield free
            total = GaugeMetricFamily(
                "video_storage_capacity_bytes",
                "Size of the file system of a local storage backend (absent for S3).",
                labels=["backend"],
            )
            total.add_metric([self._backend], snap.capacity.total_bytes)
            yield total
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
