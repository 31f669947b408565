"""What a run stands on: a local Redis, a PostgreSQL database of its own, moto's S3 server, and
the clients the benchmark opens on them."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import redis
from arq.connections import RedisSettings, create_pool

from benchmarks.control_plane.processes import PYTHON, Processes, wait_until
from sparc_video.core.embedded_redis import EmbeddedRedis, answers, free_port
from sparc_video.database import embedded as embedded_postgres
from sparc_video.database.migrations import migrate
from sparc_video.database.urls import redacted
from tests.fixtures.postgres import _admin, create_database, drop_database, run_sync

ACCESS_KEY = SECRET_KEY = "bench"
REGION = "us-east-1"
# Where a PostgreSQL is looked for when $DATABASE_URL is unset or does not answer.
LOCAL_POSTGRES_URLS = (
    "postgresql://postgres@127.0.0.1:5432/postgres",
    "postgresql://root@127.0.0.1:5432/postgres",
)


@contextlib.contextmanager
def moto_server(procs: Processes) -> Iterator[str]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = procs.start(
        "moto", [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], dict(os.environ)
    )

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("moto server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(answers, "moto server")
    try:
        yield endpoint
    finally:
        procs.stop(proc)


@contextlib.contextmanager
def local_redis(workdir: Path) -> Iterator[str]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if answers(url):
        yield url
        return
    server = EmbeddedRedis(workdir / "redis", save="")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """A PostgreSQL server that answers: $DATABASE_URL, else a local one on 5432, else an
    embedded one with its data in the work dir (stopped at the end)."""
    for url in (os.environ.get("DATABASE_URL", ""), *LOCAL_POSTGRES_URLS):
        if url and embedded_postgres.answers(url):
            yield url
            return
    with embedded_postgres.ensure_database(None, workdir / "postgres") as url:
        yield url


@contextlib.contextmanager
def run_database(workdir: Path) -> Iterator[str]:
    """A new database for this run on `postgres_server`, migrated to the newest revision;
    dropped at the end."""
    with postgres_server(workdir) as server_url:
        url = create_database(server_url)
        try:
            run_sync(migrate(url))
            # Diagnosis only (not a production setting): BENCH_SYNCHRONOUS_COMMIT=off shows what
            # the commit's WAL flush costs the figures.
            synchronous_commit = os.environ.get("BENCH_SYNCHRONOUS_COMMIT")
            if synchronous_commit in ("on", "off", "local"):
                name = url.rsplit("/", 1)[1].split("?", 1)[0]
                run_sync(
                    _admin(
                        server_url,
                        f'ALTER DATABASE "{name}" SET synchronous_commit = {synchronous_commit}',
                    )
                )
            print(f"... PostgreSQL: {redacted(url)}", file=sys.stderr, flush=True)
            yield url
        finally:
            drop_database(server_url, url)


def new_signing_key() -> str:
    """An Ed25519 key in PEM for MANIFEST_SIGNING_KEY (serve and worker refuse to start
    without one)."""
    from sparc_video.evidence.signing import new_private_key_pem

    return new_private_key_pem().decode()


@contextlib.asynccontextmanager
async def export_store(redis_url: str, prefix: str, database_url: str) -> AsyncIterator[Any]:
    """An ExportStore over the run's Redis prefix and database, as the service opens it."""
    from sparc_video.core.keys import Keys
    from sparc_video.database.pool import open_database
    from sparc_video.exports.records import ExportStore

    client = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        async with open_database(database_url, min_size=1, max_size=8) as database:
            yield ExportStore(client, Keys(prefix), database, event_retention_s=3600)
    finally:
        await client.aclose()


def s3_client(endpoint: str) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def clean_redis(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        members: list[bytes] = client.zrange(f"{prefix}:exports", 0, -1)  # type: ignore[assignment]
        ids = [m.decode() for m in members]
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for export_id in ids:
            keys += [
                f"arq:{kind}:{export_id}" for kind in ("job", "result", "in-progress", "retry")
            ]
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()
