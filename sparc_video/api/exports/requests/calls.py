"""Whole ExportService requests → the arguments of their one domain call.

The handlers stay proto → one domain call → proto: what can be wrong with a request is found
here, all of it at once, and raised as one InvalidArgument.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparc.video.v1 import export_service_pb2

from sparc_video.api.common import raise_if_any
from sparc_video.api.exports.requests.edits import require_capture_times
from sparc_video.api.exports.requests.filters import parse_export_filter
from sparc_video.api.exports.requests.metadata import (
    validate_case_id,
    validate_priority,
    validate_purpose,
    validate_request_id,
)
from sparc_video.api.exports.requests.operations import validate_operations
from sparc_video.api.exports.requests.sources import validate_source
from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.exports.catalog import ExportFilter
from sparc_video.exports.models import Priority
from sparc_video.exports.operations import Operation
from sparc_video.exports.service import AuditFields
from sparc_video.exports.sources import SourceSpec

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class CreateArgs:
    """A valid CreateExport request, as `Exports.create` takes it."""

    source: SourceSpec
    operations: list[Operation]
    request_id: str
    priority: Priority
    audit: AuditFields


def create_args(request: export_service_pb2.CreateExportRequest) -> CreateArgs:
    violations: list[FieldViolation] = []
    source = validate_source(request.export.source, "export.source", violations)
    operations = validate_operations(
        list(request.export.operations), "export.operations", violations
    )
    if not violations:  # (indexes line up only when every operation parsed)
        # An object source carries no capture time: a clock must bring its own base.
        require_capture_times(
            operations,
            "export.operations",
            violations,
            source_has_capture_time=not isinstance(source, str),
        )
    request_id = validate_request_id(request.request_id, violations)
    priority = validate_priority(request.export.priority, "export.priority", violations)
    case_id = validate_case_id(request.export.case_id, violations)
    purpose = validate_purpose(request.export.purpose, violations)
    raise_if_any(violations)
    return CreateArgs(
        source, operations, request_id, priority, AuditFields(case_id=case_id, purpose=purpose)
    )


@dataclass(frozen=True)
class ListArgs:
    page_size: int
    page_token: str
    keep: ExportFilter


def list_args(request: export_service_pb2.ListExportsRequest) -> ListArgs:
    if request.page_size < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    return ListArgs(page_size, request.page_token, parse_export_filter(request.filter))


def download_ttl_s(request: export_service_pb2.GetExportDownloadUrlRequest) -> int:
    """The links' lifetime the caller asked for; 0: the server's default."""
    ttl_s = request.ttl.seconds if request.HasField("ttl") else 0
    if request.HasField("ttl") and ttl_s <= 0:
        raise InvalidArgument([FieldViolation("ttl", "must be at least 1 second")])
    return ttl_s
