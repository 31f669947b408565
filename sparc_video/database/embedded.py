"""A PostgreSQL for `sparc-video dev` and the tests: the configured one if it answers, else one
we start.

The started PostgreSQL 16 comes from the pgserver wheel (a dependency: it bundles the server
binaries), keeps its data under the given directory (`./var/postgres` for dev), listens on a
unix socket in that directory (or pgserver's runtime directory when the path is too long for
a socket), trusts local connections, and is stopped when the context exits. Its database is
`sparc_video`, created on first start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from sparc_video.database.urls import asyncpg_dsn, redacted, with_database

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "sparc_video"
ANSWER_TIMEOUT_S = 2.0


# The system user pgserver runs PostgreSQL as when we are root (PostgreSQL refuses to run as root).
POSTGRES_SYSTEM_USER = "pgserver"


class EmbeddedPostgresError(RuntimeError):
    pass


def directories_to_open_for_postgres(data_dir: Path) -> list[Path]:
    """The directories above `data_dir` that starting the embedded PostgreSQL will open to others.

    As root, pgserver runs PostgreSQL as its own user (`POSTGRES_SYSTEM_USER`), which must reach
    the data directory; so pgserver adds g+rx,o+rx to every directory above it
    (`pgserver.utils.ensure_prefix_permissions`), e.g. pytest's private (0700) base directory or
    a home directory. These are the ones that lack it now; empty when not root (PostgreSQL then
    runs as us and needs nothing opened)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    wanted = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    return [
        path
        for path in reversed(data_dir.resolve().parents)
        if path.is_dir() and path.stat().st_mode & wanted != wanted
    ]


async def answers_async(url: str, timeout_s: float = ANSWER_TIMEOUT_S) -> bool:
    """Whether PostgreSQL at `url` accepts a connection and answers SELECT 1 in time."""
    try:
        connection = await asyncpg.connect(asyncpg_dsn(url), timeout=timeout_s)
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    try:
        return bool(await connection.fetchval("SELECT 1", timeout=timeout_s) == 1)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    finally:
        connection.terminate()


def answers(url: str, timeout_s: float = ANSWER_TIMEOUT_S) -> bool:
    """`answers_async` for synchronous start-up code (runs its own loop in a thread, so it also
    works where an event loop is running)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, answers_async(url, timeout_s)).result()


class EmbeddedPostgres:
    """pgserver's PostgreSQL with its data under `data_dir`, started and stopped by a helper
    process (`python -m sparc_video.database.embedded start|stop DIR`).

    Why a helper: as root, pgserver runs `pg_ctl` as its own user (`subprocess.run(user=...)`),
    which makes CPython fork() rather than vfork(). Forking a process that runs gRPC and asyncio
    threads can crash the child before it execs (seen in CI: pg_ctl "died with SIGSEGV" and
    never wrote its log). The helper is a fresh single-threaded interpreter, so its fork is
    safe, and ours is a plain spawn."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.url = ""

    def start(self) -> str:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        widened = directories_to_open_for_postgres(self.data_dir)
        if widened:
            log.warning(
                "running as root: the embedded PostgreSQL runs as the user %r, so the "
                "directories above its data (%s) become readable and traversable by others "
                "(g+rx,o+rx). Use a --data-dir under a directory others may enter to avoid this.",
                POSTGRES_SYSTEM_USER,
                ", ".join(str(path) for path in widened),
            )
        try:
            self.url = _helper("start", self.data_dir)
        except EmbeddedPostgresError:
            self.stop()
            raise
        if not answers(self.url, timeout_s=10):
            self.stop()
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL at {self.url} does not answer; see "
                f"{self.data_dir / 'log'}. Set DATABASE_URL to a running PostgreSQL instead."
            )
        return self.url

    def stop(self) -> None:
        """Stops the PostgreSQL of `data_dir` if one runs (whoever started it)."""
        if (self.data_dir / "postmaster.pid").exists():
            _helper("stop", self.data_dir)


HELPER_TIMEOUT_S = 120.0


def _helper(action: str, data_dir: Path) -> str:
    """Runs `action` in a helper interpreter; the last line it prints (the URL on start)."""
    command = [sys.executable, "-m", __name__, action, str(data_dir)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=HELPER_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL did not {action} within {HELPER_TIMEOUT_S:.0f} s; see "
            f"{data_dir / 'log'}. Set DATABASE_URL to a running PostgreSQL instead."
        ) from None
    if done.returncode != 0:
        log.warning("the embedded PostgreSQL helper (%s) said:\n%s", action, done.stderr[-4000:])
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL did not {action} ({reason}); see {data_dir / 'log'}. "
            "Set DATABASE_URL to a running PostgreSQL instead."
        )
    return (done.stdout.strip().splitlines() or [""])[-1]


def _serve_start(data_dir: Path) -> str:
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI)
            # and falls back to /tmp, which serves pgserver's lock file as well.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from pgserver.postgres_server import get_server
    except ImportError:
        raise EmbeddedPostgresError(
            "no PostgreSQL: DATABASE_URL is unset or does not answer, and the pgserver "
            "package is missing. Start PostgreSQL and set DATABASE_URL (e.g. "
            "postgresql://user:password@127.0.0.1:5432/sparc_video), or `pip install "
            "pgserver`."
        ) from None
    # cleanup_mode=None: the server outlives this helper; `stop` ends it.
    server = get_server(data_dir, cleanup_mode=None)
    found = server.psql(f"SELECT 'found' FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';")
    if "found" not in found:
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    return str(server.get_uri(database=EMBEDDED_DATABASE))


def _serve_stop(data_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from pgserver import pg_ctl  # type: ignore[attr-defined]  # defined at import
    user = POSTGRES_SYSTEM_USER if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user, timeout=60)
    except subprocess.CalledProcessError:
        if (data_dir / "postmaster.pid").exists():
            raise  # it did not stop; otherwise it was not running, which is what we wanted


def _main(argv: list[str]) -> int:
    """The helper: `start DIR` prints the URL of a running server; `stop DIR` stops it."""
    action, data_dir = argv[0], Path(argv[1])
    # pgserver narrates every step at INFO; its warnings and errors still show.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        if action == "start":
            print(_serve_start(data_dir))
        else:
            _serve_stop(data_dir)
    except EmbeddedPostgresError as exc:
        print(exc, file=sys.stderr)
        return 1
    except Exception as exc:  # the parent shows the last line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def ensure_database(url: str | None, data_dir: Path) -> Iterator[str]:
    """The URL of a PostgreSQL that answers: `url` when it does, else an embedded one with its
    data under `data_dir`, stopped when the context exits."""
    if url and answers(url):
        yield url
        return
    if url:
        log.warning(
            "PostgreSQL at %s does not answer; starting an embedded one in %s",
            redacted(url),
            data_dir,
        )
    else:
        log.info("DATABASE_URL is not set; starting an embedded PostgreSQL in %s", data_dir)
    embedded = EmbeddedPostgres(data_dir)
    started = embedded.start()
    try:
        yield started
    finally:
        embedded.stop()


__all__ = [
    "EMBEDDED_DATABASE",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "answers",
    "answers_async",
    "ensure_database",
    "with_database",
]


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
