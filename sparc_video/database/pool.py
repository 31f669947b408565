"""`open_database(url)`: the asyncpg connection pool every store shares.

- `check()` answers whether PostgreSQL serves queries (SELECT 1 within a timeout) or raises
  `Unavailable` naming the server (password hidden) and what failed: what health checks call.
  It runs on a connection of its own, outside the pool, so a pool that long queries keep busy
  still gets a true answer about the server (the pool's `waiting` gauge tells the saturation).
- Pool metrics (`database.metrics`): connections in use, callers waiting, acquire time, query
  time, slow queries.
- Slow-query logging: a statement past `slow_query_s` is logged as a WARNING with its text and
  duration, never its parameters (they may hold personal data or secrets).

Connecting is bounded (`CONNECT_TIMEOUT_S`): a server that does not answer makes
`open_database` raise Unavailable instead of hanging start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import asyncpg
from asyncpg.connection import LoggedQuery
from asyncpg.pool import PoolConnectionProxy

from sparc_video.core.errors import Unavailable
from sparc_video.database import metrics
from sparc_video.database.urls import asyncpg_dsn, redacted

log = logging.getLogger(__name__)

# Pool sizing: a server replica's RPC handlers and a worker's jobs share one pool each. The sum
# over replicas and workers (plus each process's health-check connection) must stay under
# PostgreSQL's max_connections (100 by default). The maximum and the slow-query threshold below
# are the defaults of DATABASE_POOL_MAX_SIZE and DATABASE_SLOW_QUERY, which the service passes.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
# Opening a connection, and the health check's round trip.
CONNECT_TIMEOUT_S = 5.0
CHECK_TIMEOUT_S = 2.0
# Closing waits this long for connections in use to come back, then terminates them.
CLOSE_TIMEOUT_S = 10.0
# Statements slower than this are logged (WARNING) and counted.
SLOW_QUERY_S = 0.2
# How the health check's own connection shows in pg_stat_activity.
CHECK_APPLICATION_NAME = "sparc-video health check"
# A statement's text in the slow-query log is cut to this many characters.
_MAX_LOGGED_QUERY = 500

# What a server that cannot be reached, or a connection that broke, raises.
_FAILURES = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

# What a statement raises when the server went away under it (a restart, a failover, a
# terminated backend): an outage, not a bug. Not QueryCanceledError: a cancelled statement is
# the caller's doing.
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    # What a pooled connection whose backend was terminated raises at its next statement
    # ("cannot switch to state ...; another operation is in progress").
    asyncpg.InternalClientError,
)

# A pooled connection (asyncpg-stubs make the proxy generic in its record type).
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"


def _unavailable(url: str, what: str, exc: BaseException | None = None) -> Unavailable:
    cause = "" if exc is None else f": {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
    return Unavailable(
        f"PostgreSQL at {redacted(url)} {what}{cause}. Check DATABASE_URL and that the server "
        "is running."
    )


class Database:
    """An open pool. Get one from `open_database`; it closes the pool on exit."""

    def __init__(
        self, pool: asyncpg.Pool[asyncpg.Record], url: str, *, slow_query_s: float = SLOW_QUERY_S
    ):
        self.pool = pool
        self.url = url
        self.slow_query_s = slow_query_s
        # The health check's own connection, outside the pool: opened at the first check, again
        # after it broke, closed with the pool. One check at a time uses it (a connection runs
        # one statement at once).
        self._check_connection: asyncpg.Connection[asyncpg.Record] | None = None
        self._check_lock = asyncio.Lock()

    @property
    def display_url(self) -> str:
        """The URL with its password hidden: for logs and messages."""
        return redacted(self.url)

    def log_query(self, query: LoggedQuery) -> None:
        """asyncpg's query logger, installed on each of the pool's connections."""
        metrics.DB_QUERY_SECONDS.observe(query.elapsed)
        if query.exception is not None:
            metrics.DB_QUERY_ERRORS.inc()
        if query.elapsed >= self.slow_query_s:
            metrics.DB_SLOW_QUERIES.inc()
            text = " ".join(query.query.split())
            if len(text) > _MAX_LOGGED_QUERY:
                text = text[:_MAX_LOGGED_QUERY] + "..."
            log.warning(
                "slow query: %.3f s (threshold %.3f s): %s",
                query.elapsed,
                self.slow_query_s,
                text,
                extra={"query_seconds": round(query.elapsed, 6)},
            )

    @contextlib.asynccontextmanager
    async def acquire(self, *, timeout_s: float | None = None) -> AsyncIterator[Connection]:
        """A connection from the pool, counted in the pool metrics; Unavailable when none can
        be had (the server went away, or none freed up within `timeout_s`) or when the server
        goes away while it is used, so the RPC answers UNAVAILABLE (retried by clients), not
        INTERNAL."""
        metrics.DB_POOL_WAITING.inc()
        started = time.perf_counter()
        try:
            connection: Connection = await self.pool.acquire(timeout=timeout_s)
        except _FAILURES as exc:
            raise _unavailable(self.url, "gave no connection", exc) from exc
        finally:
            metrics.DB_POOL_WAITING.dec()
            metrics.DB_POOL_ACQUIRE_SECONDS.observe(time.perf_counter() - started)
        try:
            yield connection
        except _CONNECTION_LOST as exc:
            raise _unavailable(self.url, "lost the connection", exc) from exc
        finally:
            await self.pool.release(connection)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection inside a transaction: committed on exit, rolled back on an error."""
        async with self.acquire() as connection, connection.transaction():
            yield connection

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as connection:
            return await connection.execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as connection:
            return await connection.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as connection:
            return await connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as connection:
            return await connection.fetchval(query, *args)

    async def check(self, timeout_s: float = CHECK_TIMEOUT_S) -> float:
        """Seconds a `SELECT 1` took on the check connection (opening it, when needed, included);
        Unavailable when PostgreSQL does not answer within `timeout_s`, everything included.

        Never waits for the pool: a pool that slow queries keep busy says nothing about whether
        the server answers, and failing health then would restart or unroute replicas that are
        merely loaded (the pool's waiting gauge shows that saturation instead)."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s), self._check_lock:
                await self._select_one(timeout_s)
        except (*_FAILURES, asyncpg.InternalClientError) as exc:
            what = f"did not answer SELECT 1 within {timeout_s:g} s"
            raise _unavailable(self.url, what, exc) from exc
        elapsed = time.perf_counter() - started
        metrics.DB_CHECK_SECONDS.set(elapsed)
        return elapsed

    async def _select_one(self, timeout_s: float) -> None:
        try:
            connection = self._check_connection
            if connection is not None and not connection.is_closed():
                try:
                    await connection.fetchval("SELECT 1")
                    return
                except Exception:
                    # It may have broken while idle (a terminated backend, a restarted server,
                    # a proxy's idle cut) without asyncpg noticing yet, which surfaces as any
                    # of its errors (InternalClientError included): a fresh connection decides,
                    # so one stale connection is not reported as an outage.
                    self._drop_check_connection()
            connection = await self._open_check_connection(timeout_s)
            await connection.fetchval("SELECT 1")
        except BaseException:
            # Timed out, cancelled or failed mid-statement: its state is unknown; start afresh.
            self._drop_check_connection()
            raise

    async def _open_check_connection(self, timeout_s: float) -> asyncpg.Connection[asyncpg.Record]:
        try:
            connection: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
                asyncpg_dsn(self.url),
                timeout=timeout_s,
                server_settings={"application_name": CHECK_APPLICATION_NAME},
            )
        except _FAILURES as exc:
            raise _unavailable(self.url, "cannot be reached", exc) from exc
        self._check_connection = connection
        return connection

    def _drop_check_connection(self) -> None:
        connection, self._check_connection = self._check_connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()

    async def close(self) -> None:
        """Close the check connection (the pool is `open_database`'s to close)."""
        connection = self._check_connection
        if connection is None or self._check_lock.locked():
            self._drop_check_connection()  # a check is running on it: do not wait for it
            return
        self._check_connection = None
        try:
            await connection.close(timeout=CHECK_TIMEOUT_S)
        except _FAILURES:
            connection.terminate()


@contextlib.asynccontextmanager
async def open_database(
    url: str,
    *,
    min_size: int = POOL_MIN_SIZE,
    max_size: int = POOL_MAX_SIZE,
    slow_query_s: float = SLOW_QUERY_S,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> AsyncIterator[Database]:
    """A pool of connections to `url`; Unavailable when the server cannot be reached."""
    database: Database | None = None

    async def init(connection: asyncpg.Connection[asyncpg.Record]) -> None:
        assert database is not None
        connection.add_query_logger(database.log_query)

    async def reset(connection: asyncpg.Connection[asyncpg.Record]) -> None:
        """Nothing to undo on release. asyncpg's default reset sends a statement per release
        (UNLISTEN, RESET ALL, advisory unlock, CLOSE ALL): a round trip on every call that
        nothing here needs, since no code sets session state (its advisory locks are
        transaction-scoped, it never LISTENs, SETs or keeps a cursor open). asyncpg still rolls
        back a transaction left open before calling this."""

    pool: asyncpg.Pool[asyncpg.Record] = asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=min(min_size, max_size),
        max_size=max_size,
        timeout=connect_timeout_s,
        init=init,
        reset=reset,
    )
    database = Database(pool, url, slow_query_s=slow_query_s)
    try:
        await pool
    except _FAILURES as exc:
        await pool.close()
        raise _unavailable(url, "cannot be reached", exc) from exc
    metrics.track_pool(pool)
    log.info("PostgreSQL pool open: %s (at most %d connections)", database.display_url, max_size)
    try:
        yield database
    finally:
        await database.close()
        metrics.untrack_pool(pool)
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("PostgreSQL pool did not close in %g s; terminating it", CLOSE_TIMEOUT_S)
            pool.terminate()
