"""Local storage on the HTTP port: `GET /files/{key}` serves objects to holders of a signed
download link, `PUT /uploads/{key}` creates one for holders of a signed upload link, or with
`upload_id` and `part` in the query stores one part of a multipart upload (UploadService)."""

from __future__ import annotations

import mimetypes

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDict

from sparc_video.core.errors import AlreadyExists, InvalidArgument, ObjectNotFound
from sparc_video.storage.base import content_disposition
from sparc_video.storage.local import LocalStorage
from sparc_video.storage.local_files import COPY_BUFFER, BodySizeMismatch


class _ExactFileResponse(web.FileResponse):
    """A FileResponse that always sends the file itself.

    Given `Accept-Encoding: gzip`, aiohttp would send a sibling `NAME.gz` instead when one
    exists; in object storage that sibling is an unrelated object, not a compressed copy.
    """

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        headers = CIMultiDict(request.headers)
        headers.popall(hdrs.ACCEPT_ENCODING, None)
        return await super().prepare(request.clone(headers=headers))


def local_download_routes(storage: LocalStorage) -> list[web.RouteDef]:
    async def download(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        query = request.query
        filename = query.get("filename")
        problem = storage.links.link_problem(
            key, query.get("expires", ""), query.get("sig", ""), filename
        )
        if problem is not None:
            return web.Response(status=403, text=problem + "\n")
        try:
            path = await storage.local_path(key)
        except (ObjectNotFound, InvalidArgument):
            return web.Response(status=404, text="no such object\n")
        content_type, encoding = mimetypes.guess_type(key, strict=False)
        if encoding or not content_type:
            # "x.tar.gz" guesses as tar; sent without Content-Encoding, clients get opaque bytes.
            content_type = "application/octet-stream"
        headers = {hdrs.CONTENT_TYPE: content_type, hdrs.CACHE_CONTROL: "private, no-transform"}
        if filename:
            headers[hdrs.CONTENT_DISPOSITION] = content_disposition(filename)
        return _ExactFileResponse(path, headers=headers)

    return [web.get("/files/{key:.+}", download)]


def local_upload_routes(storage: LocalStorage) -> list[web.RouteDef]:
    """Answers as S3 does to a presigned PUT: 403 for a bad or expired link, 411/413/400 for a
    missing or wrong Content-Length, 412 when the object exists (it is never replaced)."""

    async def upload(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        query = request.query
        if "upload_id" in query or "part" in query:
            return await upload_part(request, key)
        allowed = storage.links.verify_upload(
            key, query.get("expires", ""), query.get("size", ""), query.get("sig", "")
        )
        if isinstance(allowed, str):
            return web.Response(status=403, text=allowed + "\n")
        if (refused := _length_problem(request, allowed)) is not None:
            return refused
        try:
            await storage.create_from_stream(
                key, request.content.iter_chunked(COPY_BUFFER), allowed
            )
        except AlreadyExists:
            return web.Response(status=412, text="the object exists already\n")
        except BodySizeMismatch as exc:
            return web.Response(status=400, text=exc.message + "\n")
        except InvalidArgument as exc:
            return web.Response(status=400, text=exc.message + "\n")
        return web.Response(status=200)

    async def upload_part(request: web.Request, key: str) -> web.Response:
        """One part; as S3's UploadPart, sending a part again replaces it. 404 once the
        upload is completed or aborted."""
        query = request.query
        upload_id, part = query.get("upload_id", ""), query.get("part", "")
        allowed = storage.links.verify_part(
            key,
            upload_id,
            part,
            query.get("expires", ""),
            query.get("size", ""),
            query.get("sig", ""),
        )
        if isinstance(allowed, str):
            return web.Response(status=403, text=allowed + "\n")
        if (refused := _length_problem(request, allowed)) is not None:
            return refused
        try:
            await storage.write_part(
                key, upload_id, int(part), request.content.iter_chunked(COPY_BUFFER), allowed
            )
        except ObjectNotFound:
            return web.Response(status=404, text="no such upload (completed or aborted?)\n")
        except InvalidArgument as exc:
            return web.Response(status=400, text=exc.message + "\n")
        return web.Response(status=200)

    return [web.put("/uploads/{key:.+}", upload)]


def _length_problem(request: web.Request, allowed: int) -> web.Response | None:
    """411/413/400 unless the request announces exactly `allowed` bytes."""
    length = request.content_length
    if length is None:
        return web.Response(status=411, text="Content-Length is required\n")
    if length > allowed:
        return web.Response(
            status=413, text=f"this link accepts exactly {allowed} bytes, not {length}\n"
        )
    if length != allowed:
        return web.Response(
            status=400, text=f"this link accepts exactly {allowed} bytes, not {length}\n"
        )
    return None
