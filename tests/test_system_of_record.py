"""PostgreSQL is the system of record: losing Redis loses no export and no audit entry.

Redis is flushed (FLUSHALL) or restarted without persistence while exports run: every export
still reaches its terminal state (the reconciler puts unfinished ones back from PostgreSQL, at
most the running attempt is redone), a watcher gets a correct snapshot, and the audit trail and
state history are complete. The stores' own rules (fencing by revision, request ids, quotas,
paging) are tested against the real database too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import grpc
import pytest
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.audit import Action, AuditLog
from sparc_video.core.embedded_redis import EmbeddedRedis
from sparc_video.core.errors import InvalidArgument, ResourceExhausted
from sparc_video.core.ids import new_id
from sparc_video.core.settings import Settings
from sparc_video.database.urls import asyncpg_dsn
from sparc_video.exports.catalog import ExportFilter
from sparc_video.exports.event_log import EventKind
from sparc_video.exports.models import ExportRecord, ExportState
from sparc_video.exports.records import StaleWrite
from tests.fixtures.service import RunningService, start_service
from tests.test_export_e2e import create_request, thumbnail
from tests.test_reliability import FAST_RECOVERY, long_clip, slow_transcode, wait_for

__all__ = ["long_clip"]  # a module fixture of test_reliability, used here too

State = export_pb2.Export
TERMINAL = (State.STATE_SUCCEEDED, State.STATE_FAILED, State.STATE_CANCELLED)


def with_case(
    request: export_service_pb2.CreateExportRequest, case_id: str
) -> export_service_pb2.CreateExportRequest:
    request.export.case_id = case_id
    request.export.purpose = "incident review"
    return request


async def lose_redis(how: str, redis: EmbeddedRedis, service: RunningService) -> None:
    if how == "flushall":
        await service.app.redis.flushall()
    else:  # a Redis without persistence restarting: it comes back empty
        redis.stop()
        redis.start()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["flushall", "restart"])
async def test_losing_redis_mid_run_loses_no_export_and_no_audit_entry(
    how: str,
    service_settings: Callable[..., Settings],
    redis_process: EmbeddedRedis,
    long_clip: Path,
    database_url: str,
) -> None:
    settings = service_settings(redis_url=redis_process.url, **FAST_RECOVERY)
    async with start_service(settings) as service:
        storage, exports = service.app.storage, service.exports
        await storage.upload_file(long_clip, "in/long.mp4", "video/mp4")
        case = "case-7"
        # One finished and downloaded before the loss: its grant must survive.
        done = await exports.CreateExport(
            with_case(create_request("in/long.mp4", thumbnail("1"), request_id="done"), case)
        )
        await wait_for(service, done.name, lambda e: e.state == State.STATE_SUCCEEDED)
        await exports.GetExportDownloadUrl(
            export_service_pb2.GetExportDownloadUrlRequest(name=done.name)
        )
        # One cancelled, one running when Redis goes, and one still queued behind it.
        cancelled = await exports.CreateExport(
            with_case(create_request("in/long.mp4", slow_transcode(), request_id="c"), case)
        )
        await exports.CancelExport(export_service_pb2.CancelExportRequest(name=cancelled.name))
        running = await exports.CreateExport(
            with_case(create_request("in/long.mp4", slow_transcode(), request_id="r"), case)
        )
        queued = await exports.CreateExport(
            with_case(create_request("in/long.mp4", thumbnail("2"), request_id="q"), case)
        )
        await wait_for(service, running.name, lambda e: e.state == State.STATE_RUNNING)

        await lose_redis(how, redis_process, service)

        # Every export is still there, and ends as it should.
        finals = {
            name: await wait_for(service, name, lambda e: e.state in TERMINAL, timeout_s=180)
            for name in (done.name, cancelled.name, running.name, queued.name)
        }
        assert finals[cancelled.name].state == State.STATE_CANCELLED
        for name in (done.name, running.name, queued.name):
            assert finals[name].state == State.STATE_SUCCEEDED, finals[name]
        # At most the running attempt was redone.
        assert finals[running.name].attempt in (1, 2)
        # A watcher after the loss gets a correct snapshot and the end.
        watch = exports.WatchExport(export_service_pb2.WatchExportRequest(name=running.name))
        first = await anext(aiter(watch))
        assert first.export.state == State.STATE_SUCCEEDED
        watch.cancel()
        # Request ids still name their exports.
        again = await exports.CreateExport(
            with_case(create_request("in/long.mp4", thumbnail("2"), request_id="q"), case)
        )
        assert again.name == queued.name

        trail = await AuditLog(service.app.database).trail(case_id=case)
        actions = [(r.entry.action, r.entry.resource) for r in trail]
        for export in (done, cancelled, running, queued):
            assert (Action.EXPORT_CREATE, export.name) in actions
        assert (Action.EXPORT_CANCEL, cancelled.name) in actions
        assert (Action.EXPORT_DOWNLOAD, done.name) in actions
        download = next(r for r in trail if r.entry.action == Action.EXPORT_DOWNLOAD)
        assert download.entry.details["storage_keys"], download

    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        grants = await connection.fetchval("SELECT count(*) FROM download_grants")
        history = await connection.fetch(
            "SELECT to_state FROM export_state_changes WHERE export_id = $1 ORDER BY id",
            running.name.split("/")[1],
        )
    finally:
        await connection.close()
    assert grants == 1
    states = [row["to_state"] for row in history]
    assert states[0] == "QUEUED" and states[-1] == "SUCCEEDED" and "RUNNING" in states


async def test_of_two_writers_that_read_the_same_record_one_wins(
    service_settings: Callable[..., Settings],
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        created = await service.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))
        export_id = created.name.split("/")[1]
        store = service.app.store
        record = await store.get(export_id)

        def to_running(current: ExportRecord) -> str:
            if current.state != ExportState.QUEUED:
                raise StaleWrite("already started")
            current.state = ExportState.RUNNING
            current.attempt += 1
            return EventKind.STATE_CHANGED

        # Two writers at once: PostgreSQL lets one commit; the other's change runs again on
        # the record as it now is, and refuses.
        outcomes = await asyncio.gather(
            store.update(export_id, to_running),
            store.update(export_id, to_running),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if isinstance(o, ExportRecord)]
        assert len(winners) == 1 and any(isinstance(o, StaleWrite) for o in outcomes), outcomes
        assert winners[0].revision == record.revision + 1 and winners[0].attempt == 1
        # A write that names a revision no longer current changes nothing.
        stale = ExportRecord.from_json_dict(record.to_json_dict())
        stale.state, stale.revision = ExportState.CANCELLED, record.revision + 1
        assert not await store.catalog.save(
            stale, read_revision=record.revision, old_state=record.state
        )
        assert await store.catalog.get(export_id) == winners[0]
        assert await store.get(export_id) == winners[0]


async def test_quota_and_request_ids_hold_across_concurrent_creates(
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings()
    async with start_service(settings, worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        store = service.app.store

        def record(request_id: str) -> ExportRecord:
            # A new id per call, as CreateExport gives each request: one id for all would make
            # concurrent inserts collide on the primary key, which ON CONFLICT (requester,
            # request_id) does not settle, instead of on the request id under test.
            return ExportRecord(
                id=new_id(),
                source_key="in/a.mp4",
                operations=[],
                requester="alice",
                request_id=request_id,
            )

        outcomes = await asyncio.gather(
            *(store.create(record(str(i)), max_unfinished=3) for i in range(8)),
            return_exceptions=True,
        )
        created = [o for o in outcomes if isinstance(o, tuple)]
        refused = [o for o in outcomes if isinstance(o, ResourceExhausted)]
        assert len(created) == 3 and len(refused) == 5, outcomes
        # At the quota, a retry of a request that created an export gets that export back.
        first, _ = created[0]
        retried, was_created = await store.create(record(first.request_id), max_unfinished=3)
        assert (retried.id, was_created) == (first.id, False)
        # The same request id, at once from many callers: one export.
        same = await asyncio.gather(
            *(store.create(record("dup"), max_unfinished=0) for _ in range(5))
        )
        assert len({r.id for r, _ in same}) == 1
        assert sum(was_created for _, was_created in same) == 1


async def test_lists_page_by_requester_case_and_state_from_the_database(
    service_settings: Callable[..., Settings],
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        store = service.app.store
        for i in range(7):
            await store.create(
                ExportRecord(
                    id=f"e{i}",
                    source_key="in/a.mp4",
                    operations=[],
                    requester="alice" if i % 2 else "bob",
                    case_id="case-1" if i < 4 else "case-2",
                )
            )
        seen: list[str] = []
        token = ""
        while True:
            page, token = await store.page(
                page_size=2,
                page_token=token,
                keep=ExportFilter(state=ExportState.QUEUED, requester="bob"),
            )
            seen += [r.id for r in page]
            if not token:
                break
        assert seen == ["e6", "e4", "e2", "e0"]  # newest first
        case, _ = await store.page(page_size=10, page_token="", keep=ExportFilter(case_id="case-2"))
        assert [r.id for r in case] == ["e6", "e5", "e4"]
        _, unfiltered_token = await store.page(page_size=1, page_token="", keep=ExportFilter())
        with pytest.raises(InvalidArgument) as replayed:
            await store.page(
                page_size=2, page_token=unfiltered_token, keep=ExportFilter(requester="bob")
            )
        assert "same filter" in replayed.value.message


async def test_without_its_database_the_api_answers_unavailable_and_acknowledges_nothing(
    service_settings: Callable[..., Settings], database_url: str, postgres_server_url: str
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        admin = await asyncpg.connect(asyncpg_dsn(postgres_server_url))
        try:
            # Refuse new connections and end the pool's: the database is gone for the service.
            name = database_url.rsplit("/", 1)[1]
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await service.exports.CreateExport(
                    create_request("in/a.mp4", thumbnail("1"), request_id="while-down"),
                    timeout=30,
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
            assert "PostgreSQL" in (refused.value.details() or "")
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        finally:
            await admin.close()
        # Nothing was acknowledged, so nothing exists: the same request creates it now.
        listed = await service.exports.ListExports(export_service_pb2.ListExportsRequest())
        assert list(listed.exports) == []
        assert not await service.app.redis.keys(f"{service.settings.redis_prefix}:export:*")
