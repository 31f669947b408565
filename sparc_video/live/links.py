"""Short-lived signed links to watch one camera: the browser page and its WebSocket, and the
HLS playlist with its segments.

A browser cannot send the gRPC credentials, so GetCameraLiveStream (which checks them) hands out
links carrying the camera, an expiry and an HMAC-SHA256 over both. The key is made per process
and never leaves it: a link is good only on the process that made it, which is the one holding
the camera's hub (the recorder and the API share a process, see docs/live.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

LINK_TTL_S = 300


@dataclass(frozen=True)
class LiveLinks:
    page_url: str
    websocket_url: str
    hls_url: str  # the (LL-)HLS media playlist, for HLS players (api/live_hls.py)
    expires: int  # seconds since the epoch


class LiveLinkSigner:
    def __init__(self, base_url: str, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)
        self.base_url = base_url.rstrip("/")

    def links(self, camera_id: str, ttl_s: int = LINK_TTL_S) -> LiveLinks:
        expires = int(time.time()) + ttl_s
        query = urlencode({"expires": str(expires), "sig": self._sign(camera_id, expires)})
        path = f"/cameras/{quote(camera_id, safe='')}/live"
        socket_base = "ws" + self.base_url.removeprefix("http")
        return LiveLinks(
            f"{self.base_url}{path}?{query}",
            f"{socket_base}{path}/ws?{query}",
            f"{self.base_url}{path}.m3u8?{query}",
            expires,
        )

    def problem(self, camera_id: str, expires: str, sig: str) -> str | None:
        """Why a link is refused (malformed, expired, not signed here), or None when good."""
        if not expires.isdigit() or not sig:
            return "the live link is malformed: ask GetCameraLiveStream for a new one"
        if int(expires) < time.time():
            return "the live link has expired: ask GetCameraLiveStream for a new one"
        expected = self._sign(camera_id, int(expires))
        if not hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8", "replace")):
            return "the live link's signature does not match it"
        return None

    def _sign(self, camera_id: str, expires: int) -> str:
        message = f"live\n{camera_id}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
