"""gRPC handlers of sparc.video.v1.AuditService: validate, call the audit log, convert back."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from sparc.video.v1 import audit_service_pb2 as pb
from sparc.video.v1 import audit_service_pb2_grpc

from sparc_video.audit import AuditLog, AuditRecord
from sparc_video.core.errors import FieldViolation, InvalidArgument

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def entry_to_proto(record: AuditRecord) -> pb.AuditEntry:
    time = Timestamp()
    time.FromDatetime(record.at)
    details = Struct()
    details.update(record.entry.details)
    return pb.AuditEntry(
        id=record.id,
        time=time,
        principal=record.entry.principal,
        action=record.entry.action.value,
        resource=record.entry.resource,
        case_id=record.entry.case_id,
        details=details,
    )


class AuditServicer(audit_service_pb2_grpc.AuditServiceServicer):
    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Context
    ) -> pb.ListAuditEntriesResponse:
        violations: list[FieldViolation] = []
        if bool(request.case_id) == bool(request.resource):
            violations.append(FieldViolation("case_id", "give exactly one of case_id and resource"))
        if request.page_size < 0:
            violations.append(FieldViolation("page_size", "must not be negative"))
        if violations:
            raise InvalidArgument(violations)
        records, token = await self._audit.page(
            case_id=request.case_id,
            resource=request.resource,
            page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
            page_token=request.page_token,
        )
        return pb.ListAuditEntriesResponse(
            audit_entries=[entry_to_proto(r) for r in records], next_page_token=token
        )
