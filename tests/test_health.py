"""Dependency-aware health, for real: the test's own Redis stopped and started, storage removed,
workers absent then present, a temp-space threshold out of reach, media probed in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sparc_video.api.server import EXPORT_SERVICE
from sparc_video.core.embedded_redis import EmbeddedRedis, free_port
from sparc_video.core.settings import Settings
from tests.fixtures.service import RunningService, start_service
from workers.job.runner import build_worker
from workers.pipeline.encoders import local_hardware

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
INTERVAL_S = 0.2
REPO = Path(__file__).resolve().parents[1]


async def get_json(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def check(service: RunningService, name: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(service.channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=name))
    return int(response.status)


async def report_until(
    service: RunningService, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 5
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        _, report = await get_json(f"{service.http_url}/health")
        if predicate(report):
            return report
        assert time.monotonic() < deadline, report
        await asyncio.sleep(INTERVAL_S / 4)


async def test_redis_outage_turns_not_serving_within_the_interval_and_watch_streams_it(
    redis_process: EmbeddedRedis, service_settings: Callable[..., Settings]
) -> None:
    settings = service_settings(redis_url=redis_process.url, health_check_interval_s=INTERVAL_S)
    async with start_service(settings, worker=False) as service:
        stub = health_pb2_grpc.HealthStub(service.channel)
        assert await check(service) == SERVING
        assert await check(service, EXPORT_SERVICE) == SERVING
        watches = [
            stub.Watch(health_pb2.HealthCheckRequest(service=n)) for n in ("", EXPORT_SERVICE)
        ]
        for watch in watches:
            assert (await watch.read()).status == SERVING

        redis_process.stop()
        stopped = time.monotonic()
        async with asyncio.timeout(5):
            changes = [await watch.read() for watch in watches]
        noticed_after_s = time.monotonic() - stopped
        assert [c.status for c in changes] == [NOT_SERVING, NOT_SERVING]
        # One interval to the next round, plus a refused connection (fast), plus scheduling.
        assert noticed_after_s < INTERVAL_S + 1.0, noticed_after_s
        assert await check(service) == NOT_SERVING

        status, report = await get_json(f"{service.http_url}/health")
        assert status == 503 and report["status"] == "NOT_SERVING"
        assert report["checks"]["redis"]["ok"] is False and report["checks"]["redis"]["error"]
        assert report["checks"]["storage"]["ok"] is True
        # Liveness ignores dependencies: Kubernetes must not restart the pod for a Redis blip.
        status, alive = await get_json(f"{service.http_url}/healthz")
        assert status == 200 and alive == {"status": "alive"}
        # Metrics still answer, and say the shared gauges could not be read.
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{service.http_url}/metrics") as response,
        ):
            assert response.status == 200
            text = await response.text()
        assert "video_service_redis_scrape_ok 0.0" in text
        assert "video_processing_queue_size{" not in text

        redis_process.start()
        async with asyncio.timeout(5):
            changes = [await watch.read() for watch in watches]
        assert [c.status for c in changes] == [SERVING, SERVING]
        assert await check(service, EXPORT_SERVICE) == SERVING
        status, report = await get_json(f"{service.http_url}/health")
        assert status == 200 and report["checks"]["redis"]["ok"] is True
        for watch in watches:
            watch.cancel()


async def test_only_critical_checks_gate_serving(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings(
        health_check_interval_s=INTERVAL_S,
        # Out of reach on any disk: the temp-space check fails, and must not gate.
        temp_min_free_bytes=10**18,
    )
    async with start_service(settings, worker=False) as service:
        status, report = await get_json(f"{service.http_url}/health")
        checks = report["checks"]
        assert status == 200 and report["status"] == "SERVING", report
        assert report["interval_s"] == INTERVAL_S
        assert {name: c["critical"] for name, c in checks.items()} == {
            "redis": True,
            "storage": True,
            "database": True,
            "workers": False,
            "media": False,
            "temp_space": False,
        }
        assert checks["workers"]["ok"] is False
        assert "no worker heartbeat" in checks["workers"]["error"]
        assert checks["temp_space"]["ok"] is False
        assert "VIDEO_TEMP_MIN_FREE" in checks["temp_space"]["error"]
        assert checks["media"]["ok"] is True, checks["media"]
        assert all(e in checks["media"]["detail"] for e in ("libx264", "aac", "mjpeg"))

        # A real worker's heartbeat makes the workers check pass.
        worker = build_worker(settings, handle_signals=False)
        task = asyncio.create_task(worker.main())
        try:
            report = await report_until(service, lambda r: r["checks"]["workers"]["ok"])
            assert report["checks"]["workers"]["detail"].startswith("1 live worker(s)")
            # Its start-up hardware probe (in a media child) arrives with a later heartbeat.
            report = await report_until(
                service, lambda r: "media.hardware" in r["checks"]["workers"]["detail"], 30
            )
            expected = local_hardware()
            assert report["checks"]["workers"]["detail"] == (
                f"1 live worker(s); media.hardware: {expected.summary()}"
            )
            if not expected.nvenc:
                # "no NVIDIA device (...)" here; "<GPU> has no usable NVENC encoder" on an H200.
                assert expected.summary().startswith("nvenc unavailable: ")
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{service.http_url}/metrics") as response,
            ):
                metrics = await response.text()
            assert f"video_workers_nvenc {float(bool(expected.nvenc))}" in metrics
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await worker.close()

        # Storage is critical: its directory gone → NOT_SERVING; back → SERVING.
        root = settings.local_storage_dir
        moved = root.with_name("storage-away")
        root.rename(moved)
        report = await report_until(service, lambda r: r["status"] == "NOT_SERVING")
        assert report["checks"]["storage"]["ok"] is False
        assert await check(service, EXPORT_SERVICE) == NOT_SERVING
        moved.rename(root)
        await report_until(service, lambda r: r["status"] == "SERVING")
        assert await check(service, EXPORT_SERVICE) == SERVING


def test_server_and_its_health_checks_never_import_pyav(
    redis_url: str, redis_prefix: str, database_url: str, tmp_path: Path
) -> None:
    """The media check probes PyAV in a subprocess; the server process stays free of it."""
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from pathlib import Path
        from sparc_video.app import open_app
        from sparc_video.api.server import Server
        from sparc_video.core.settings import Settings

        async def main():
            settings = Settings(
                redis_url={redis_url!r}, redis_prefix={redis_prefix!r},
                database_url={database_url!r},
                grpc_host="127.0.0.1", grpc_port=0, http_host="127.0.0.1",
                http_port={free_port()}, local_storage_dir=Path({str(tmp_path / "s")!r}),
                temp_dir=Path({str(tmp_path / "t")!r}), auth_disabled=True,
            )
            async with open_app(settings) as app:
                server = Server(app)
                await server.start()
                media = server.health.results["media"]
                await server.stop(0)
            print(json.dumps({{"media_ok": media.ok, "detail": media.detail,
                              "av_imported": "av" in sys.modules}}))

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'generated'}"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert result["media_ok"] is True, result
    assert result["av_imported"] is False
