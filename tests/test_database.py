"""PostgreSQL, the system of record: migrations build exactly `schema.metadata`, the audit log
is append-only in the database, the pool reports an unreachable server as Unavailable and
exports its metrics, and the embedded PostgreSQL starts where DATABASE_URL does not answer."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from prometheus_client import REGISTRY
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from sparc_video.app import open_configured_database
from sparc_video.cli import main as cli
from sparc_video.core.embedded_redis import free_port
from sparc_video.core.errors import Unavailable
from sparc_video.core.settings import Settings, SettingsError, reveal
from sparc_video.database.embedded import (
    EmbeddedPostgres,
    answers,
    directories_to_open_for_postgres,
    ensure_database,
)
from sparc_video.database.migrations import (
    alembic_config,
    current_revision,
    head_revision,
    migrate,
)
from sparc_video.database.pool import CHECK_APPLICATION_NAME, Database, open_database
from sparc_video.database.schema import UNFINISHED_EXPORTS, metadata
from sparc_video.database.urls import asyncpg_dsn, redacted, sqlalchemy_url, with_database
from sparc_video.exports.models import ExportState


def nothing_listens() -> str:
    """A URL with a password where no server listens (connections are refused at once)."""
    return f"postgresql://sparc:hunter2-secret@127.0.0.1:{free_port()}/sparc_video"


async def schema_differences(url: str) -> list[Any]:
    engine = create_async_engine(sqlalchemy_url(url), poolclass=pool.NullPool)

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


# --- migrations --------------------------------------------------------------------------------


async def test_migrate_builds_the_schema_from_empty_and_again_is_a_no_op(
    new_database: Callable[[], str],
) -> None:
    url = new_database()
    assert await current_revision(url) is None
    await migrate(url)
    assert await current_revision(url) == head_revision()
    await migrate(url)
    assert await current_revision(url) == head_revision()
    assert await schema_differences(url) == []


async def test_every_migration_downgrades_and_upgrades_again(
    new_database: Callable[[], str],
) -> None:
    url = new_database()
    await migrate(url)
    config = alembic_config(url)
    engine = create_async_engine(sqlalchemy_url(url), poolclass=pool.NullPool)

    def downgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    try:
        async with engine.begin() as connection:
            await connection.run_sync(downgrade)
    finally:
        await engine.dispose()
    assert await current_revision(url) is None
    await migrate(url)
    assert await schema_differences(url) == []


async def test_concurrent_migrations_wait_for_each_other(new_database: Callable[[], str]) -> None:
    url = new_database()
    await asyncio.gather(*(migrate(url) for _ in range(3)))
    assert await current_revision(url) == head_revision()


async def test_the_migrated_schema_matches_the_metadata(database_url: str) -> None:
    assert await schema_differences(database_url) == []
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
    finally:
        await connection.close()
    assert tables == {*metadata.tables, "alembic_version"}


async def test_the_quota_counts_unfinished_exports_through_their_partial_index(
    database_url: str,
) -> None:
    unfinished = ", ".join(f"'{s.value}'" for s in ExportState if not s.terminal)
    assert f"state IN ({unfinished})" == UNFINISHED_EXPORTS
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute("SET enable_seqscan = off")  # an empty table: any plan does
        plan = await connection.fetch(
            f"EXPLAIN SELECT count(*) FROM exports WHERE requester = $1 AND {UNFINISHED_EXPORTS}",
            "alice",
        )
    finally:
        await connection.close()
    assert "ix_exports_requester_unfinished" in " ".join(row[0] for row in plan)


async def test_migrate_reports_an_unreachable_database_as_unavailable() -> None:
    url = nothing_listens()
    with pytest.raises(Unavailable) as raised:
        await migrate(url)
    assert "cannot be reached" in raised.value.message
    assert "hunter2" not in raised.value.message and "***" in raised.value.message


# --- what the schema enforces ------------------------------------------------------------------


async def test_the_audit_log_is_append_only(database_url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        entry = await connection.fetchval(
            "INSERT INTO audit_log (principal, action, resource, case_id, details) "
            "VALUES ('alice', 'export.create', 'exports/e1', 'case-7', '{\"x\": 1}') RETURNING id"
        )
        for statement in (
            f"UPDATE audit_log SET principal = 'mallory' WHERE id = {entry}",
            f"DELETE FROM audit_log WHERE id = {entry}",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await connection.execute(statement)
        row = await connection.fetchrow("SELECT * FROM audit_log WHERE id = $1", entry)
        assert row is not None and row["principal"] == "alice" and row["at"] is not None
    finally:
        await connection.close()


async def test_a_held_recording_and_a_camera_with_recordings_cannot_be_deleted(
    database_url: str,
) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute(
            "INSERT INTO cameras (id, record, create_time, update_time) "
            "VALUES ('cam-h', '{}', now(), now())"
        )
        await connection.execute(
            "INSERT INTO recordings (id, camera_id, start_ns, end_ns, storage_key, sha256, record)"
            " VALUES ('rec-h', 'cam-h', 0, 60000000000, 'recordings/rec-h.mp4', 'ab', '{}')"
        )
        await connection.execute(
            "INSERT INTO exports (id, state, create_time, update_time, record) "
            "VALUES ('exp-h', 'RUNNING', now(), now(), '{}')"
        )
        await connection.execute(
            "INSERT INTO retention_holds (recording_id, export_id) VALUES ('rec-h', 'exp-h')"
        )
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await connection.execute("DELETE FROM recordings WHERE id = 'rec-h'")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await connection.execute("DELETE FROM cameras WHERE id = 'cam-h'")
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute("UPDATE exports SET state = 'DONE' WHERE id = 'exp-h'")
        # The export's row going takes its hold along; then the recording may go.
        await connection.execute("DELETE FROM exports WHERE id = 'exp-h'")
        await connection.execute("DELETE FROM recordings WHERE id = 'rec-h'")
        await connection.execute("DELETE FROM cameras WHERE id = 'cam-h'")
    finally:
        await connection.close()


# --- the pool ----------------------------------------------------------------------------------


async def test_check_answers_with_the_round_trip(database_url: str) -> None:
    async with open_database(database_url) as database:
        assert await database.check() >= 0
        assert await database.fetchval("SELECT count(*) FROM alembic_version") == 1


async def test_an_unreachable_database_is_unavailable_with_a_clear_message() -> None:
    url = nothing_listens()
    with pytest.raises(Unavailable) as at_open:
        async with open_database(url):
            pass
    # A pool that connects lazily opens; its health check says what is wrong.
    async with open_database(url, min_size=0) as database:
        with pytest.raises(Unavailable) as at_check:
            await database.check()
    for raised in (at_open, at_check):
        message = raised.value.message
        assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in message
        assert "hunter2" not in message and "***" in message
        assert "ConnectionRefusedError" in message and "DATABASE_URL" in message


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_pool_metrics_and_the_slow_query_log(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    acquired = sample("database_pool_acquire_seconds_count")
    slow = sample("database_slow_queries_total")
    caplog.set_level(logging.WARNING, logger="sparc_video.database.pool")
    # Threshold 0: every statement counts as slow, without timing anything.
    async with open_database(database_url, slow_query_s=0.0, max_size=3) as database:
        assert sample("database_pool_max_connections") >= 3
        async with database.acquire() as connection:
            assert sample("database_pool_connections_in_use") >= 1
            await connection.fetchval("SELECT $1::text", "secret-parameter")
        assert sample("database_pool_acquire_seconds_count") >= acquired + 1
        assert sample("database_slow_queries_total") >= slow + 1
        assert sample("database_pool_waiting") == 0
    logged = [r.getMessage() for r in caplog.records if "slow query" in r.getMessage()]
    assert any("SELECT $1::text" in text for text in logged), logged
    assert not any("secret-parameter" in text for text in logged)


async def test_the_pool_settings_reach_the_pool_and_slow_queries_are_logged(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """DATABASE_POOL_MAX_SIZE and DATABASE_SLOW_QUERY, through the app's wiring."""
    settings = Settings.from_env(
        {"DATABASE_URL": database_url, "DATABASE_POOL_MAX_SIZE": "3", "DATABASE_SLOW_QUERY": "0.1"}
    )
    caplog.set_level(logging.WARNING, logger="sparc_video.database.pool")
    slow = sample("database_slow_queries_total")
    async with open_configured_database(settings) as database:
        assert database is not None
        assert database.pool.get_max_size() == 3 and database.slow_query_s == 0.1
        await database.fetchval("SELECT 1")
        await database.execute("SELECT pg_sleep(0.15)")
    logged = [r.getMessage() for r in caplog.records if "slow query" in r.getMessage()]
    [sleep] = [text for text in logged if "pg_sleep(0.15)" in text]
    assert "(threshold 0.100 s)" in sleep, logged
    assert sample("database_slow_queries_total") >= slow + 1


