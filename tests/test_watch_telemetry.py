"""WatchExport streams keep their telemetry straight, however they end.

50 watches followed to the end, 10 cancelled by their clients and 5 cut by a server shutdown,
with tracing on: no ERROR log line (OpenTelemetry's "Failed to detach context", asyncio's
"Task exception was never retrieved"), every normal end counted as OK, every client cancel as
CANCELLED, and no stream counted as UNKNOWN.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.core.settings import Settings
from tests.fixtures.service import start_service
from tests.test_export_e2e import create_request, put_clip, thumbnail
from tests.test_observability import spans  # noqa: F401  (fixture: tracing on, in memory)

State = export_pb2.Export.State
CODES = ("OK", "CANCELLED", "UNKNOWN", "INTERNAL", "UNAVAILABLE", "ABORTED")
WATCH = {
    "grpc_service": "sparc.video.v1.ExportService",
    "grpc_method": "WatchExport",
    "grpc_type": "server_stream",
}


def handled(code: str) -> float:
    return REGISTRY.get_sample_value("grpc_server_handled_total", {**WATCH, "grpc_code": code}) or 0


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, (what, {c: handled(c) for c in CODES})
        await asyncio.sleep(0.05)


@pytest.mark.usefixtures("spans")
async def test_watch_streams_end_cleanly_and_are_counted_by_how_they_ended(
    service_settings: Callable[..., Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    before = {code: handled(code) for code in ("OK", "CANCELLED", "UNKNOWN")}
    settings = service_settings()
    async with start_service(settings) as service:
        await put_clip(service, tmp_path, "in/clip.mp4", width=160, height=90, duration_s=0.5)
        exports = [
            await service.exports.CreateExport(create_request("in/clip.mp4", thumbnail("50%")))
            for _ in range(5)
        ]

        async def follow(name: str) -> State.ValueType:
            last = State.STATE_UNSPECIFIED
            request = export_service_pb2.WatchExportRequest(name=name)
            async for message in service.exports.WatchExport(request):
                last = message.export.state
            return last

        async with asyncio.timeout(180):
            ends = await asyncio.gather(*(follow(e.name) for e in exports for _ in range(10)))
        assert set(ends) == {State.STATE_SUCCEEDED}
        await until(lambda: handled("OK") - before["OK"] >= 50, "50 watches counted OK")

    # Watches of an export that stays QUEUED (no worker), so each one is still open when its
    # client cancels it or the server shuts down.
    async with start_service(settings, worker=False) as service:
        created = await service.exports.CreateExport(
            create_request("in/clip.mp4", thumbnail("25%"))
        )
        cancelled = [
            service.exports.WatchExport(export_service_pb2.WatchExportRequest(name=created.name))
            for _ in range(10)
        ]
        for call in cancelled:
            assert (await call.read()).export.state == State.STATE_QUEUED
            call.cancel()
        await until(lambda: handled("CANCELLED") - before["CANCELLED"] >= 10, "10 cancels counted")
        calls = [
            service.exports.WatchExport(export_service_pb2.WatchExportRequest(name=created.name))
            for _ in range(5)
        ]
        for call in calls:
            assert (await call.read()).export.state == State.STATE_QUEUED
        await service.server.stop(0.5)
        for call in calls:
            code = await call.code()
            assert code != grpc.StatusCode.UNKNOWN, await call.details()

    assert handled("OK") - before["OK"] == 50
    assert handled("CANCELLED") - before["CANCELLED"] >= 10  # + those cut by the shutdown
    assert handled("UNKNOWN") == before["UNKNOWN"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]
