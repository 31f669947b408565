"""The service under test: its settings, and its server and worker processes."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.control_plane.processes import PYTHON, ROOT, Processes, wait_until
from benchmarks.control_plane.services import ACCESS_KEY, REGION, SECRET_KEY
from sparc_video.core.embedded_redis import free_port


@dataclass
class Env:
    redis_url: str
    redis_port: int
    prefix: str
    s3_endpoint: str
    bucket: str
    grpc_port: int
    workdir: Path
    procs: Processes
    database_url: str
    signing_key: str
    server: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    source_key: str = "bench/clip.mp4"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def service_env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'generated'}",
            "REDIS_URL": self.redis_url,
            "REDIS_PREFIX": self.prefix,
            "DATABASE_URL": self.database_url,
            "MANIFEST_SIGNING_KEY": self.signing_key,
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": str(self.grpc_port),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(free_port()),
            "S3_BUCKET": self.bucket,
            "S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "VIDEO_TEMP_DIR": str(self.workdir / "work"),
            "WORKER_METRICS_PORT": "0",
            **extra,
        }

    def start_server(self) -> None:
        self.server = self.procs.start(
            "server",
            [
                PYTHON,
                # BENCH_SERVER_PROFILE=path: run the server under cProfile, stats written there
                # when it stops.
                *(
                    ["-m", "cProfile", "-o", os.environ["BENCH_SERVER_PROFILE"]]
                    if os.environ.get("BENCH_SERVER_PROFILE")
                    else []
                ),
                "-m",
                "sparc_video.cli.main",
                "--log-level",
                os.environ.get("BENCH_SERVER_LOG", "WARNING"),
                "serve",
            ],
            # Measures the control plane alone: no authentication or per-principal quotas.
            self.service_env(AUTH_DISABLED="true"),
        )
        wait_until(self._serving, "the gRPC server")

    def _serving(self) -> bool:
        assert self.server is not None
        if self.server.poll() is not None:
            raise RuntimeError(f"server exited; see {self.workdir / 'server.log'}")
        channel = grpc.insecure_channel(self.target)
        try:
            health: Any = health_pb2_grpc.HealthStub(channel)  # its stubs name no methods
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
        except grpc.RpcError:
            return False
        finally:
            channel.close()

    def start_worker(self, concurrency: int) -> None:
        self.stop_worker()
        self.worker = self.procs.start(
            f"worker-{concurrency}",
            [PYTHON, "-m", "sparc_video.cli", "--log-level", "WARNING", "worker"],
            self.service_env(VIDEO_WORKER_CONCURRENCY=str(concurrency)),
        )
        client = redis.Redis.from_url(self.redis_url)
        try:
            # A worker announces itself once its context is open (heartbeat sorted set).
            def announced() -> bool:
                return int(client.zcard(f"{self.prefix}:workers")) > 0  # type: ignore[arg-type]

            wait_until(announced, "the worker", timeout_s=60)
        finally:
            client.close()
        time.sleep(0.5)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.procs.stop(self.worker, 30)
            self.worker = None
            client = redis.Redis.from_url(self.redis_url)
            try:
                client.delete(f"{self.prefix}:workers")
            finally:
                client.close()
