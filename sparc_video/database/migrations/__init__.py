"""Versioned schema changes (alembic), applied programmatically: no alembic.ini at run time.

`migrate(url)` upgrades a database to the newest revision (`head_revision()`), in one
transaction under an advisory lock, so replicas starting together migrate once and a failed
migration leaves nothing half done. `current_revision(url)` says where a database stands (None:
never migrated). `require_current_schema(url)` is what the server and the workers check at start:
they never migrate themselves (production runs `sparc-video migrate` as a Job), and refuse a
schema older than theirs.

A new migration: add `versions/NNNN_what.py` by hand or with alembic's autogenerate
(`alembic -c <ini naming script_location = sparc_video/database/migrations> revision
--autogenerate`), change `schema.py` to match; tests/test_database.py checks that the migrated
schema and `schema.metadata` agree.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sparc_video.core.errors import FailedPrecondition, Unavailable
from sparc_video.database.urls import redacted, sqlalchemy_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent
# pg_advisory_xact_lock key held while migrating: one migration at a time per database.
MIGRATION_LOCK_KEY = 0x5BA2C_0001
# How long connecting may take before the database counts as unreachable.
CONNECT_TIMEOUT_S = 10.0


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations under sparc_video/database/migrations/versions"
    return head


def _engine(url: str) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        poolclass=pool.NullPool,
        connect_args={"timeout": CONNECT_TIMEOUT_S},
    )


@contextlib.asynccontextmanager
async def _connected(url: str, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """An open connection, or Unavailable naming the server (password hidden) and why."""
    try:
        connection = await engine.connect()
    except (OSError, TimeoutError, asyncpg.PostgresError, SQLAlchemyError) as exc:
        raise Unavailable(
            f"PostgreSQL at {redacted(url)} cannot be reached: {exc}. Check DATABASE_URL and "
            "that the server is running."
        ) from exc
    try:
        yield connection
    finally:
        await connection.close()


async def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest revision; nothing to do when it is there.

    Raises Unavailable when the database cannot be reached.
    """
    config = alembic_config(url)

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    engine = _engine(url)
    try:
        async with _connected(url, engine) as connection, connection.begin():
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            await connection.run_sync(upgrade)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at; None when it was never migrated."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    engine = _engine(url)
    try:
        async with _connected(url, engine) as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


async def upgrade(url: str) -> tuple[str | None, str | None]:
    """`migrate`, and the revisions the database was at before and is at after (None: never
    migrated), for the caller to say what happened."""
    before = await current_revision(url)
    await migrate(url)
    return before, await current_revision(url)


class SchemaOutdated(FailedPrecondition):
    """The database's schema is older than this version's newest revision."""


async def require_current_schema(url: str) -> str | None:
    """The database's revision when this version can run on it: the newest this code knows, or
    one it does not know (a newer version migrated it: migrations keep the previous version
    working during a rolling deploy, so that is logged, not refused). SchemaOutdated, naming
    `sparc-video migrate`, when the schema is older or was never created."""
    current = await current_revision(url)
    head = head_revision()
    if current == head:
        return current
    known = {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }
    if current is not None and current not in known:
        log.warning(
            "PostgreSQL at %s is at schema revision %s, which this version (newest %s) does not "
            "know: a newer version migrated it; starting anyway",
            redacted(url),
            current,
            head,
        )
        return current
    raise SchemaOutdated(
        f"PostgreSQL at {redacted(url)} is at schema revision "
        f"{current or 'none (never migrated)'}, older than this version's {head}. Run "
        "`sparc-video migrate` with the same DATABASE_URL first (in Kubernetes: a Job or an init "
        "container, see docs/operations.md), then start again.",
        reason="SCHEMA_OUTDATED",
    )
