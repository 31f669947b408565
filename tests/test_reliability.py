"""Faults provoked for real: processes killed, Redis stopped, arq keys deleted, children crashing.

Each test drives the real service (gRPC server, Redis, storage, arq workers in-process or as OS
processes) and asserts what users see: states, attempts, errors, outputs and leftovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from arq.constants import job_key_prefix
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.core.embedded_redis import EmbeddedRedis, free_port
from sparc_video.core.errors import PermanentProcessingError, ProcessingTimeout
from sparc_video.core.settings import Settings
from sparc_video.exports.catalog import ExportFilter
from sparc_video.exports.models import ExportState
from sparc_video.media.synth import make_sample_clip
from tests import sandbox_targets
from tests.fixtures.service import RunningService, WorkerProcess, start_service
from tests.test_export_e2e import create_request, thumbnail, transcode, watch_to_end
from workers.sandbox.child import ChildProgress
from workers.sandbox.runner import ProcessLimits, run_target_in_child

State = export_pb2.Export

# Settings that make faults show quickly: short leases, frequent reconciling, quick retries.
FAST_RECOVERY = {
    "lease_ttl_s": 2.0,
    "reconcile_interval_s": 0.3,
    "retry_initial_delay_s": 0.2,
    "retry_multiplier": 2.0,
}


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clip whose `slow`-preset transcode takes over ten seconds on 2 cores: long enough
    that a test polling for RUNNING on a loaded machine still catches it at work."""
    path = tmp_path_factory.mktemp("clips") / "long.mp4"
    make_sample_clip(path, width=640, height=360, duration_s=40.0, audio=False)
    return path


def elsewhere(settings: Settings) -> Settings:
    """The same service settings on another HTTP port, to run a second instance beside one."""
    return settings.replace(http_port=free_port())


def slow_transcode() -> export_pb2.Operation:
    return transcode(codec="h264", preset="slow", resolution="640x360", bitrate="2M")


async def wait_for(
    service: RunningService,
    name: str,
    predicate: Callable[[export_pb2.Export], bool],
    timeout_s: float = 60,
) -> export_pb2.Export:
    deadline = time.monotonic() + timeout_s
    while True:
        export = await service.exports.GetExport(export_service_pb2.GetExportRequest(name=name))
        if predicate(export):
            return export
        assert time.monotonic() < deadline, f"timed out; last state {export}"
        await asyncio.sleep(0.05)


