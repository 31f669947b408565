"""gRPC handlers of sparc.video.v1.ExportService: convert, call the domain, convert back."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import grpc
from sparc.video.v1 import export_pb2, export_service_pb2, export_service_pb2_grpc

from sparc_video.api.exports import mapping as proto_mapping
from sparc_video.api.exports import requests as validation
from sparc_video.evidence.signing import ALGORITHM, ManifestSigner, public_key_pem
from sparc_video.exports.event_log import EventKind, parse_event_id
from sparc_video.exports.models import ExportState
from sparc_video.exports.service import SNAPSHOT, DownloadLink, Exports, WatchMessage
from sparc_video.security.auth import current_principal

Context = grpc.aio.ServicerContext[Any, Any]
WatchResponse = export_service_pb2.WatchExportResponse

# Recent events' responses; a few per export being watched is plenty (see _watch_response).
_WATCH_RESPONSES_KEPT = 4096
_EVENT_KINDS = {
    SNAPSHOT: WatchResponse.EVENT_KIND_SNAPSHOT,
    EventKind.STATE_CHANGED: WatchResponse.EVENT_KIND_STATE_CHANGED,
    EventKind.PROGRESS: WatchResponse.EVENT_KIND_PROGRESS,
    EventKind.AUDIT: WatchResponse.EVENT_KIND_AUDIT,
}


class ExportServicer(export_service_pb2_grpc.ExportServiceServicer):
    def __init__(self, exports: Exports, signer: ManifestSigner) -> None:
        self._signer = signer
        self._exports = exports
        self._responses: OrderedDict[tuple[str, str, str], WatchResponse] = OrderedDict()

    async def CreateExport(
        self, request: export_service_pb2.CreateExportRequest, context: Context
    ) -> export_pb2.Export:
        args = validation.create_args(request)
        record = await self._exports.create(
            current_principal(),
            args.source,
            args.operations,
            args.request_id,
            args.priority,
            audit=args.audit,
        )
        return proto_mapping.export_to_proto(record)

    async def GetExport(
        self, request: export_service_pb2.GetExportRequest, context: Context
    ) -> export_pb2.Export:
        record = await self._exports.get(
            current_principal(), validation.parse_export_name(request.name)
        )
        return proto_mapping.export_to_proto(record)

    async def ListExports(
        self, request: export_service_pb2.ListExportsRequest, context: Context
    ) -> export_service_pb2.ListExportsResponse:
        args = validation.list_args(request)
        records, next_token = await self._exports.page(
            current_principal(), args.page_size, args.page_token, args.keep
        )
        return export_service_pb2.ListExportsResponse(
            exports=[proto_mapping.export_to_proto(r) for r in records],
            next_page_token=next_token,
        )

    async def CancelExport(
        self, request: export_service_pb2.CancelExportRequest, context: Context
    ) -> export_pb2.Export:
        record = await self._exports.cancel(
            current_principal(), validation.parse_export_name(request.name)
        )
        return proto_mapping.export_to_proto(record)

    async def WatchExport(
        self, request: export_service_pb2.WatchExportRequest, context: Context
    ) -> AsyncIterator[export_service_pb2.WatchExportResponse]:
        export_id = validation.parse_export_name(request.name)
        after = parse_event_id(request.after_event_id) if request.after_event_id else ""
        async for message in self._exports.watch(current_principal(), export_id, after):
            yield self._watch_response(export_id, message)

    def _watch_response(self, export_id: str, message: WatchMessage) -> WatchResponse:
        """The response for one event, built once however many clients watch the export.

        An event id names one version of the record, and a snapshot is the record as of the
        event id it carries, so equal keys always mean equal responses. Converting the record
        cost more than the rest of fanning an event out to a hundred watchers together.
        """
        key = (export_id, message.event_id, message.kind)
        response = self._responses.get(key)
        if response is None:
            response = WatchResponse(
                export=proto_mapping.export_to_proto(message.record),
                event_id=message.event_id,
                kind=_EVENT_KINDS[message.kind],
                event_time=proto_mapping.timestamp(message.time),
            )
            self._responses[key] = response
            if len(self._responses) > _WATCH_RESPONSES_KEPT:
                self._responses.popitem(last=False)
        return response

    async def GetExportDownloadUrl(
        self, request: export_service_pb2.GetExportDownloadUrlRequest, context: Context
    ) -> export_service_pb2.GetExportDownloadUrlResponse:
        export_id = validation.parse_export_name(request.name)
        ttl_s = validation.download_ttl_s(request)
        links = await self._exports.download_links(current_principal(), export_id, ttl_s)
        response = export_service_pb2.GetExportDownloadUrlResponse(
            urls=[_download_url(link) for link in links.outputs]
        )
        if links.manifest is not None and links.signature is not None:
            response.manifest_url.CopyFrom(_download_url(links.manifest))
            response.manifest_signature_url.CopyFrom(_download_url(links.signature))
        return response

    async def GetManifestSigningKey(
        self, request: export_service_pb2.GetManifestSigningKeyRequest, context: Context
    ) -> export_service_pb2.ManifestSigningKey:
        signer = self._signer
        return export_service_pb2.ManifestSigningKey(
            public_key_pem=signer.public_key_pem,
            key_id=signer.key_id,
            algorithm=ALGORITHM,
            verification_keys=[
                export_service_pb2.ManifestVerificationKey(
                    public_key_pem=public_key_pem(key),
                    key_id=kid,
                    algorithm=ALGORITHM,
                    retired=signer.is_retired(kid),
                )
                for kid, key in signer.verification_keys.items()
            ],
        )

    async def GetQueueStats(
        self, request: export_service_pb2.GetQueueStatsRequest, context: Context
    ) -> export_service_pb2.QueueStats:
        stats = await self._exports.queue_stats()
        return export_service_pb2.QueueStats(
            queued=stats.counts[ExportState.QUEUED],
            running=stats.counts[ExportState.RUNNING],
            retrying=stats.counts[ExportState.RETRYING],
            succeeded=stats.counts[ExportState.SUCCEEDED],
            failed=stats.counts[ExportState.FAILED],
            cancelled=stats.counts[ExportState.CANCELLED],
            workers=stats.workers,
            oldest_queued_age=proto_mapping.duration(stats.oldest_queued_age_s),
        )


def _download_url(link: DownloadLink) -> export_service_pb2.DownloadUrl:
    return export_service_pb2.DownloadUrl(
        output_index=link.output_index,
        storage_key=link.storage_key,
        url=link.url,
        expire_time=proto_mapping.timestamp(link.expire_time),
    )
