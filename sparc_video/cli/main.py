"""`sparc-video`: run the server, a worker, or both on embedded defaults; put videos in storage;
talk to a server as a client (`export ...`, `queue ...`, in `cli_client`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import mimetypes
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sparc_video.cli.exports import CLIENT_COMMANDS, add_client_commands, run_client_command
from sparc_video.core.event_loop import install_uvloop
from sparc_video.core.settings import ENVIRONMENT_HELP, Settings, SettingsError

if TYPE_CHECKING:
    from sparc_video.core.embedded_redis import EmbeddedRedis

log = logging.getLogger("sparc_video")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparc-video",
        description="SPARC video export service.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the gRPC server (+ HTTP port for /metrics, /health, downloads)"),
        ("worker", "run an arq worker that processes exports"),
    ):
        commands.add_parser(
            name,
            help=text,
            description=text,
            epilog=ENVIRONMENT_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    dev = commands.add_parser(
        "dev",
        help="server + worker in one process on embedded defaults (local Redis and storage)",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dev.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var"),
        help="where local storage and an embedded Redis keep data (default ./var)",
    )
    sample = commands.add_parser("sample", help="synthesise a test clip and put it into storage")
    sample.add_argument("key", help="storage key, e.g. samples/clip.mp4")
    sample.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    sample.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT (default 1280x720)")
    sample.add_argument(
        "--data-dir",
        type=Path,
        default=Path("var"),
        help="local storage root is DATA_DIR/storage unless LOCAL_STORAGE_DIR is set",
    )
    upload = commands.add_parser("upload", help="put a local file into storage")
    upload.add_argument("file", type=Path)
    upload.add_argument("key")
    upload.add_argument("--data-dir", type=Path, default=Path("var"))
    add_client_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command in CLIENT_COMMANDS:
        # A client needs none of the server's settings (nor must a bad one stop it).
        return run_client_command(args)
    # Server-side modules are imported only here: client commands start faster without them.
    from sparc_video.core.embedded_redis import EmbeddedRedisError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"sparc-video: {exc}", file=sys.stderr)
        return 2
    if args.command in ("serve", "worker", "dev"):
        _observe(settings, args.command, args.log_level)
        install_uvloop()
    try:
        if args.command == "serve":
            from sparc_video.api.server import serve

            asyncio.run(serve(settings))
        elif args.command == "worker":
            from workers.job.runner import run as run_worker

            run_worker(settings)
        elif args.command == "dev":
            return _dev(settings, args.data_dir)
        elif args.command == "sample":
            settings = _with_data_dir(settings, args.data_dir)
            asyncio.run(_sample(settings, args.key, args.duration, args.size))
        elif args.command == "upload":
            settings = _with_data_dir(settings, args.data_dir)
            asyncio.run(_upload(settings, args.file, args.key))
    except KeyboardInterrupt:
        return 130
    except (EmbeddedRedisError, ValueError, OSError) as exc:
        print(f"sparc-video: {exc}", file=sys.stderr)
        return 1
    return 0


def _observe(settings: Settings, command: str, log_level: str) -> None:
    """Structured logs (LOG_FORMAT) and tracing (OTEL_*) for the long-running commands."""
    from sparc_video.observability.logs import configure_logging
    from sparc_video.observability.tracing import setup_tracing

    configure_logging(settings, log_level, exclusive=True)
    setup_tracing("sparc-video-worker" if command == "worker" else "sparc-video")


def _with_data_dir(settings: Settings, data_dir: Path) -> Settings:
    if settings.local_storage_dir != Settings().local_storage_dir:
        return settings
    return settings.replace(local_storage_dir=data_dir / "storage")


def _dev(settings: Settings, data_dir: Path) -> int:
    from sparc_video.core.embedded_redis import EmbeddedRedis, answers

    settings = _with_data_dir(settings, data_dir)
    embedded: EmbeddedRedis | None = None
    if not answers(settings.redis_url):
        log.info("Redis at %s does not answer; starting an embedded one", settings.redis_url)
        embedded = EmbeddedRedis(data_dir / "redis")
        settings = settings.replace(redis_url=embedded.start())
    try:
        asyncio.run(_run_dev(settings))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


async def _run_dev(settings: Settings) -> None:
    from sparc_video.api.server import serve
    from sparc_video.evidence.signing import ManifestSigner
    from workers.job.runner import build_worker

    # A development server on this machine: unless authentication is configured, every
    # caller is the local admin (the README's grpcurl walk-through needs no credentials).
    if not settings.auth_configured:
        settings = settings.replace(auth_disabled=True)

    worker = build_worker(settings, handle_signals=False)
    stop = asyncio.Event()
    worker_task = asyncio.create_task(worker.main(), name="dev-worker")
    # Creates the key in the data directory on the first run, as the server would.
    signer = ManifestSigner.from_settings(settings)
    print(
        f"sparc-video dev: gRPC on 127.0.0.1:{settings.grpc_port}, HTTP on "
        f"{settings.http_base_url}, Redis {settings.redis_url}, storage "
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
        await serve(settings, stop)
    finally:
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
        await worker.close()


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


if __name__ == "__main__":
    sys.exit(main())