def media_children() -> set[int]:
    """Pids of live media child processes of this test process: what a forkserver below this
    process forked, other than a further forkserver (the launcher's forkserver starts one);
    a media child clears its command line, a forkserver keeps its own."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])

    def descends_from_us(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    def forkserver(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return b"multiprocessing.forkserver" in f.read()
        except OSError:
            return False

    return {
        pid
        for pid, ppid in parents.items()
        if forkserver(ppid)
        and forkserver(pid)
        and descends_from_us(pid)
        and not forkserver(parents.get(ppid, 0))
    }


async def test_cancel_running_export_kills_the_media_child(
    service_settings: Callable[..., Settings], long_clip: Path
) -> None:
    async with start_service(service_settings()) as service:
        await service.app.storage.upload_file(long_clip, "in/long.mp4", "video/mp4")
        before = media_children()
        created = await service.exports.CreateExport(
            create_request("in/long.mp4", slow_transcode(), thumbnail("50%"))
        )
        await wait_for(
            service,
            created.name,
            lambda e: e.state == State.STATE_RUNNING and e.progress.percent > 0,
        )
        assert media_children() - before, "the media child should be running"
        cancelled_at = time.monotonic()
        cancelled = await service.exports.CancelExport(
            export_service_pb2.CancelExportRequest(name=created.name)
        )
        assert cancelled.state == State.STATE_CANCELLED
        # The deadlines only catch a child left running; they are no speed claim (the cancel is
        # seen at the child's next progress callback, well under a second on a quiet machine).
        while media_children() - before:
            assert time.monotonic() - cancelled_at < 15.0, "media child still running after 15 s"
            await asyncio.sleep(0.02)
        # Temp files and partial outputs go right after.
        while list(service.settings.temp_dir.iterdir()):
            assert time.monotonic() - cancelled_at < 20.0
            await asyncio.sleep(0.05)
        assert not list((service.settings.local_storage_dir / "exports").glob("**/*.*"))
        final = await watch_to_end(service, created.name)
        assert final[-1].export.state == State.STATE_CANCELLED
        # Killed mid-way, not left to finish its work.
        assert final[-1].export.progress.percent < 100


async def test_processing_timeout_kills_the_child(
    service_settings: Callable[..., Settings], long_clip: Path
) -> None:
    settings = service_settings(processing_timeout_ms=1000)
    async with start_service(settings) as service:
        await service.app.storage.upload_file(long_clip, "in/long.mp4", "video/mp4")
        started = time.monotonic()
        created = await service.exports.CreateExport(
            create_request("in/long.mp4", slow_transcode())
        )
        final = (await watch_to_end(service, created.name))[-1].export
        # A bound against a child left running (the clip's slow encode takes far longer on a
        # loaded machine), not a speed claim.
        assert time.monotonic() - started < 1.0 + 30.0
        assert final.state == State.STATE_FAILED
        assert final.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
        assert "VIDEO_PROCESSING_TIMEOUT" in final.error.message
        assert not list(service.settings.temp_dir.iterdir())


async def test_transient_storage_failure_is_retried_with_backoff_then_fails(
    s3_service_settings: Callable[..., Settings],
) -> None:
    good = s3_service_settings(
        job_max_tries=3,
        **FAST_RECOVERY,
    )
    # The worker's S3 endpoint refuses connections: every download is a transient failure.
    unreachable = good.replace(s3_endpoint_url="http://127.0.0.1:9")
    async with start_service(good, worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        created = await service.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))
        async with start_service(elsewhere(unreachable)) as failing:
            messages = await watch_to_end(failing, created.name)
    states = [m.export.state for m in messages]
    retrying = [m.export for m in messages if m.export.state == State.STATE_RETRYING]
    assert len(retrying) == 2, states
    assert [e.attempt for e in retrying] == [1, 2]
    for export in retrying:
        assert export.next_attempt_time.ToNanoseconds() > 0
        assert export.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    first_delay = (
        retrying[0].next_attempt_time.ToNanoseconds() - retrying[0].update_time.ToNanoseconds()
    )
    second_delay = (
        retrying[1].next_attempt_time.ToNanoseconds() - retrying[1].update_time.ToNanoseconds()
    )
    assert second_delay == pytest.approx(2 * first_delay, rel=0.25)
    final = messages[-1].export
    assert final.state == State.STATE_FAILED and final.attempt == 3
    assert "gave up after 3 failed attempts" in final.error.message


async def test_transient_failure_then_success_on_a_healthy_worker(
    s3_service_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    good = s3_service_settings(
        **FAST_RECOVERY,
    )
    unreachable = good.replace(s3_endpoint_url="http://127.0.0.1:9")
    clip = tmp_path / "clip.mp4"
    make_sample_clip(clip, width=320, height=180, duration_s=1.0)
    async with start_service(good, worker=False) as service:
        await service.app.storage.upload_file(clip, "in/a.mp4", "video/mp4")
        created = await service.exports.CreateExport(create_request("in/a.mp4", thumbnail("50%")))
        async with start_service(elsewhere(unreachable)):
            await wait_for(service, created.name, lambda e: e.state == State.STATE_RETRYING)
        async with start_service(elsewhere(good)):
            final = await wait_for(
                service, created.name, lambda e: e.state == State.STATE_SUCCEEDED
            )
    assert final.attempt == 2
    assert len(final.outputs) == 1


async def test_worker_killed_mid_job_another_worker_finishes_it(
    service_settings: Callable[..., Settings],
    worker_processes: Callable[[Settings], WorkerProcess],
    long_clip: Path,
) -> None:
    settings = service_settings(worker_concurrency=1, **FAST_RECOVERY)
    async with start_service(settings, worker=False) as service:
        await service.app.storage.upload_file(long_clip, "in/long.mp4", "video/mp4")
        workers = [worker_processes(settings), worker_processes(settings)]
        created = await service.exports.CreateExport(
            create_request("in/long.mp4", slow_transcode(), thumbnail("25%", "75%"))
        )
        watch = asyncio.create_task(watch_to_end(service, created.name))
        # Any progress means the media child is at work; a loaded machine may report it late.
        running = await wait_for(
            service,
            created.name,
            lambda e: e.state == State.STATE_RUNNING and e.progress.percent > 0,
            timeout_s=120,
        )
        record = await service.app.store.get(created.name.split("/")[1])
        victim = next(w for w in workers if f":{w.pid}:" in record.worker_id)
        os.kill(victim.pid, signal.SIGKILL)
        messages = await asyncio.wait_for(watch, 120)

    final = messages[-1].export
    assert final.state == State.STATE_SUCCEEDED, final.error
    assert running.attempt == 1 and final.attempt == 2
    states = [m.export.state for m in messages]
    # The whole story: running, lost (back to queued), running again, done.
    first_queued_after_running = states.index(State.STATE_QUEUED, states.index(State.STATE_RUNNING))
    assert State.STATE_RUNNING in states[first_queued_after_running:]
    # Exactly one set of outputs and manifest, nothing else under the export's prefix (the
    # hidden files are the objects' sha256 sidecars).
    stored = sorted(
        str(p.relative_to(settings.local_storage_dir))
        for p in (settings.local_storage_dir / "exports").rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    keys = [o.storage_key for o in final.outputs]
    keys += [final.manifest.storage_key, final.manifest.signature_storage_key]
    assert stored == sorted(keys)
    sidecars = [p for p in (settings.local_storage_dir / "exports").rglob(".*") if p.is_file()]
    assert len(sidecars) == len(keys)
    assert len(final.outputs) == 3
    # The killed attempt never removed its scratch (source copy, partial output); the surviving
    # worker sweeps what no live attempt owns.
    deadline = time.monotonic() + 60
    while leftovers := sorted(p.name for p in settings.temp_dir.iterdir()):
        assert time.monotonic() < deadline, leftovers
        await asyncio.sleep(0.2)


async def test_reconciler_requeues_exports_whose_job_vanished(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings(**FAST_RECOVERY)
    clip = tmp_path / "clip.mp4"
    make_sample_clip(clip, width=320, height=180, duration_s=1.0)
    async with start_service(settings, worker=False) as service:
        await service.app.storage.upload_file(clip, "in/a.mp4", "video/mp4")
        created = await service.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))
        export_id = created.name.split("/")[1]
        # As after a Redis failover that lost arq's data: no queue entry, no job key.
        await service.app.redis.zrem(service.app.store.keys.queue, export_id)
        await service.app.redis.delete(job_key_prefix + export_id)
        assert not await service.app.queue.is_queued(export_id)
        async with start_service(elsewhere(settings)):
            final = await wait_for(
                service, created.name, lambda e: e.state == State.STATE_SUCCEEDED, 30
            )
    assert final.attempt == 1


async def test_worker_sigterm_hands_the_export_back_without_spending_retries(
    service_settings: Callable[..., Settings],
    worker_processes: Callable[[Settings], WorkerProcess],
    long_clip: Path,
) -> None:
    settings = service_settings(worker_concurrency=1, worker_shutdown_grace_s=0, **FAST_RECOVERY)
    async with start_service(settings, worker=False) as service:
        await service.app.storage.upload_file(long_clip, "in/long.mp4", "video/mp4")
        created = await service.exports.CreateExport(
            create_request("in/long.mp4", slow_transcode())
        )
        export_id = created.name.split("/")[1]
        for _ in range(2):  # a rolling deploy interrupting the same export twice
            worker = worker_processes(settings)
            await wait_for(
                service,
                created.name,
                lambda e: e.state == State.STATE_RUNNING and e.progress.percent > 0,
            )
            os.kill(worker.pid, signal.SIGTERM)
            handed_back = await wait_for(
                service, created.name, lambda e: e.state == State.STATE_QUEUED
            )
            assert worker.proc is not None
            await asyncio.to_thread(worker.proc.wait, 30)
            record = await service.app.store.get(export_id)
            assert record.failed_attempts == 0
            assert await service.app.queue.is_queued(export_id)
        assert handed_back.attempt == 2
        async with start_service(elsewhere(settings)):
            final = await wait_for(
                service, created.name, lambda e: e.state == State.STATE_SUCCEEDED, 120
            )
    assert final.attempt == 3


async def noop_progress(_: ChildProgress) -> None:
    return None


async def test_child_crash_is_contained_and_classified() -> None:
    with pytest.raises(PermanentProcessingError) as info:
        await run_target_in_child(
            sandbox_targets.segfault, (), noop_progress, timeout_s=30, limits=ProcessLimits()
        )
    assert info.value.reason == "PROCESSOR_CRASHED"
    assert "SIGSEGV" in info.value.message
    # The worker process is unharmed and runs the next child normally.
    assert (
        await run_target_in_child(
            sandbox_targets.answer, (42,), noop_progress, timeout_s=30, limits=ProcessLimits()
        )
        == 42
    )


async def test_child_memory_cap_fails_the_job_with_a_clear_reason() -> None:
    with pytest.raises(PermanentProcessingError) as info:
        await run_target_in_child(
            sandbox_targets.allocate,
            (2048,),
            noop_progress,
            timeout_s=30,
            limits=ProcessLimits(address_space=1024 * 1024 * 1024),
        )
    assert info.value.reason == "RESOURCE_LIMIT"
    assert "VIDEO_PROCESSING_MEMORY_LIMIT" in info.value.message


async def test_hung_child_is_killed_at_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(ProcessingTimeout):
        await run_target_in_child(
            sandbox_targets.sleep_forever, (), noop_progress, timeout_s=0.5, limits=ProcessLimits()
        )
    assert time.monotonic() - started < 30  # killed, not left sleeping (no speed claim)


async def test_redis_outage_fails_fast_and_recovers(
    service_settings: Callable[..., Settings], redis_process: EmbeddedRedis
) -> None:
    settings = service_settings(redis_url=redis_process.url)
    async with start_service(settings, worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        request = create_request("in/a.mp4", thumbnail("1"), request_id="outage")
        created = await service.exports.CreateExport(request)
        redis_process.stop()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await service.exports.GetExport(
                export_service_pb2.GetExportRequest(name=created.name), timeout=10
            )
        # UNAVAILABLE, not DEADLINE_EXCEEDED: it failed before the call's 10 s deadline.
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        redis_process.start()
        # The same server recovers by itself. The non-persistent Redis lost its data, but
        # PostgreSQL keeps the export, and its request id still names it.
        found = await service.exports.GetExport(
            export_service_pb2.GetExportRequest(name=created.name)
        )
        assert found.name == created.name
        again = await service.exports.CreateExport(request)
        assert again.name == created.name


async def test_records_survive_a_restart_of_a_persistent_redis(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "persistent-redis", save="")
    server.start(persist=True)
    try:
        settings = service_settings(redis_url=server.url)
        async with start_service(settings, worker=False) as service:
            await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
            created = await service.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))
            server.stop()
            server.start(persist=True)
            got = await service.exports.GetExport(
                export_service_pb2.GetExportRequest(name=created.name)
            )
            assert got.state == State.STATE_QUEUED
            assert await service.app.queue.is_queued(created.name.split("/")[1])
    finally:
        server.stop()


async def test_server_shutdown_ends_watches_with_unavailable_and_they_resume(
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings()
    async with start_service(settings, worker=False) as first:
        await first.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        created = await first.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))
        stream = first.exports.WatchExport(export_service_pb2.WatchExportRequest(name=created.name))
        snapshot = await stream.read()
        assert snapshot.export.state == State.STATE_QUEUED
        stopping = asyncio.create_task(first.server.stop(grace_s=5))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stream.read()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "resume" in (info.value.details() or "")
        await stopping
        # While the first server is down, the export changes; a second server resumes the watch.
        async with start_service(elsewhere(settings), worker=False) as second:
            await second.exports.CancelExport(
                export_service_pb2.CancelExportRequest(name=created.name)
            )
            resumed = await watch_to_end(second, created.name, after=snapshot.event_id)
    assert [m.export.state for m in resumed] == [State.STATE_CANCELLED]
    assert resumed[0].event_id > snapshot.event_id


async def test_dropped_watches_free_their_resources(
    service_settings: Callable[..., Settings], redis_process: EmbeddedRedis
) -> None:
    # A private Redis: its client list holds only this service's connections.
    settings = service_settings(redis_url=redis_process.url)
    async with start_service(settings, worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        names = [
            (await service.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))).name
            for _ in range(20)
        ]
        baseline_tasks = len(asyncio.all_tasks())
        clients_before = len(await service.app.redis.client_list())
        calls = []
        for i in range(200):
            call = service.exports.WatchExport(
                export_service_pb2.WatchExportRequest(name=names[i % len(names)])
            )
            await call.read()
            calls.append(call)
        assert service.app.hub.watched_streams == len(names)
        for call in calls:
            call.cancel()
        deadline = time.monotonic() + 5
        while service.app.hub.watched_streams or len(asyncio.all_tasks()) > baseline_tasks:
            assert time.monotonic() < deadline, (
                service.app.hub.watched_streams,
                len(asyncio.all_tasks()),
                baseline_tasks,
            )
            await asyncio.sleep(0.05)
        assert len(await service.app.redis.client_list()) <= clients_before + 1


def test_export_state_terminal_flags() -> None:
    assert {s for s in ExportState if s.terminal} == {
        ExportState.SUCCEEDED,
        ExportState.FAILED,
        ExportState.CANCELLED,
    }


async def test_retention_keeps_newest_failed_exports_and_expires_finished_ones(
    service_settings: Callable[..., Settings],
) -> None:
    from workers.job.reconciler import Reconciler

    # The worker's own reconciler runs once at start, then not again during the test.
    settings = service_settings(
        failed_exports_kept=2, export_retention_s=3600, reconcile_interval_s=3600
    )
    async with start_service(settings) as service:
        await service.app.storage.put_bytes("in/bad.mp4", b"\x00" * 100, "video/mp4")
        names = []
        for _ in range(5):
            created = await service.exports.CreateExport(
                create_request("in/bad.mp4", thumbnail("1"))
            )
            names.append(created.name)
        for name in names:
            await wait_for(service, name, lambda e: e.state == State.STATE_FAILED)
        app = service.app
        reconciler = Reconciler(settings, app.store, app.queue, app.storage)
        await app.redis.delete(app.store.keys.reconciler_lock)
        report = await reconciler.run_once()
        assert report.pruned == 3
        remaining, _ = await app.store.page(page_size=10, page_token="", keep=ExportFilter())
        assert [r.name for r in remaining] == names[:2:-1]  # the two newest

        await app.redis.delete(app.store.keys.reconciler_lock)
        expiring = Reconciler(
            settings.replace(export_retention_s=1), app.store, app.queue, app.storage
        )
        await asyncio.sleep(1.1)
        assert (await expiring.run_once()).pruned == 2
        assert (await app.store.page(page_size=10, page_token="", keep=ExportFilter()))[0] == []
        for name in names:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await service.exports.GetExport(export_service_pb2.GetExportRequest(name=name))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_worker_keeps_polling_through_a_redis_outage(
    service_settings: Callable[..., Settings], redis_process: EmbeddedRedis, tmp_path: Path
) -> None:
    settings = service_settings(redis_url=redis_process.url)
    clip = tmp_path / "clip.mp4"
    make_sample_clip(clip, width=320, height=180, duration_s=1.0)
    async with start_service(settings) as service:
        redis_process.stop()
        await asyncio.sleep(1.5)  # the worker polls into the outage several times
        redis_process.start()
        await service.app.storage.upload_file(clip, "in/a.mp4", "video/mp4")
        created = await service.exports.CreateExport(create_request("in/a.mp4", thumbnail("50%")))
        final = await wait_for(service, created.name, lambda e: e.state == State.STATE_SUCCEEDED)
    assert len(final.outputs) == 1


async def test_media_crash_is_retried_once_then_permanent(
    service_settings: Callable[..., Settings], long_clip: Path
) -> None:
    settings = service_settings(**FAST_RECOVERY)
    async with start_service(settings) as service:
        await service.app.storage.upload_file(long_clip, "in/long.mp4", "video/mp4")
        before = media_children()
        created = await service.exports.CreateExport(
            create_request("in/long.mp4", slow_transcode())
        )
        for attempt in (1, 2):
            await wait_for(
                service,
                created.name,
                lambda e, n=attempt: e.state == State.STATE_RUNNING and e.attempt == n,
            )
            # Crash every media child of the attempt until the attempt ends: a short-lived
            # child (a probe) may be gone before its signal lands.
            while True:
                for pid in media_children() - before:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSEGV)  # as if FFmpeg crashed on this source
                current = await service.exports.GetExport(
                    export_service_pb2.GetExportRequest(name=created.name)
                )
                if current.state != State.STATE_RUNNING or current.attempt != attempt:
                    break
                await asyncio.sleep(0.02)
            if attempt == 1:
                retrying = await wait_for(
                    service, created.name, lambda e: e.state == State.STATE_RETRYING
                )
                assert "SIGSEGV" in retrying.error.message
        final = await wait_for(service, created.name, lambda e: e.state == State.STATE_FAILED)
        assert final.attempt == 2
        assert "crashed (SIGSEGV)" in final.error.message
        # The worker survived both crashes and serves the next export.
        ok = await service.exports.CreateExport(create_request("in/long.mp4", thumbnail("1")))
        await wait_for(service, ok.name, lambda e: e.state == State.STATE_SUCCEEDED)


async def test_timeouts_are_retried_only_when_configured(
    service_settings: Callable[..., Settings], long_clip: Path
) -> None:
    settings = service_settings(processing_timeout_ms=1000, retry_timeouts=True, **FAST_RECOVERY)
    async with start_service(settings) as service:
        await service.app.storage.upload_file(long_clip, "in/long.mp4", "video/mp4")
        created = await service.exports.CreateExport(
            create_request("in/long.mp4", slow_transcode())
        )
        messages = await watch_to_end(service, created.name)
    states = [m.export.state for m in messages]
    assert states.count(State.STATE_RETRYING) == settings.job_max_tries - 1
    final = messages[-1].export
    assert final.state == State.STATE_FAILED and final.attempt == settings.job_max_tries
    assert "VIDEO_PROCESSING_TIMEOUT" in final.error.message


async def test_cancel_of_a_retrying_export_takes_its_job_off_the_queue(
    s3_service_settings: Callable[..., Settings],
) -> None:
    good = s3_service_settings(
        **{**FAST_RECOVERY, "retry_initial_delay_s": 30.0},
    )
    unreachable = good.replace(s3_endpoint_url="http://127.0.0.1:9")
    async with start_service(good, worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        created = await service.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))
        async with start_service(elsewhere(unreachable)):
            await wait_for(service, created.name, lambda e: e.state == State.STATE_RETRYING)
            cancelled = await service.exports.CancelExport(
                export_service_pb2.CancelExportRequest(name=created.name)
            )
        assert cancelled.state == State.STATE_CANCELLED
        assert not await service.app.queue.is_queued(created.name.split("/")[1])


async def test_worker_sigterm_lets_a_running_job_finish_within_the_grace_period(
    service_settings: Callable[..., Settings],
    worker_processes: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
) -> None:
    settings = service_settings(worker_concurrency=1, worker_shutdown_grace_s=60)
    clip = tmp_path / "clip.mp4"
    make_sample_clip(clip, width=640, height=360, duration_s=6.0, audio=False)
    async with start_service(settings, worker=False) as service:
        await service.app.storage.upload_file(clip, "in/a.mp4", "video/mp4")
        worker = worker_processes(settings)
        created = await service.exports.CreateExport(
            create_request("in/a.mp4", transcode(preset="medium", resolution="640x360"))
        )
        await wait_for(
            service, created.name, lambda e: e.state == State.STATE_RUNNING, timeout_s=60
        )
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.proc is not None
        code = await asyncio.to_thread(worker.proc.wait, 90)
        final = await service.exports.GetExport(
            export_service_pb2.GetExportRequest(name=created.name)
        )
    assert final.state == State.STATE_SUCCEEDED, final
    assert final.attempt == 1
    assert code == 0
