"""S3's multipart uploads by clients (`MultipartStorage`): CreateMultipartUpload with the
declared SHA-256 in the user metadata, one presigned UploadPart URL per part with its
Content-Length signed (S3 refuses any other size), ListParts, CompleteMultipartUpload and
AbortMultipartUpload, through the storage's aioboto3 client.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from sparc_video.core.errors import FailedPrecondition, ObjectNotFound
from sparc_video.storage.base import ObjectInfo, UploadTarget, checked_key, checked_prefix
from sparc_video.storage.multipart import PendingMultipart, StoredPart

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

# User metadata key (`x-amz-meta-sha256`) holding an object's hex SHA-256 (as in s3.py).
SHA256_METADATA = "sha256"
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Multipart:
    """Mixed into S3Storage, which provides the client, the bucket and error translation."""

    bucket: str

    if TYPE_CHECKING:

        @property
        def client(self) -> S3Client: ...

        def _translate(self, exc: BaseException, key: str, action: str) -> BaseException: ...

    async def start_multipart(self, key: str, content_type: str, sha256: str) -> str:
        """CreateMultipartUpload with the declared SHA-256 in the user metadata: S3 takes
        metadata when an upload starts, and the object carries it once completed."""
        checked_key(key)
        try:
            started = await self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ContentType=content_type,
                Metadata={SHA256_METADATA: sha256},
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key, "start an upload of") from exc
        return str(started["UploadId"])

    async def part_upload_url(
        self, key: str, upload_id: str, part_number: int, size_bytes: int, ttl_s: int
    ) -> UploadTarget:
        """A presigned UploadPart with Content-Length among the signed headers: S3 refuses a
        PUT of any other size, so the storage itself holds the upload to what was declared."""
        checked_key(key)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": part_number,
            "ContentLength": size_bytes,
        }
        expire = time.time() + ttl_s
        try:
            url = await self.client.generate_presigned_url(
                "upload_part", Params=params, ExpiresIn=ttl_s
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key, "sign a part upload URL for") from exc
        return UploadTarget(url, {}, expire)

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        checked_key(key)
        parts: list[StoredPart] = []
        try:
            paginator = self.client.get_paginator("list_parts")
            async for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                parts.extend(
                    StoredPart(int(p["PartNumber"]), int(p["Size"]), str(p["ETag"]))
                    for p in page.get("Parts", [])
                )
        except ClientError as exc:
            if _error_code(exc) == "NoSuchUpload":
                raise ObjectNotFound(key, what="upload of") from exc
            raise self._translate(exc, key, "list the parts of") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, key, "list the parts of") from exc
        return sorted(parts, key=lambda p: p.number)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[StoredPart], sha256: str
    ) -> ObjectInfo:
        checked_key(key)
        try:
            await self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]
                },
            )
        except ClientError as exc:
            code = _error_code(exc)
            if code == "NoSuchUpload":
                raise ObjectNotFound(key, what="upload of") from exc
            if code in {"InvalidPart", "InvalidPartOrder", "EntityTooSmall"}:
                raise FailedPrecondition(
                    f"S3 refused to assemble {key!r}: {code}; send the parts again"
                ) from exc
            raise self._translate(exc, key, "complete the upload of") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, key, "complete the upload of") from exc
        return ObjectInfo(key, sum(p.size_bytes for p in parts), sha256)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        checked_key(key)
        try:
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
        except ClientError as exc:
            if _error_code(exc) in {"NoSuchUpload", *_NOT_FOUND_CODES}:
                return
            raise self._translate(exc, key, "abort the upload of") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, key, "abort the upload of") from exc

    async def list_multipart(self, prefix: str) -> list[PendingMultipart]:
        checked_prefix(prefix)
        pending: list[PendingMultipart] = []
        try:
            paginator = self.client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                pending.extend(
                    PendingMultipart(str(u["Key"]), str(u["UploadId"]), u["Initiated"].timestamp())
                    for u in page.get("Uploads", [])
                )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, prefix, "list the uploads under") from exc
        return pending


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
