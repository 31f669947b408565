"""`sparc-video`: run the server, put videos in storage, and talk to a server as a client
(`export ...`, `queue ...`, `camera ...`, `recording ...`, `verify`).

Commands that live outside `sparc_video` (`worker` and `dev`, in `workers/commands.py`) are
added through the `sparc_video.commands` entry points: each names a `register(cli, host)` that
adds its commands to the group, with `host` (a `CommandHost`) for what they share with
`serve`. `sparc_video` never imports them. The other commands' modules, and the entry points,
are imported only when a command needs them (sparc_video/cli/lazy.py).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sparc_video.cli.lazy import LazyGroup
from sparc_video.cli.options import (
    LOG_LEVEL,
    SERVICE_EXITS,
    ExitCode,
    SparcCommand,
    configure_logging,
    connection_options,
    log_level_option,
    resolve,
)

if TYPE_CHECKING:
    from sparc_video.core.settings import Settings
    from sparc_video.live.hub import LiveHubs

COMMANDS_GROUP = "sparc_video.commands"
log = logging.getLogger("sparc_video")


# The commands of their own modules, each imported only when named: a command needs the gRPC
# client, the simulator or the settings model, not all of them. `--help` lists them from these
# summaries, which tests/test_cli_imports.py holds equal to each command's own short help.
COMMANDS = {
    "audit": (
        "sparc_video.cli.audit:audit",
        "Who did what, oldest first: the audit trail of CASE_ID, or of --resource (admins).",
    ),
    "camera": (
        "sparc_video.cli.cameras:camera",
        "Register, inspect, probe and snapshot cameras on a server (at --target).",
    ),
    "export": (
        "sparc_video.cli.exports:export",
        "Create, inspect, watch and download exports on a server (at --target).",
    ),
    "migrate": (
        "sparc_video.cli.migrate:migrate_command",
        "Upgrade the PostgreSQL schema at DATABASE_URL to the newest revision, then print the "
        "revision.",
    ),
    "queue": ("sparc_video.cli.queue:queue", "Queue statistics of a server (at --target)."),
    "recording": (
        "sparc_video.cli.recordings:recording",
        "Register, list and delete recordings of cameras on a server (at --target).",
    ),
    "test-camera": (
        "sparc_video.cli.test_camera:test_camera_command",
        "Serve a test camera over RTSP (RTP interleaved on TCP) until stopped.",
    ),
    "upload": (
        "sparc_video.cli.uploads:upload",
        "Upload FILE through the API (UploadService) as a source for exports, with its SHA-256 "
        "recorded; prints the object key to give `export create`.",
    ),
    "verify": (
        "sparc_video.cli.verify:verify",
        "Check a downloaded export bundle against its signed manifest.",
    ),
}


@click.group(
    "sparc-video",
    cls=LazyGroup,
    environment=True,
    lazy={name: target for name, (target, _) in COMMANDS.items()},
    summaries={name: summary for name, (_, summary) in COMMANDS.items()},
    context_settings={"help_option_names": ["-h", "--help"]},
)
@connection_options
def cli(**_: Any) -> None:
    """SPARC video export service: the server, a worker, both at once on embedded defaults
    (`dev`), and a client of a running server.

    Global options (--log-level, --target, --format, ...) may come before or after the
    command."""


# ---------------------------------------------------------------------------------------------
# Server-side commands


class CommandHost:
    """What the server-side commands share, handed to the `sparc_video.commands` entry points:
    the command class (help epilog with the environment and exit codes), settings from the
    environment, logging and tracing, and the gRPC server."""

    command_class: type[click.Command] = SparcCommand
    service_exits = SERVICE_EXITS
    log_level_option = staticmethod(log_level_option)

    def settings(self, role: str = "") -> Settings:
        """The settings from the environment; a bad one ends the command with exit 2. A `serve`
        or `worker` role also needs the shared manifest signing key and DATABASE_URL (`dev`
        starts a PostgreSQL itself)."""
        from sparc_video.core.settings import Settings, SettingsError, reveal
        from sparc_video.evidence.signing import SigningKeyNotConfigured, require_configured_key

        try:
            settings = Settings.from_env()
            if role in ("serve", "worker"):
                require_configured_key(settings, role)
        except (SettingsError, SigningKeyNotConfigured) as exc:
            click.echo(f"sparc-video: {exc}", err=True)
            raise click.exceptions.Exit(ExitCode.USAGE) from None
        if role in ("serve", "worker", "recorder") and not reveal(settings.database_url):
            click.echo(
                f"sparc-video: `{role}` needs DATABASE_URL, the PostgreSQL that holds every "
                "export, camera and audit entry (run `sparc-video migrate` once against it); "
                "`sparc-video dev` starts one by itself",
                err=True,
            )
            raise click.exceptions.Exit(ExitCode.USAGE)
        return settings

    def start(self, settings: Settings, service_name: str) -> None:
        """Structured logs (LOG_FORMAT), tracing (OTEL_*) and uvloop for a long-running
        command."""
        from sparc_video.core.event_loop import install_uvloop
        from sparc_video.observability.logs import configure_logging as configure_logs
        from sparc_video.observability.tracing import setup_tracing

        log_level = resolve(click.get_current_context(), LOG_LEVEL.name)
        configure_logs(settings, log_level, exclusive=True)
        setup_tracing(service_name)
        install_uvloop()

    def with_data_dir(self, settings: Settings, data_dir: Path) -> Settings:
        """Local storage under `data_dir/storage` and the recorder's buffer under
        `data_dir/recorder-buffer`, unless LOCAL_STORAGE_DIR or RECORDER_BUFFER_DIR say
        otherwise."""
        from sparc_video.core.settings import Settings

        defaults = Settings()
        changes: dict[str, Any] = {}
        if settings.local_storage_dir == defaults.local_storage_dir:
            changes["local_storage_dir"] = data_dir / "storage"
        if settings.recorder_buffer_dir == defaults.recorder_buffer_dir:
            changes["recorder_buffer_dir"] = data_dir / "recorder-buffer"
        return settings.replace(**changes) if changes else settings

    async def serve(
        self, settings: Settings, stop: asyncio.Event | None = None, live: LiveHubs | None = None
    ) -> None:
        from sparc_video.api.server import serve

        await serve(settings, stop, live)

    def run(self, body: Callable[[], object]) -> int:
        """Run a server-side command's body; what stops it becomes an exit code."""
        from sparc_video.core.embedded_redis import EmbeddedRedisError
        from sparc_video.core.errors import SparcVideoError
        from sparc_video.database.embedded import EmbeddedPostgresError

        try:
            body()
        except KeyboardInterrupt:
            return ExitCode.INTERRUPTED
        except SparcVideoError as exc:
            # What start-up refuses on purpose: a database that cannot be reached, or whose
            # schema is older than this version's (run `sparc-video migrate`).
            click.echo(f"sparc-video: {exc.message}", err=True)
            return ExitCode.FAILED
        except (EmbeddedRedisError, EmbeddedPostgresError, ValueError, OSError) as exc:
            click.echo(f"sparc-video: {exc}", err=True)
            return ExitCode.FAILED
        return ExitCode.OK


