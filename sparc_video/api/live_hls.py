"""Live view as (LL-)HLS on the HTTP port, for any HLS player and browsers with native HLS.

`GET /cameras/{camera}/live.m3u8?expires=..&sig=..` is the media playlist (the same signed link
query as the live page and its WebSocket, see live/links.py); the init segment, segments and
parts are under `/cameras/{camera}/hls/`, each named in the playlist with the link's query.
Every request is checked against the link; a link admitted while valid stays good past its
expiry as long as the player's requests go on (`LinkSessions`: at most 30 s apart), as a
WebSocket opened in time outlives its link; a player that stopped needs a new link.
Blocking playlist reloads (`_HLS_msn`, `_HLS_part`) and preload-hinted parts wait on
the hub until what they name exists, or answer 503 after three target durations.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from aiohttp import web

from sparc_video.api.cameras.live import LiveEndpoints
from sparc_video.api.live_http import signed_camera
from sparc_video.core.errors import SparcVideoError
from sparc_video.live.hls import BLOCK_TIMEOUT_S, HlsPackager, HlsRequestError, UriMaker
from sparc_video.live.hub import LiveHub, LiveHubs
from sparc_video.live.links import LinkSessions

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_NAME = re.compile(r"(?:init-(?P<epoch>\d+)\.mp4|(?P<msn>\d+)(?:\.(?P<part>\d+))?\.m4s)")
# Any origin's player may read what a signed link names: the link is the credential, and a page
# holding it could hand it to a player of its own origin anyway (hls.js on a dashboard).
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Access-Control-Allow-Origin": "*",
}


class HlsStreams:
    """One packager per camera hub of this process, made at the first HLS request and
    replaced with the hub (a camera taken over gets a new hub)."""

    def __init__(self, hubs: LiveHubs) -> None:
        self._hubs = hubs
        self._packagers: dict[str, HlsPackager] = {}

    def get(self, camera_id: str) -> HlsPackager:
        try:
            hub: LiveHub = self._hubs.get(camera_id)
        except SparcVideoError as exc:
            self._packagers.pop(camera_id, None)
            raise web.HTTPConflict(text=exc.message + "\n") from None
        packager = self._packagers.get(camera_id)
        if packager is None or packager.hub is not hub:
            packager = self._packagers[camera_id] = HlsPackager(hub)
        return packager


def hls_routes(live: LiveEndpoints) -> list[web.RouteDef]:
    streams, sessions = HlsStreams(live.hubs), LinkSessions()

    def check(request: web.Request) -> tuple[str, str]:
        """The camera and the link's query to repeat in the playlist's URIs."""
        camera_id = signed_camera(live, request, sessions)
        query = {key: request.query[key] for key in ("expires", "sig")}
        return camera_id, urlencode(query)

    async def playlist(request: web.Request) -> web.Response:
        camera_id, query = check(request)
        packager = streams.get(camera_id)
        msn, part = _number(request, "_HLS_msn"), _number(request, "_HLS_part")
        if part is not None and msn is None:
            raise web.HTTPBadRequest(text="_HLS_part needs _HLS_msn\n")
        try:
            if msn is not None:
                ready = await packager.wait_for(msn, part, BLOCK_TIMEOUT_S)
            else:
                ready = await packager.wait_until(lambda: packager.ready, BLOCK_TIMEOUT_S)
        except HlsRequestError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        if not ready:
            raise web.HTTPServiceUnavailable(text="the live stream has nothing newer yet\n")
        return web.Response(
            text=packager.playlist(UriMaker(query)), content_type=PLAYLIST_TYPE, headers=_HEADERS
        )

    async def media(request: web.Request) -> web.Response:
        camera_id, _ = check(request)
        packager = streams.get(camera_id)
        name = _NAME.fullmatch(request.match_info["name"])
        if name is None:
            raise web.HTTPNotFound(text="no such HLS resource\n")
        if name["epoch"] is not None:
            packager.sync()
            init = packager.hub.init
            if init is None or int(name["epoch"]) != packager.epoch:
                raise web.HTTPNotFound(text="that run of the camera's stream is over\n")
            return _mp4(init.data)
        msn = int(name["msn"])
        part = int(name["part"]) if name["part"] is not None else None
        try:  # a preload-hinted part, or a segment still being filled: wait for it
            await packager.wait_for(msn, part, BLOCK_TIMEOUT_S)
        except HlsRequestError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        data = _data(packager, msn, part)
        if data is None:
            raise web.HTTPNotFound(text="that part of the live stream is gone or never came\n")
        return _mp4(data)

    return [
        web.get("/cameras/{camera}/live.m3u8", playlist),
        web.get("/cameras/{camera}/hls/{name}", media),
    ]


def _data(packager: HlsPackager, msn: int, part: int | None) -> bytes | None:
    segment = packager.segment(msn)
    if segment is None:
        return None
    if part is None:
        return packager.data(segment.first, segment.last) if segment.complete else None
    if part >= len(segment.parts):
        return None
    return packager.data(segment.parts[part].first, segment.parts[part].last)


def _number(request: web.Request, key: str) -> int | None:
    value = request.query.get(key)
    if value is None:
        return None
    if not value.isdigit():
        raise web.HTTPBadRequest(text=f"{key} must be a non-negative integer\n")
    return int(value)


def _mp4(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="video/mp4", headers=_HEADERS)
