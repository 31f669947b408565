"""Short-lived signed links to watch one camera: the browser page and its WebSocket, and the
HLS playlist with its segments.

A browser cannot send the gRPC credentials, so GetCameraLiveStream (which checks them) hands out
links carrying the camera, an expiry and an HMAC-SHA256 over both. The API signs them and the
recorder holding the camera's hub checks them, often in another process (docs/live.md): both
read the key from LIVE_LINK_KEY, or (one machine, `dev`) from a key file they share.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from sparc_video.core import key_files
from sparc_video.core.settings import Settings, reveal

LINK_TTL_S = 300
KEY_FILE = ".live-link-key"
MIN_KEY_CHARS = 32


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

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str) -> LiveLinkSigner:
        """LIVE_LINK_KEY, else the key kept in LOCAL_STORAGE_DIR: an API and the recorders
        must agree on it, which a kept key only gives processes sharing that directory."""
        key = key_files.configured_or_kept(
            reveal(settings.live_link_key),
            settings.local_storage_dir / KEY_FILE,
            make=lambda: (secrets.token_hex(32) + "\n").encode("ascii"),
            parse=_key,
            variable="LIVE_LINK_KEY",
            what="live link",
            shared=bool(settings.s3_bucket),
        )
        return cls(base_url, key)

    def links(self, camera_id: str, ttl_s: int = LINK_TTL_S, base_url: str = "") -> LiveLinks:
        """Links on `base_url` (the recorder serving the camera), else on this signer's."""
        base = (base_url or self.base_url).rstrip("/")
        expires = int(time.time()) + ttl_s
        query = urlencode({"expires": str(expires), "sig": self._sign(camera_id, expires)})
        path = f"/cameras/{quote(camera_id, safe='')}/live"
        socket_base = "ws" + base.removeprefix("http")
        return LiveLinks(
            f"{base}{path}?{query}",
            f"{socket_base}{path}/ws?{query}",
            f"{base}{path}.m3u8?{query}",
            expires,
        )

    def problem(
        self, camera_id: str, expires: str, sig: str, now: float | None = None
    ) -> str | None:
        """Why a link is refused (malformed, expired, not signed here), or None when good.
        `now`: the time to judge its expiry at (seconds since the epoch; default: now)."""
        if not expires.isdigit() or not sig:
            return "the live link is malformed: ask GetCameraLiveStream for a new one"
        if int(expires) < (time.time() if now is None else now):
            return "the live link has expired: ask GetCameraLiveStream for a new one"
        expected = self._sign(camera_id, int(expires))
        if not hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8", "replace")):
            return "the live link's signature does not match it"
        return None

    def _sign(self, camera_id: str, expires: int) -> str:
        message = f"live\n{camera_id}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def _key(text: str) -> bytes:
    key = text.strip()
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"LIVE_LINK_KEY must be {MIN_KEY_CHARS} characters or more")
    return key.encode("utf-8")


class LinkSessions:
    """Links in use stay good past their expiry while they are used.

    An HLS player keeps requesting the playlist URL it was given, every part-duration, for as
    long as it plays: with a 300 s link it would stop after five minutes. A WebSocket opened in
    time goes on after its link expires; this gives HLS the same: a link admitted while valid
    remains admitted as long as its requests come at most `idle_s` apart. Kept in memory by the
    process serving the camera's hub (the only one its requests reach).
    """

    def __init__(self, idle_s: float = 30.0) -> None:
        self.idle_s = idle_s
        self._last_used: dict[tuple[str, str], float] = {}
        self._purged = 0.0

    def admit(
        self,
        signer: LiveLinkSigner,
        camera_id: str,
        expires: str,
        sig: str,
        now: float | None = None,
    ) -> str | None:
        """None when the link is good now, or was admitted and used within `idle_s`; else why
        it is refused."""
        at = time.time() if now is None else now
        problem = signer.problem(camera_id, expires, sig, at)
        session = (camera_id, sig)
        last = self._last_used.get(session)
        if problem is not None and last is not None and at - last <= self.idle_s:
            # Admitted before and in use since: only the signature is checked again.
            problem = signer.problem(camera_id, expires, sig, now=float(expires))
        if problem is None:
            self._last_used[session] = at
            self._purge(at)
        return problem

    def _purge(self, at: float) -> None:
        if at - self._purged < self.idle_s:
            return
        self._purged = at
        stale = [key for key, last in self._last_used.items() if at - last > self.idle_s]
        for key in stale:
            del self._last_used[key]
