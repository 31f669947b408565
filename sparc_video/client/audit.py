"""Typed async client of `sparc.video.v1.AuditService`: the audit trail of a case or of one
resource (admins only)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from sparc.video.v1 import audit_service_pb2, audit_service_pb2_grpc

from sparc_video.client.channel import ChannelClient, all_pages
from sparc_video.client.errors import unary

AuditEntry = audit_service_pb2.AuditEntry


class AsyncAuditClient(ChannelClient):
    """Typed async client of AuditService. Use as `async with`, or call `close()`."""

    def _open_stubs(self, channel: grpc.aio.Channel) -> None:
        self._stub = audit_service_pb2_grpc.AuditServiceStub(channel)

    async def list_audit_entries(
        self,
        *,
        case_id: str = "",
        resource: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> audit_service_pb2.ListAuditEntriesResponse:
        """One page of the trail of `case_id` or of `resource` (exactly one), oldest first."""
        request = audit_service_pb2.ListAuditEntriesRequest(
            case_id=case_id, resource=resource, page_size=page_size, page_token=page_token
        )
        return await unary(self._stub.ListAuditEntries(request, timeout=self._deadline(timeout)))

    def iter_audit_entries(
        self, *, case_id: str = "", resource: str = ""
    ) -> AsyncIterator[AuditEntry]:
        """The whole trail, oldest first, following page tokens."""
        return all_pages(
            lambda token: self.list_audit_entries(
                case_id=case_id, resource=resource, page_token=token
            ),
            lambda page: page.audit_entries,
        )
