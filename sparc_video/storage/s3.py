"""S3 (or an S3-compatible store such as MinIO) through one long-lived aioboto3 client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aioboto3
import boto3  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from sparc_video.core.errors import ObjectNotFound, ObjectTooLarge, SparcVideoError, Unavailable
from sparc_video.core.file_hashes import file_sha256
from sparc_video.core.settings import Settings, reveal
from sparc_video.storage.base import (
    ObjectInfo,
    UploadTarget,
    checked_key,
    checked_prefix,
    content_disposition,
)
from sparc_video.storage.cloudfront import CloudFrontLinks
from sparc_video.storage.s3_multipart import S3Multipart

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import ObjectIdentifierTypeDef

MIB = 1024 * 1024
# S3 refuses multipart parts below 5 MiB (except the last one).
MIN_PART_SIZE = 5 * MIB
DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_CONCURRENCY = 4

# User metadata key (`x-amz-meta-sha256`) holding an object's hex SHA-256.
SHA256_METADATA = "sha256"

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})

# aioboto3 hands aiohttp each part (up to multipart_threshold bytes) as a bytes buffer, which
# aiohttp warns about above 1 MiB; writing a buffer already in memory costs a copy, not a block.
warnings.filterwarnings(
    "ignore",
    message="Sending a large body directly with raw bytes",
    category=ResourceWarning,
    module="aiohttp.payload",
)


class S3Storage(S3Multipart):
    """Objects in one bucket. Uploads by clients in parts: `S3Multipart`.

    Uploads and downloads go through aioboto3's managed transfers: files above
    `multipart_threshold` move in parts of that size, `max_concurrency` at a time, so memory use
    stays at about `multipart_threshold * max_concurrency` whatever the file size.
    """

    backend_name = "s3"

    def __init__(
        self,
        settings: Settings,
        *,
        multipart_threshold: int = DEFAULT_PART_SIZE,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        max_attempts: int = 3,
    ) -> None:
        if not settings.s3_bucket:
            raise ValueError("S3Storage needs settings.s3_bucket")
        if multipart_threshold < MIN_PART_SIZE:
            raise ValueError(f"multipart_threshold must be at least {MIN_PART_SIZE} bytes")
        self.bucket = settings.s3_bucket
        self._settings = settings
        self._cloudfront = (
            CloudFrontLinks(
                settings.cloudfront_domain,
                settings.cloudfront_key_pair_id,
                reveal(settings.cloudfront_private_key),
            )
            if settings.cloudfront_domain
            else None
        )
        self._endpoint = settings.s3_endpoint_url or f"AWS S3 ({settings.aws_region})"
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_threshold,
            max_concurrency=max_concurrency,
            max_io_queue=max_concurrency * 2,
        )
        # The same for the aiobotocore client and the boto3 one that uploads.
        self._client_options: dict[str, Any] = {
            "connect_timeout": 10,
            "read_timeout": 60,
            "retries": {"mode": "standard", "total_max_attempts": max_attempts},
            "max_pool_connections": max(10, max_concurrency * 2),
            "signature_version": "s3v4",
            # Self-hosted endpoints (MinIO, moto, Ceph) rarely have wildcard DNS for
            # virtual-hosted bucket names; AWS itself keeps the default.
            "s3": {"addressing_style": "path"} if settings.s3_endpoint_url else None,
        }
        self._config = AioConfig(**self._client_options)
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None
        self._upload_manager: TransferManager | None = None

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        multipart_threshold: int = DEFAULT_PART_SIZE,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        max_attempts: int = 3,
    ) -> S3Storage:
        """Construct and start; the caller must `aclose()` it."""
        storage = cls(
            settings,
            multipart_threshold=multipart_threshold,
            max_concurrency=max_concurrency,
            max_attempts=max_attempts,
        )
        await storage.start()
        return storage

    async def start(self) -> None:
        session = aioboto3.Session()
        self._client = await self._stack.enter_async_context(
            session.client(
                "s3",
                endpoint_url=self._settings.s3_endpoint_url,
                region_name=self._settings.aws_region,
                aws_access_key_id=reveal(self._settings.aws_access_key_id),
                aws_secret_access_key=reveal(self._settings.aws_secret_access_key),
                config=self._config,
            )
        )
        # Creating a boto3 client loads its service model: seconds of CPU on a small machine,
        # so once per process, not per upload.
        self._upload_manager = await asyncio.to_thread(self._open_upload_manager)

    async def aclose(self) -> None:
        self._client = None
        await self._stack.aclose()
        if self._upload_manager is not None:
            manager, self._upload_manager = self._upload_manager, None
            await asyncio.to_thread(manager.shutdown)

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("S3Storage is not started (or already closed)")
        return self._client

    async def stat(self, key: str) -> ObjectInfo:
        head = await self._head(checked_key(key))
        sha256 = str(head.get("Metadata", {}).get(SHA256_METADATA, ""))
        return ObjectInfo(key, int(head["ContentLength"]), sha256)

    async def download_file(self, key: str, path: Path, max_bytes: int = 0) -> int:
        checked_key(key)
        head = await self._head(key)
        if max_bytes and int(head["ContentLength"]) > max_bytes:
            raise ObjectTooLarge(key, int(head["ContentLength"]), max_bytes)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            try:
                # The parts are ranged GETs: pinning the ETag makes a concurrent overwrite fail
                # the download instead of mixing two versions in one file.
                await self.client.download_file(
                    self.bucket,
                    key,
                    str(partial),
                    ExtraArgs={"IfMatch": head["ETag"]},
                    Config=self._transfer,
                )
            except (BotoCoreError, ClientError) as exc:
                raise self._translate(exc, key, "download") from exc
            except Exception as exc:
                cause = _unwrap(exc)
                if cause is exc:
                    raise
                raise self._translate(cause, key, "download") from exc
            size = partial.stat().st_size
            if size != head["ContentLength"]:
                raise Unavailable(
                    f"downloading {key!r} from S3 gave {size} of {head['ContentLength']} bytes"
                )
            os.replace(partial, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return size

    async def upload_file(
        self,
        path: Path,
        key: str,
        content_type: str,
        sha256: str | None = None,
        *,
        give_up: bool = False,  # nothing to gain: the bytes are sent either way
    ) -> ObjectInfo:
        """The SHA-256 goes into the object's user metadata (`x-amz-meta-sha256`), which S3
        takes when the upload starts, so it is computed from the file before sending. Each
        part is also sent with its own SHA-256 (ChecksumAlgorithm), which S3 checks on
        arrival: the bytes stored are the bytes hashed, or the upload fails."""
        checked_key(key)
        if sha256 is None:
            sha256 = await asyncio.to_thread(file_sha256, path)
        sent = 0

        def count(n: int) -> None:
            nonlocal sent
            sent += n

        # boto3's own managed transfer in its threads: aioboto3's upload reads, hashes (SigV4
        # payload hash, CRC32) and sends every part on the event loop, one part at a time in
        # effect; s3transfer's threads do that in parallel, with the GIL released while
        # hashing. Measured (benchmarks/control_plane/storage.py): 0.6x of boto3's throughput
        # before.
        future = self._uploads().upload(
            str(path),
            self.bucket,
            key,
            extra_args={
                "ContentType": content_type,
                "Metadata": {SHA256_METADATA: sha256},
                "ChecksumAlgorithm": "SHA256",
            },
            subscribers=[_Progress(count)],
        )
        try:
            await asyncio.to_thread(future.result)
        except asyncio.CancelledError:
            # Stop the threads and let them abort the multipart upload before the caller
            # goes on (e.g. to delete the attempt's outputs): nothing may land afterwards.
            future.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.to_thread(future.result))
            raise
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key, "upload") from exc
        return ObjectInfo(key, sent, sha256)

    def _uploads(self) -> TransferManager:
        if self._upload_manager is None:
            raise RuntimeError("S3Storage is not started (or already closed)")
        return self._upload_manager

    def _open_upload_manager(self) -> TransferManager:
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self._settings.s3_endpoint_url,
            region_name=self._settings.aws_region,
            aws_access_key_id=reveal(self._settings.aws_access_key_id),
            aws_secret_access_key=reveal(self._settings.aws_secret_access_key),
            config=BotoConfig(**self._client_options),
        )
        return TransferManager(client, self._transfer)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        """One PUT carrying the whole object's SHA-256 (ChecksumSHA256), which S3 checks
        before storing it, and the same hash in hex in the user metadata."""
        checked_key(key)
        digest = hashlib.sha256(data)
        try:
            await self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                Metadata={SHA256_METADATA: digest.hexdigest()},
                ChecksumSHA256=base64.b64encode(digest.digest()).decode("ascii"),
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key, "upload") from exc
        return ObjectInfo(key, len(data), digest.hexdigest())

    async def delete_prefix(self, prefix: str) -> int:
        checked_prefix(prefix)
        deleted = 0
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            # Deleting page by page keeps memory flat for any number of objects; S3 continuation
            # tokens stay valid while earlier keys disappear.
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                batch: list[ObjectIdentifierTypeDef] = [
                    {"Key": item["Key"]} for item in page.get("Contents", [])
                ]
                if not batch:
                    continue
                result = await self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                errors = result.get("Errors", [])
                if errors:
                    first = errors[0]
                    raise Unavailable(
                        f"S3 refused to delete {len(errors)} object(s) under {prefix!r}, e.g. "
                        f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
                    )
                deleted += len(batch)
            # An upload cut short (worker killed, cancelled) leaves parts that are billed and
            # invisible to listings: abort them too, so nothing of the prefix survives.
            uploads = self.client.get_paginator("list_multipart_uploads")
            async for listing in uploads.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in listing.get("Uploads", []):
                    await self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, prefix, "delete under") from exc
        return deleted

    async def delete(self, key: str) -> None:
        checked_key(key)
        try:
            await self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key, "delete") from exc

    async def upload_url(
        self, key: str, ttl_s: int, size_bytes: int, content_type: str
    ) -> UploadTarget:
        """A presigned PUT. Content-Length, Content-Type and `If-None-Match: *` are signed
        headers: S3 refuses any other size, and refuses to replace an existing object, so a
        recording hashed at registration cannot be swapped by replaying the URL."""
        checked_key(key)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "ContentLength": size_bytes,
            "IfNoneMatch": "*",
        }
        expire = time.time() + ttl_s
        try:
            url = await self.client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=ttl_s
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key, "sign an upload URL for") from exc
        return UploadTarget(url, {"Content-Type": content_type, "If-None-Match": "*"}, expire)

    async def download_url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        """A presigned GET URL, or with CLOUDFRONT_DOMAIN a URL on that distribution.

        CloudFront URLs are signed (and expire after ttl_s) when a key pair is configured; see
        `cloudfront.py`. `filename` does not apply to them.
        """
        checked_key(key)
        if self._cloudfront is not None:
            return self._cloudfront.url(key, ttl_s)
        params: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        try:
            return await self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=ttl_s
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key, "sign a URL for") from exc

    async def check(self) -> None:
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND_CODES or code == "NoSuchBucket":
                raise Unavailable(
                    f"S3 bucket {self.bucket!r} does not exist at {self._endpoint}"
                ) from exc
            # HEAD responses have no body: the status code is all S3 says (403: no access).
            raise Unavailable(
                f"S3 bucket {self.bucket!r} at {self._endpoint} is not usable: {code}"
            ) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, self.bucket, "check bucket") from exc

    async def _head(self, key: str) -> Mapping[str, Any]:
        try:
            return await self.client.head_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, key, "read") from exc

    def _translate(self, exc: BaseException, key: str, action: str) -> BaseException:
        """The domain error for an S3 failure; other exceptions are returned unchanged."""
        if isinstance(exc, SparcVideoError):
            return exc
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code in _NOT_FOUND_CODES:
                return ObjectNotFound(key)
            if code == "NoSuchBucket":
                return Unavailable(f"S3 bucket {self.bucket!r} does not exist at {self._endpoint}")
            if code in {"412", "PreconditionFailed"}:
                return Unavailable(f"{key!r} changed in S3 while it was read; try again")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            message = exc.response.get("Error", {}).get("Message", "")
            return Unavailable(
                f"S3 could not {action} {key!r} in bucket {self.bucket!r}: "
                f"{code or status} {message}".rstrip()
            )
        if isinstance(exc, BotoCoreError):
            return Unavailable(f"cannot reach S3 at {self._endpoint} to {action} {key!r}: {exc}")
        return exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unwrap(exc: BaseException) -> BaseException:
    """aioboto3 reports a failed ranged GET as a bare Exception whose cause is the real error."""
    if type(exc) is Exception and isinstance(exc.__cause__, (BotoCoreError, ClientError)):
        return exc.__cause__
    return exc


class _Progress(BaseSubscriber):
    """Counts the bytes s3transfer reports sent."""

    def __init__(self, callback: Callable[[int], None]) -> None:
        self._callback = callback

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._callback(bytes_transferred)