async def test_the_check_answers_while_long_queries_hold_every_pool_connection(
    database_url: str,
) -> None:
    """The check has a connection of its own: a saturated pool shows in the waiting gauge, not
    as PostgreSQL being down."""
    async with open_database(database_url, max_size=2) as database:
        holding = [asyncio.create_task(database.execute("SELECT pg_sleep(10)")) for _ in range(2)]
        waiting = asyncio.create_task(database.fetchval("SELECT 1"))
        try:
            deadline = time.monotonic() + 10
            # Full: both connections open and busy, and a query waiting. The waiting gauge
            # also counts an acquire still opening its connection, so it alone is not enough.
            while (
                sample("database_pool_waiting") < 1
                or database.pool.get_size() < 2
                or database.pool.get_idle_size() > 0
            ):
                assert time.monotonic() < deadline, "the pool never filled"
                await asyncio.sleep(0.02)
            started = time.monotonic()
            assert await database.check(timeout_s=1.0) >= 0
            assert time.monotonic() - started < 0.5
            assert database.pool.get_size() == 2, "the check took no connection from the pool"
            assert sample("database_pool_waiting") >= 1 and not waiting.done()
        finally:
            for task in (*holding, waiting):
                task.cancel()
            await asyncio.gather(*holding, waiting, return_exceptions=True)


