"""The local backend's signed links: downloads (`GET /files/KEY`) and uploads (`PUT /uploads/KEY`,
with `upload_id` and `part` in the query for one part of a multipart upload).

A link carries its expiry and an HMAC-SHA256 over the key, the expiry and (downloads) the file
name or (uploads) the exact size, with the backend's signing key; upload links and part links
use keys derived from it, so no kind can pass for another. Refusals say why: a malformed query (most
often a link copied out of JSON), an expired link, or one altered after signing.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

from sparc_video.storage.base import UploadTarget


class LinkSigner:
    """Makes and checks the links of one local storage root, served at `base_url`."""

    def __init__(self, signing_key: bytes, base_url: str) -> None:
        self._signing_key = signing_key
        self._upload_key = hmac.new(signing_key, b"upload-links", hashlib.sha256).digest()
        self._part_key = hmac.new(signing_key, b"upload-part-links", hashlib.sha256).digest()
        self.base_url = base_url.rstrip("/")

    def download_url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        expires = int(time.time()) + ttl_s
        query = {"expires": str(expires), "sig": self._sign(key, expires, filename)}
        if filename is not None:
            query["filename"] = filename
        return f"{self.base_url}/files/{quote(key, safe='/')}?{urlencode(query)}"

    def verify_link(
        self, key: str, expires: int | str, sig: str, filename: str | None = None
    ) -> bool:
        """True when `sig` was made by download_url for these values and has not expired."""
        return self.link_problem(key, expires, sig, filename) is None

    def link_problem(
        self, key: str, expires: int | str, sig: str, filename: str | None = None
    ) -> str | None:
        """Why a download link is refused (malformed, expired, or not signed by this service),
        or None when it is good."""
        if (problem := _malformed(expires=expires, sig=sig)) is not None:
            return problem
        if int(expires) < time.time():
            return "the download link has expired: ask for a new one"
        expected = self._sign(key, int(expires), filename)
        if not hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8", "replace")):
            return "the download link's signature does not match it: the link was altered"
        return None

    def upload_url(self, key: str, ttl_s: int, size_bytes: int, content_type: str) -> UploadTarget:
        expires = int(time.time()) + ttl_s
        query = {
            "expires": str(expires),
            "size": str(size_bytes),
            "sig": self._sign_upload(key, expires, size_bytes),
        }
        url = f"{self.base_url}/uploads/{quote(key, safe='/')}?{urlencode(query)}"
        return UploadTarget(url, {"Content-Type": content_type}, float(expires))

    def verify_upload(self, key: str, expires: str, size: str, sig: str) -> int | str:
        """The size an upload link allows, or why it is refused (malformed, expired, forged)."""
        if (problem := _malformed(expires=expires, size=size, sig=sig)) is not None:
            return problem
        if int(expires) < time.time():
            return "the upload link has expired: ask for a new one"
        expected = self._sign_upload(key, int(expires), int(size))
        if not hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8", "replace")):
            return "the upload link's signature does not match it: the link was altered"
        return int(size)

    def part_upload_url(
        self, key: str, upload_id: str, part_number: int, ttl_s: int, size_bytes: int
    ) -> UploadTarget:
        """A link accepting one PUT of exactly `size_bytes` bytes as part `part_number` of
        the multipart upload `upload_id` of `key`."""
        expires = int(time.time()) + ttl_s
        query = {
            "upload_id": upload_id,
            "part": str(part_number),
            "expires": str(expires),
            "size": str(size_bytes),
            "sig": self._sign_part(key, upload_id, part_number, expires, size_bytes),
        }
        url = f"{self.base_url}/uploads/{quote(key, safe='/')}?{urlencode(query)}"
        return UploadTarget(url, {}, float(expires))

    def verify_part(
        self, key: str, upload_id: str, part: str, expires: str, size: str, sig: str
    ) -> int | str:
        """The size a part link allows, or why it is refused (malformed, expired, forged)."""
        problem = _malformed(upload_id=upload_id, part=part, expires=expires, size=size, sig=sig)
        if problem is not None:
            return problem
        if int(expires) < time.time():
            return "the upload link has expired: ask for a new one (GetUpload)"
        expected = self._sign_part(key, upload_id, int(part), int(expires), int(size))
        if not hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8", "replace")):
            return "the upload link's signature does not match it: the link was altered"
        return int(size)

    def _sign(self, key: str, expires: int, filename: str | None) -> str:
        # Keys hold no control characters, so "\n" separates the fields unambiguously;
        # the filename, which may hold anything, comes last.
        message = f"{key}\n{expires}"
        if filename is not None:
            message += f"\n{filename}"
        return hmac.new(self._signing_key, message.encode("utf-8"), hashlib.sha256).hexdigest()

    def _sign_upload(self, key: str, expires: int, size_bytes: int) -> str:
        message = f"PUT\n{key}\n{expires}\n{size_bytes}"
        return hmac.new(self._upload_key, message.encode("utf-8"), hashlib.sha256).hexdigest()

    def _sign_part(
        self, key: str, upload_id: str, part_number: int, expires: int, size_bytes: int
    ) -> str:
        message = f"PART\n{key}\n{upload_id}\n{part_number}\n{expires}\n{size_bytes}"
        return hmac.new(self._part_key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def _malformed(**params: int | str) -> str | None:
    """What is wrong with a signed link's query, if a parameter is missing or not a number.

    Said plainly because the usual cause is a link copied out of JSON, where `&` is written
    `\\u0026`: the query then holds one parameter, and no later one."""
    hint = "(a link copied from JSON may hold \\u0026 where & belongs)"
    for name, value in params.items():
        if value == "":
            return f"the link is malformed: its `{name}` parameter is missing {hint}"
        if name not in {"sig", "upload_id"} and not str(value).isdigit():
            return f"the link is malformed: its `{name}` parameter is not a number {hint}"
    return None
