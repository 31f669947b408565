"""The server with DATABASE_URL set: its `database` check gates SERVING (gRPC health and /health)
with its latency, the pool's metrics are on /metrics, a PostgreSQL that stops answering turns the
server NOT_SERVING until it answers again, and a schema older than this version's keeps `serve`
from starting (it names `sparc-video migrate`). A worker with DATABASE_URL serves its pool's
metrics on its own port."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sparc_video.api.server import EXPORT_SERVICE
from sparc_video.app import DatabaseNotConfigured, open_app
from sparc_video.core.embedded_redis import free_port
from sparc_video.core.settings import Settings
from sparc_video.database.embedded import EmbeddedPostgres
from sparc_video.database.migrations import SchemaOutdated, head_revision, migrate
from tests.fixtures.service import RunningService, settings_env, start_service
from workers.telemetry.worker import serve_worker_metrics

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
INTERVAL_S = 0.2
ROOT = Path(__file__).resolve().parent.parent


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def health(service: RunningService) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{service.http_url}/health") as response,
    ):
        return response.status, await response.json()


async def grpc_status(service: RunningService) -> int:
    stub = health_pb2_grpc.HealthStub(service.channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=EXPORT_SERVICE))
    return int(response.status)


async def until(
    service: RunningService, grpc: int, http: int, timeout_s: float = 30
) -> dict[str, Any]:
    """The /health report once gRPC health and /health both say what is expected."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, report = await health(service)
        if status == http and await grpc_status(service) == grpc:
            return report
        assert time.monotonic() < deadline, (status, report)
        await asyncio.sleep(INTERVAL_S / 2)


async def test_the_database_check_gates_serving_and_the_pool_metrics_are_served(
    database_url: str, service_settings: Callable[..., Settings]
) -> None:
    settings = service_settings(database_url=database_url, health_check_interval_s=INTERVAL_S)
    async with start_service(settings, worker=False) as service:
        assert service.app.database is not None
        report = await until(service, SERVING, 200)
        database = report["checks"]["database"]
        assert database["ok"] is True and database["critical"] is True, database
        assert database["latency_ms"] > 0
        status, metrics = await get(f"{service.http_url}/metrics")
        assert status == 200
        assert 'video_health_check_ok{check="database",critical="true"} 1.0' in metrics
        assert 'video_health_check_latency_seconds{check="database"}' in metrics
        for family in (
            "database_pool_connections_in_use",
            "database_pool_max_connections",
            "database_pool_waiting",
            "database_pool_acquire_seconds_count",
        ):
            assert f"\n{family} " in metrics, family


DATABASE_FAMILIES = (
    "database_pool_connections_in_use",
    "database_pool_connections",
    "database_pool_max_connections",
    "database_pool_waiting",
    "database_pool_acquire_seconds_count",
    "database_query_seconds_count",
    "database_slow_queries_total",
)


async def worker_metrics(port: int, timeout_s: float = 30) -> str:
    """The worker's /metrics once its port answers (the worker starts in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status, text = await get(f"http://127.0.0.1:{port}/metrics")
        except aiohttp.ClientConnectionError:
            assert time.monotonic() < deadline, "the worker's metrics port never answered"
            await asyncio.sleep(0.1)
            continue
        assert status == 200
        return text


async def test_a_worker_with_database_url_serves_its_pool_metrics(
    database_url: str, service_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    settings = service_settings(
        database_url=database_url, worker_metrics_port=port, database_pool_max_size=3
    )
    async with start_service(settings):
        text = await worker_metrics(port)
    assert "\nvideo_worker_slots " in text  # still the worker's own registry
    for family in DATABASE_FAMILIES:
        assert f"\n{family} " in text, family
    assert "database_check_seconds" not in text  # workers run no database check
    # Server and worker share this test's process, so their pools add up: at least the
    # worker's own (DATABASE_POOL_MAX_SIZE).
    [allowed] = [
        line for line in text.splitlines() if line.startswith("database_pool_max_connections ")
    ]
    assert float(allowed.split()[1]) >= 3

    # Without a database URL the port has no database series (the port alone: no service).
    port = free_port()
    settings = service_settings(worker_metrics_port=port).replace(database_url=None)
    async with serve_worker_metrics(settings):
        text = await worker_metrics(port)
    assert "\nvideo_worker_slots " in text and "database_pool" not in text


@pytest.mark.timeout(240)
async def test_a_database_that_stops_answering_turns_not_serving_until_it_returns(
    world_traversable_dir: Path, service_settings: Callable[..., Settings]
) -> None:
    """A PostgreSQL of its own (pgserver), stopped and started again under a running server."""
    data_dir = world_traversable_dir / "postgres"
    postgres = EmbeddedPostgres(data_dir)
    url = await asyncio.to_thread(postgres.start)
    try:
        await migrate(url)
        settings = service_settings(database_url=url, health_check_interval_s=INTERVAL_S)
        async with start_service(settings, worker=False) as service:
            report = await until(service, SERVING, 200)
            assert report["checks"]["database"]["ok"] is True

            await asyncio.to_thread(postgres.stop)
            report = await until(service, NOT_SERVING, 503)
            database = report["checks"]["database"]
            assert database["ok"] is False and database["critical"] is True
            assert "Check DATABASE_URL" in database["error"], database
            # Only the database failed: the other critical checks still pass.
            assert report["checks"]["redis"]["ok"] and report["checks"]["storage"]["ok"]

            postgres = EmbeddedPostgres(data_dir)
            assert await asyncio.to_thread(postgres.start) == url
            report = await until(service, SERVING, 200)
            assert report["checks"]["database"]["ok"] is True
    finally:
        await asyncio.to_thread(postgres.stop)


@pytest.mark.timeout(120)
def test_serve_worker_and_recorder_refuse_to_start_without_a_database(
    service_settings: Callable[..., Settings],
) -> None:
    env = settings_env(service_settings())
    del env["DATABASE_URL"]
    for command in ("serve", "worker", "recorder"):
        started = subprocess.run(
            [sys.executable, "-m", "sparc_video.cli", command],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=100,
        )
        assert started.returncode == 2, (command, started.stderr)
        assert f"`{command}` needs DATABASE_URL" in started.stderr
        assert "sparc-video dev` starts one" in started.stderr


async def test_the_app_refuses_to_open_without_a_database(
    service_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(DatabaseNotConfigured, match="DATABASE_URL is not set"):
        async with open_app(service_settings(database_url=None)):
            pass


async def test_an_unmigrated_schema_is_refused_naming_sparc_video_migrate(
    new_database: Callable[[], str], service_settings: Callable[..., Settings]
) -> None:
    url = new_database()
    with pytest.raises(SchemaOutdated) as raised:
        async with open_app(service_settings(database_url=url)):
            pass
    message = raised.value.message
    assert "none (never migrated)" in message and head_revision() in message
    assert "sparc-video migrate" in message
    await migrate(url)
    async with open_app(service_settings(database_url=url)) as app:
        assert app.database is not None


@pytest.mark.timeout(120)
def test_serve_refuses_to_start_on_an_old_schema(
    new_database: Callable[[], str], service_settings: Callable[..., Settings]
) -> None:
    env = {**settings_env(service_settings()), "DATABASE_URL": new_database()}
    serve = subprocess.run(
        [sys.executable, "-m", "sparc_video.cli", "serve"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert serve.returncode == 1, serve.stderr
    assert "older than this version's" in serve.stderr
    assert "Run `sparc-video migrate`" in serve.stderr