async def test_a_connection_lost_under_a_statement_is_unavailable(database_url: str) -> None:
    """What an RPC sees when PostgreSQL goes away mid-call: UNAVAILABLE (retryable), and the
    pool replaces the connection."""
    async with open_database(database_url, max_size=1) as database:
        with pytest.raises(Unavailable, match="lost the connection") as lost:
            await database.fetchval("SELECT pg_terminate_backend(pg_backend_pid())")
        assert lost.value.code.name == "UNAVAILABLE"
        assert await database.fetchval("SELECT 1") == 1


async def check_backend_pids(database: Database) -> list[int]:
    rows = await database.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
        " AND datname = current_database()",
        CHECK_APPLICATION_NAME,
    )
    return [row["pid"] for row in rows]


async def test_a_broken_check_connection_is_reopened_and_closed_with_the_pool(
    database_url: str,
) -> None:
    async with open_database(database_url) as database:
        assert await check_backend_pids(database) == []  # opened at the first check
        await database.check()
        await database.check()
        [first] = await check_backend_pids(database)
        assert await database.fetchval("SELECT pg_terminate_backend($1)", first)
        # The next check reopens it, whether or not asyncpg noticed the loss yet.
        await database.check()
        [second] = await check_backend_pids(database)
        assert second != first
    async with open_database(database_url) as other:
        deadline = time.monotonic() + 5
        while await check_backend_pids(other):  # closed with the pool
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


# --- the embedded PostgreSQL -------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_the_embedded_postgres_starts_when_the_url_does_not_answer(
    world_traversable_dir: Path,
) -> None:
    """pgserver's PostgreSQL 16: a few seconds, so it runs with the default selection."""
    data_dir = world_traversable_dir / "postgres"
    with ensure_database(nothing_listens(), data_dir) as url:
        assert answers(url)
        assert "sparc_video" in url

        async def use() -> None:
            await migrate(url)
            async with open_database(url) as database:
                await database.check()
                assert await current_revision(url) == head_revision()

        asyncio.run(use())
    assert not answers(url)

    # Data stays: a second start finds the migrated schema. Then the server goes away under
    # an open pool: the health check says so.
    server = EmbeddedPostgres(data_dir)
    again = server.start()
    try:

        async def lose_it() -> None:
            assert await current_revision(again) == head_revision()
            async with open_database(again) as database:
                await database.check()
                server.stop()
                with pytest.raises(Unavailable, match="Check DATABASE_URL"):
                    await database.check()

        asyncio.run(lose_it())
    finally:
        server.stop()