HOST = CommandHost()
STORE_EXITS = {
    **SERVICE_EXITS,
    ExitCode.OK: "stored",
    ExitCode.FAILED: "not stored: storage failed, or a bad key or file",
}


def _configure(ctx: click.Context) -> None:
    configure_logging(resolve(ctx, LOG_LEVEL.name))


@cli.command("serve", exit_codes=SERVICE_EXITS, environment=True)
@log_level_option
def serve(log_level: str) -> int:
    """Run the gRPC server (and the HTTP port for /metrics, /health and downloads)."""
    _configure(click.get_current_context())
    settings = HOST.settings("serve")
    HOST.start(settings, "sparc-video")
    return HOST.run(lambda: asyncio.run(HOST.serve(settings)))


@cli.command("recorder", exit_codes=SERVICE_EXITS, environment=True)
@log_level_option
def recorder(log_level: str) -> int:
    """Run a recorder: it records its share of the cameras whose recording policy is on
    (replicas share them out through Redis) until SIGTERM, then finishes its open segments,
    uploads what it can and lets its cameras go."""
    _configure(click.get_current_context())
    settings = HOST.settings("recorder")
    HOST.start(settings, "sparc-video-recorder")
    return HOST.run(lambda: asyncio.run(_record(settings)))


async def _record(settings: Settings) -> None:
    from sparc_video.app import run_recorder
    from sparc_video.core.settings import reveal

    if settings.recorder_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.recorder_metrics_port, addr=settings.http_host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ports = (settings.recorder_live_grpc_port, settings.recorder_live_http_port)
    if not any(ports):
        await run_recorder(settings, stop)
        return
    if not all(ports):
        raise ValueError(
            "RECORDER_LIVE_GRPC_PORT and RECORDER_LIVE_HTTP_PORT are set together (live view)"
        )
    if settings.s3_bucket and not reveal(settings.live_link_key):
        # Pods sharing no storage directory would each keep a key of their own: every link
        # the API signs would be refused here.
        raise ValueError(
            "a recorder serving live view with S3 storage needs LIVE_LINK_KEY, the same as "
            "the API's (docs/live.md, Deployment)"
        )
    from sparc_video.api.live_server import LiveServer
    from sparc_video.live.hub import LiveHubs

    hubs = LiveHubs()
    server = LiveServer(settings, hubs)
    address = await server.start()
    try:
        await run_recorder(settings, stop, live=hubs, live_address=address.encode())
    finally:
        await server.stop()


