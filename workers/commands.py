"""The `sparc-video` commands that run workers: `worker`, and `dev` (server and worker in one
process on embedded defaults).

`sparc_video` never imports the workers, so these are added to its CLI through the
`sparc_video.commands` entry point (pyproject.toml), which names `register`. What they share
with `sparc-video serve` (settings, logging and tracing, the gRPC server, the help epilog) comes
from the CLI as a `Host`; the workers import neither the CLI nor the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

if TYPE_CHECKING:
    from sparc_video.core.embedded_redis import EmbeddedRedis
    from sparc_video.core.settings import Settings
    from sparc_video.live.hub import LiveHubs

log = logging.getLogger("sparc_video")
F = TypeVar("F", bound=Callable[..., Any])


class Host(Protocol):
    """What the CLI lends its server-side commands (sparc_video.cli.main.CommandHost)."""

    @property
    def command_class(self) -> type[click.Command]: ...

    @property
    def service_exits(self) -> Mapping[Any, str]: ...

    def log_level_option(self, function: F) -> F: ...

    def settings(self, role: str = "") -> Settings: ...

    def start(self, settings: Settings, service_name: str) -> None: ...

    def with_data_dir(self, settings: Settings, data_dir: Path) -> Settings: ...

    async def serve(
        self, settings: Settings, stop: asyncio.Event | None = None, live: LiveHubs | None = None
    ) -> None: ...

    def run(self, body: Callable[[], object]) -> int: ...


def register(cli: click.Group, host: Host) -> None:
    """Add `worker` and `dev` to the `sparc-video` group."""
    options = {"cls": host.command_class, "exit_codes": host.service_exits, "environment": True}

    @cli.command("worker", **options)
    @host.log_level_option
    def worker(log_level: str) -> int:
        """Run an arq worker that processes exports."""
        from workers.job.runner import run

        settings = host.settings("worker")
        host.start(settings, "sparc-video-worker")
        return host.run(lambda: run(settings))

    @cli.command("dev", **options)
    @click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=Path("var"),
        show_default=True,
        help="where local storage, an embedded Redis and an embedded PostgreSQL keep data",
    )
    @host.log_level_option
    def dev(data_dir: Path, log_level: str) -> int:
        """Server and worker in one process on embedded defaults: the Redis at REDIS_URL and the
        PostgreSQL at DATABASE_URL if they answer, else ones started here (the database's schema
        migrated at start); local storage under --data-dir."""
        settings = loopback_unless_configured(host.settings(), os.environ)
        host.start(settings, "sparc-video")
        return host.run(lambda: _dev(host, host.with_data_dir(settings, data_dir), data_dir))


def loopback_unless_configured(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """`dev` serves this machine only: authentication is off by default there, so it listens on
    loopback unless GRPC_HOST or HTTP_HOST say otherwise (a container sets them)."""
    # Imported in the functions: `sparc-video --help` registers these commands, and the
    # settings model takes longer to import than the rest of the help.
    from sparc_video.core.settings import Settings
    from sparc_video.core.settings.fields import spec

    fields = Settings.model_fields
    changes = {
        name: "127.0.0.1"
        for name in ("grpc_host", "http_host")
        if spec(fields[name]).env not in environ
    }
    return settings.replace(**changes) if changes else settings


def _dev(host: Host, settings: Settings, data_dir: Path) -> None:
    from sparc_video.core.embedded_redis import EmbeddedRedis, answers
    from sparc_video.core.settings import reveal
    from sparc_video.database.embedded import ensure_database

    embedded: EmbeddedRedis | None = None
    if not answers(settings.redis_url):
        log.info("Redis at %s does not answer; starting an embedded one", settings.redis_url)
        embedded = EmbeddedRedis(data_dir / "redis")
        settings = settings.replace(redis_url=embedded.start())
    try:
        configured = reveal(settings.database_url)
        # The embedded PostgreSQL (if DATABASE_URL is unset or does not answer) is stopped when
        # this context exits, after the server and the worker.
        with ensure_database(configured, data_dir / "postgres") as database_url:
            where = "" if database_url == configured else f"embedded in {data_dir / 'postgres'}, "
            settings = settings.replace(database_url=database_url)
            asyncio.run(_run_dev(host, settings, where))
    finally:
        if embedded is not None:
            embedded.stop()


async def _migrate(url: str) -> str:
    """Upgrade the dev database to this version's schema; what it found and did, for the
    banner."""
    # alembic announces its autogenerate plugins at INFO when imported; its steps still log.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from sparc_video.database.migrations import upgrade

    before, after = await upgrade(url)
    change = "already there" if before == after else f"upgraded from {before or 'empty'}"
    return f"schema {after}, {change}"


async def _run_dev(host: Host, settings: Settings, database_where: str = "") -> None:
    from sparc_video.app import run_recorder
    from sparc_video.core.settings import reveal
    from sparc_video.database.urls import redacted
    from sparc_video.evidence.signing import ManifestSigner
    from sparc_video.live.hub import LiveHubs
    from workers.job.runner import build_worker

    database_url = reveal(settings.database_url)
    assert database_url is not None
    # dev migrates at start (production runs `sparc-video migrate` as a Job instead): the
    # server and the worker refuse a schema older than theirs.
    schema = await _migrate(database_url)

    # A development server on this machine: unless authentication is configured, every
    # caller is the local admin (the README's grpcurl walk-through needs no credentials).
    if not settings.auth_configured:
        settings = settings.replace(auth_disabled=True)

    worker = build_worker(settings, handle_signals=False)
    worker_task = asyncio.create_task(worker.main(), name="dev-worker")
    # The recorder too, like the worker: cameras whose recording policy is on get recorded.
    # Its cameras' live view is served by the API server below, from the hubs they share.
    live = LiveHubs()
    recorder_stop = asyncio.Event()
    recorder_task = asyncio.create_task(
        run_recorder(settings, recorder_stop, live=live), name="dev-recorder"
    )
    # Creates the key in the data directory on the first run, as the server would.
    signer = ManifestSigner.from_settings(settings)
    print(
        f"sparc-video dev: gRPC on {settings.grpc_host}:{settings.grpc_port}, HTTP on "
        f"{settings.http_host}:{settings.http_port} (links {settings.http_base_url}), Redis "
        f"{settings.redis_url}, PostgreSQL {redacted(database_url)} ({database_where}{schema}), "
        "storage "
        f"{settings.s3_bucket or settings.local_storage_dir.resolve()}, manifests signed by "
        f"{signer.key_id}. "
        + (
            "Authentication is disabled: every caller is an admin. "
            if settings.auth_disabled
            else ""
        )
        + "Ctrl-C stops.",
        flush=True,
    )
    try:
        await host.serve(settings, asyncio.Event(), live)
    finally:
        recorder_stop.set()
        with contextlib.suppress(Exception):
            await recorder_task
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
        await worker.close()
