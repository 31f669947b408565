"""Upload name parsing and the domain's upload view as the `Upload` message."""

from __future__ import annotations

from sparc.video.v1 import upload_service_pb2 as pb

from sparc_video.api.exports.mapping import timestamp
from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.uploads import UploadState, UploadView
from sparc_video.uploads.service import valid_upload_id

_STATES = {
    UploadState.UPLOADING: pb.Upload.STATE_UPLOADING,
    UploadState.COMPLETED: pb.Upload.STATE_COMPLETED,
    UploadState.CANCELLED: pb.Upload.STATE_CANCELLED,
}


def parse_upload_name(name: str, field: str = "name") -> str:
    """The id in `uploads/{id}`; InvalidArgument naming `field` otherwise."""
    prefix, _, upload_id = name.partition("/")
    if prefix != "uploads" or not valid_upload_id(upload_id):
        raise InvalidArgument(
            [FieldViolation(field, f"{name[:100]!r} is not an upload name (uploads/ID)")]
        )
    return upload_id


def upload_to_proto(view: UploadView) -> pb.Upload:
    record = view.record
    return pb.Upload(
        name=f"uploads/{record.id}",
        filename=record.filename,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        content_type=record.content_type,
        object_key=record.object_key,
        state=_STATES[record.state],
        part_size_bytes=record.part_size,
        part_count=record.part_count,
        uploaded_parts=[
            pb.UploadedPart(part_number=p.number, size_bytes=p.size_bytes) for p in view.stored
        ],
        part_urls=[
            pb.PartUploadUrl(
                part_number=p.number,
                size_bytes=p.size_bytes,
                url=p.target.url,
                headers=p.target.headers,
                expire_time=timestamp(p.target.expire_time),
            )
            for p in view.missing
        ],
        create_time=timestamp(record.create_time),
        expire_time=timestamp(record.expire_time),
        used=record.used,
    )
