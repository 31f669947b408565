"""gRPC handlers of sparc.video.v1.UploadService: convert, call the domain, convert back."""

from __future__ import annotations

from typing import Any

import grpc
from sparc.video.v1 import upload_service_pb2 as pb
from sparc.video.v1 import upload_service_pb2_grpc

from sparc_video.api.uploads.mapping import parse_upload_name, upload_to_proto
from sparc_video.security.auth import current_principal
from sparc_video.uploads import Uploads

Context = grpc.aio.ServicerContext[Any, Any]


class UploadServicer(upload_service_pb2_grpc.UploadServiceServicer):
    def __init__(self, uploads: Uploads) -> None:
        self._uploads = uploads

    async def CreateUpload(self, request: pb.CreateUploadRequest, context: Context) -> pb.Upload:
        view = await self._uploads.create(
            current_principal(),
            request.filename,
            request.size_bytes,
            request.sha256,
            request.content_type,
        )
        return upload_to_proto(view)

    async def GetUpload(self, request: pb.GetUploadRequest, context: Context) -> pb.Upload:
        upload_id = parse_upload_name(request.name)
        return upload_to_proto(await self._uploads.get(current_principal(), upload_id))

    async def CompleteUpload(
        self, request: pb.CompleteUploadRequest, context: Context
    ) -> pb.Upload:
        upload_id = parse_upload_name(request.name)
        return upload_to_proto(await self._uploads.complete(current_principal(), upload_id))

    async def CancelUpload(self, request: pb.CancelUploadRequest, context: Context) -> pb.Upload:
        upload_id = parse_upload_name(request.name)
        return upload_to_proto(await self._uploads.cancel(current_principal(), upload_id))
