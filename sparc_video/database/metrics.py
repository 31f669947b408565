"""Prometheus metrics of the PostgreSQL connection pools (default registry: served on the
server's /metrics, and by whichever process opens a pool).

Every pool of the process adds up in the same series: a process normally opens one.
`DATABASE_REGISTRY` holds the pool's series alone, for a port that serves another registry (each
worker's, whose `/metrics` is `WORKER_REGISTRY`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class _Sized(Protocol):
    def get_size(self) -> int: ...

    def get_idle_size(self) -> int: ...

    def get_max_size(self) -> int: ...


# The pools open in this process, read at scrape time (open_database adds and removes them;
# asyncpg pools cannot be weakly referenced).
_POOLS: set[_Sized] = set()


def track_pool(pool: _Sized) -> None:
    _POOLS.add(pool)


def untrack_pool(pool: _Sized) -> None:
    _POOLS.discard(pool)


def _sum(read: Callable[[_Sized], int]) -> Callable[[], float]:
    return lambda: float(sum(read(pool) for pool in list(_POOLS)))


DB_POOL_CONNECTIONS_IN_USE = Gauge(
    "database_pool_connections_in_use",
    "PostgreSQL connections checked out of the pool now.",
)
DB_POOL_CONNECTIONS_IN_USE.set_function(_sum(lambda p: p.get_size() - p.get_idle_size()))
DB_POOL_CONNECTIONS = Gauge(
    "database_pool_connections",
    "PostgreSQL connections the pool holds open now (in use or idle).",
)
DB_POOL_CONNECTIONS.set_function(_sum(lambda p: p.get_size()))
DB_POOL_MAX_CONNECTIONS = Gauge(
    "database_pool_max_connections",
    "The most connections the pool may open (DATABASE_POOL_MAX_SIZE).",
)
DB_POOL_MAX_CONNECTIONS.set_function(_sum(lambda p: p.get_max_size()))
DB_POOL_WAITING = Gauge(
    "database_pool_waiting",
    "Callers waiting now for a PostgreSQL connection from the pool.",
)
DB_POOL_ACQUIRE_SECONDS = Histogram(
    "database_pool_acquire_seconds",
    "Time to get a connection from the pool (waiting included).",
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
DB_QUERY_SECONDS = Histogram(
    "database_query_seconds",
    "Time of each PostgreSQL statement, as the driver measured it.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
DB_SLOW_QUERIES = Counter(
    "database_slow_queries",
    "PostgreSQL statements that took longer than the slow-query threshold (each is logged).",
)
DB_QUERY_ERRORS = Counter(
    "database_query_errors",
    "PostgreSQL statements that raised an error.",
)
DB_CHECK_SECONDS = Gauge(
    "database_check_seconds",
    "Round trip of the last health check (SELECT 1), in seconds.",
)

DATABASE_REGISTRY = CollectorRegistry()
for _metric in (
    DB_POOL_CONNECTIONS_IN_USE,
    DB_POOL_CONNECTIONS,
    DB_POOL_MAX_CONNECTIONS,
    DB_POOL_WAITING,
    DB_POOL_ACQUIRE_SECONDS,
    DB_QUERY_SECONDS,
    DB_SLOW_QUERIES,
    DB_QUERY_ERRORS,
):  # not DB_CHECK_SECONDS: only a server runs the health check
    DATABASE_REGISTRY.register(_metric)