@pytest.mark.timeout(180)
def test_the_embedded_postgres_is_started_and_stopped_outside_this_process(
    world_traversable_dir: Path,
) -> None:
    """pgserver forks pg_ctl (as another user, when root); forking a process with gRPC threads
    crashed the child in CI (pg_ctl "died with SIGSEGV"). So a fresh helper interpreter does it,
    and pgserver is never loaded here: checked in a fresh interpreter with threads running."""
    data_dir = world_traversable_dir / "postgres"
    script = f"""
import sys, threading
from pathlib import Path
from sparc_video.database.embedded import EmbeddedPostgres, answers
threading.Thread(target=threading.Event().wait, daemon=True).start()
server = EmbeddedPostgres(Path({str(data_dir)!r}))
url = server.start()
assert answers(url)
EmbeddedPostgres(Path({str(data_dir)!r})).stop()  # another handle stops it too
assert not answers(url)
server.stop()  # and stopping a stopped one is quiet
assert "pgserver" not in sys.modules, "pgserver was loaded in this process"
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=170
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as another user only for root")
def test_as_root_the_directories_postgres_must_enter_are_named(
    world_traversable_dir: Path,
) -> None:
    private = world_traversable_dir / "private"
    private.mkdir(mode=0o700)
    world_traversable_dir.chmod(0o755)
    found = directories_to_open_for_postgres(private / "var" / "postgres")
    assert private in found and world_traversable_dir not in found
    private.chmod(0o755)
    assert private not in directories_to_open_for_postgres(private / "var" / "postgres")


def test_ensure_database_uses_a_url_that_answers(database_url: str, tmp_path: Path) -> None:
    with ensure_database(database_url, tmp_path / "unused") as url:
        assert url == database_url
    assert not (tmp_path / "unused").exists()


# --- configuration and the command line ---------------------------------------------------------


def test_urls() -> None:
    url = "postgresql://u:p%40ss@db.example:5432/sparc?sslmode=require"
    assert sqlalchemy_url(url).startswith("postgresql+asyncpg://u:p%40ss@db.example:5432/")
    assert asyncpg_dsn(sqlalchemy_url(url)) == url
    assert (
        with_database(url, "other") == "postgresql://u:p%40ss@db.example:5432/other?sslmode=require"
    )
    assert redacted(url) == "postgresql://u:***@db.example:5432/sparc?sslmode=require"
    assert redacted("postgresql://u@/db?host=/tmp/pg") == "postgresql://u@/db?host=/tmp/pg"
    assert redacted("postgresql://u:@/db?host=/tmp/pg") == "postgresql://u:@/db?host=/tmp/pg"
    with pytest.raises(ValueError, match="postgresql://"):
        asyncpg_dsn("mysql://u@h/db")


def test_database_url_setting(tmp_path: Path) -> None:
    assert Settings.from_env({}).database_url is None
    url = "postgresql://sparc:hunter2@db:5432/sparc"
    settings = Settings.from_env({"DATABASE_URL": url})
    assert reveal(settings.database_url) == url and "hunter2" not in repr(settings)
    secret_file = tmp_path / "database-url"
    secret_file.write_text(url + "\n")
    assert reveal(Settings.from_env({"DATABASE_URL_FILE": str(secret_file)}).database_url) == url
    with pytest.raises(SettingsError, match="DATABASE_URL: must start with postgresql://"):
        Settings.from_env({"DATABASE_URL": "mysql://db/sparc"})


def test_migrate_command(
    new_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = new_database()
    monkeypatch.setenv("DATABASE_URL", url)
    assert cli.main(["migrate"]) == 0
    assert f"at revision {head_revision()}" in capsys.readouterr().out
    assert cli.main(["migrate"]) == 0
    assert "already there" in capsys.readouterr().out

    monkeypatch.setenv("DATABASE_URL", nothing_listens())
    assert cli.main(["migrate"]) == 1
    error = capsys.readouterr().err
    assert "cannot be reached" in error and "hunter2" not in error

    monkeypatch.delenv("DATABASE_URL")
    assert cli.main(["migrate"]) == 2
    assert "DATABASE_URL is not set" in capsys.readouterr().err
