"""The audit trail through the API (AuditService) and the CLI, and ListExports' filters over
PostgreSQL's indexed columns."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from sparc.video.v1 import audit_service_pb2, audit_service_pb2_grpc, export_service_pb2

from sparc_video.core.settings import Settings
from tests.fixtures.service import start_service
from tests.test_cli import sparc_video
from tests.test_export_e2e import create_request, thumbnail


def in_case(case_id: str, request_id: str) -> export_service_pb2.CreateExportRequest:
    request = create_request("in/a.mp4", thumbnail("1"), request_id=request_id)
    request.export.case_id = case_id
    request.export.purpose = "review"
    return request


async def test_a_case_trail_pages_oldest_first_and_the_cli_prints_it(
    service_settings: Callable[..., Settings],
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        first = await service.exports.CreateExport(in_case("case-1", "a"))
        second = await service.exports.CreateExport(in_case("case-1", "b"))
        await service.exports.CreateExport(in_case("case-2", "c"))
        await service.exports.CancelExport(export_service_pb2.CancelExportRequest(name=second.name))
        audit = audit_service_pb2_grpc.AuditServiceStub(service.channel)

        seen: list[tuple[str, str]] = []
        ids: list[int] = []
        token = ""
        while True:
            page = await audit.ListAuditEntries(
                audit_service_pb2.ListAuditEntriesRequest(
                    case_id="case-1", page_size=1, page_token=token
                )
            )
            seen += [(e.action, e.resource) for e in page.audit_entries]
            ids += [e.id for e in page.audit_entries]
            token = page.next_page_token
            if not token:
                break
        assert seen == [
            ("export.create", first.name),
            ("export.create", second.name),
            ("export.cancel", second.name),
        ]
        assert ids == sorted(ids)
        one = await audit.ListAuditEntries(
            audit_service_pb2.ListAuditEntriesRequest(resource=second.name)
        )
        assert [e.action for e in one.audit_entries] == ["export.create", "export.cancel"]
        assert one.audit_entries[0].details["purpose"] == "review"
        assert all(e.principal == "local" for e in one.audit_entries)

        for request in (
            audit_service_pb2.ListAuditEntriesRequest(),
            audit_service_pb2.ListAuditEntriesRequest(case_id="x", resource="exports/y"),
            audit_service_pb2.ListAuditEntriesRequest(case_id="case-2", page_token="garbage"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await audit.ListAuditEntries(request)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        printed = await sparc_video(
            "audit", "case-1", "--target", service.target, "--format", "json"
        )
        assert printed.rc == 0, printed.stderr
        assert [(e["action"], e["resource"]) for e in printed.json] == seen
        table = await sparc_video("audit", "--resource", first.name, "--target", service.target)
        assert table.rc == 0 and "export.create" in table.stdout and first.name in table.stdout
        usage = await sparc_video("audit", "--target", service.target)
        assert usage.rc == 2 and "CASE_ID or --resource" in usage.stderr


async def test_list_exports_filters_by_case_requester_state_and_time(
    service_settings: Callable[..., Settings],
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        a = await service.exports.CreateExport(in_case("case-1", "a"))
        b = await service.exports.CreateExport(in_case("case-2", "b"))
        await service.exports.CancelExport(export_service_pb2.CancelExportRequest(name=b.name))

        async def names(text: str) -> list[str]:
            page = await service.exports.ListExports(
                export_service_pb2.ListExportsRequest(filter=text)
            )
            return [e.name for e in page.exports]

        assert await names('case_id = "case-1"') == [a.name]
        assert await names("case_id = case-2 AND state = CANCELLED") == [b.name]
        assert await names("case_id = case-2 AND state = QUEUED") == []
        assert await names('requester = "local"') == [b.name, a.name]
        assert await names('create_time >= "2000-01-01T00:00:00Z"') == [b.name, a.name]
        assert await names('create_time < "2000-01-01T00:00:00Z"') == []
        for bad in ("color = red", "state = SHINY", 'create_time >= "yesterday"', "state < QUEUED"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await names(bad)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert "filter" in (refused.value.details() or ""), bad