def data_dir_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=Path("var"),
        show_default=True,
        help=help_text,
    )


@cli.command("sample", exit_codes=STORE_EXITS)
@click.argument("key")
@click.option("--duration", type=float, default=10.0, show_default=True, help="seconds")
@click.option("--size", default="1280x720", show_default=True, help="WIDTHxHEIGHT")
@data_dir_option("local storage root is DATA_DIR/storage unless LOCAL_STORAGE_DIR is set")
@log_level_option
def sample(key: str, duration: float, size: str, data_dir: Path, log_level: str) -> int:
    """Synthesise a test clip (colour bars, a tone, frame numbers) and put it into storage at
    KEY, e.g. samples/clip.mp4."""
    _configure(click.get_current_context())
    settings = HOST.with_data_dir(HOST.settings(), data_dir)
    return HOST.run(lambda: asyncio.run(_sample(settings, key, duration, size)))


@cli.command("store", exit_codes=STORE_EXITS)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("key")
@data_dir_option("local storage root is DATA_DIR/storage unless LOCAL_STORAGE_DIR is set")
@log_level_option
def store(file: Path, key: str, data_dir: Path, log_level: str) -> int:
    """Put a local FILE into storage at KEY directly, with the server's storage settings (an
    operator on the storage's side; callers of the API use `sparc-video upload`)."""
    _configure(click.get_current_context())
    settings = HOST.with_data_dir(HOST.settings(), data_dir)
    return HOST.run(lambda: asyncio.run(_upload(settings, file, key)))


async def _sample(settings: Settings, key: str, duration_s: float, size: str) -> None:
    from sparc_video.media.synth import make_sample_clip
    from sparc_video.storage.base import validate_key

    validate_key(key)
    width, _, height = size.partition("x")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.mp4"
        await asyncio.to_thread(
            make_sample_clip, path, width=int(width), height=int(height), duration_s=duration_s
        )
        await _upload(settings, path, key)


async def _upload(settings: Settings, path: Path, key: str) -> None:
    # Imported here: aioboto3 takes longer to import than a client command takes to run.
    from sparc_video.storage import open_storage
    from sparc_video.storage.base import validate_key

    validate_key(key)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    async with open_storage(settings) as storage:
        info = await storage.upload_file(path, key, content_type)
    where = settings.s3_bucket or settings.local_storage_dir
    print(f"stored {info.key} ({info.size_bytes} bytes) in {where}")


# ---------------------------------------------------------------------------------------------
# Plug-in commands and the entry point


def load_commands(group: click.Group, host: CommandHost) -> None:
    """Let each installed `sparc_video.commands` entry point add its commands."""
    # Imported here: scanning the installed packages' metadata is slow, and only `worker`,
    # `dev`, a name no other command has, and the listing of all commands need it.
    from importlib.metadata import entry_points

    for entry in entry_points(group=COMMANDS_GROUP):
        register: Callable[[click.Group, CommandHost], None] = entry.load()
        register(group, host)


cli.plugins = lambda group: load_commands(group, HOST)


def parse_args(argv: Sequence[str]) -> click.Context:
    """The context of the command `argv` names, its options parsed (a usage error raises
    click.UsageError), without running it: `parse_args(["export", "get", "x"]).params`."""
    command: click.Command = cli
    name = "sparc-video"
    args = list(argv)
    parent: click.Context | None = None
    while True:
        ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
        with ctx.scope(cleanup=False):
            rest = click.Command.parse_args(command, ctx, args)
        if not isinstance(command, click.Group):
            return ctx
        if not rest:
            raise click.UsageError("Missing command.", ctx)
        found, sub, args = command.resolve_command(ctx, rest)
        assert found is not None and sub is not None
        command, name, parent = sub, found, ctx


def main(argv: list[str] | None = None) -> int:
    """The console script: runs a command and returns its exit status."""
    stdout = sys.stdout
    try:
        result = cli.main(args=argv, prog_name="sparc-video", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        from sparc_video.cli.output import silence_stdout

        silence_stdout()
        return ExitCode.BROKEN_PIPE
    except SystemExit:
        # click's own answer to a closed stdout while it printed help: it wraps stdout so
        # that nothing more is reported, and exits 1.
        if sys.stdout is not stdout:
            return ExitCode.BROKEN_PIPE
        raise
    return result if isinstance(result, int) else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
