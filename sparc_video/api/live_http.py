"""Live view on the HTTP port, for browsers: the player page and its WebSocket.

Both take the signed link GetCameraLiveStream hands out (a browser has no gRPC credentials):
`GET /cameras/{camera}/live?expires=..&sig=..` is the page, and the page opens the WebSocket at
the same path plus `/ws` with the same query. The WebSocket sends, as go2rtc's MSE mode does, a
text message naming the codecs, then the init segment and one binary message per frame; again
a text message and an init whenever the camera's stream restarts. A link is checked when the
page or socket opens; a socket opened in time goes on after the link expires.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import aclosing

from aiohttp import web

from sparc_video.api.cameras.live import LiveEndpoints
from sparc_video.api.live_page import render_page
from sparc_video.core.errors import SparcVideoError
from sparc_video.live.fragments import InitSegment
from sparc_video.live.hub import LiveHub
from sparc_video.live.links import LinkSessions

log = logging.getLogger(__name__)


def signed_camera(
    live: LiveEndpoints, request: web.Request, sessions: LinkSessions | None = None
) -> str:
    """The camera a live request names, once its signed link checks out (page, WebSocket and
    HLS alike); 403 when the link is missing, expired or not signed with this key. With
    `sessions` (HLS), a link in use stays good past its expiry while its requests go on."""
    camera_id = request.match_info["camera"]
    expires, sig = request.query.get("expires", ""), request.query.get("sig", "")
    if sessions is not None:
        problem = sessions.admit(live.signer, camera_id, expires, sig)
    else:
        problem = live.signer.problem(camera_id, expires, sig)
    if problem is not None:
        raise web.HTTPForbidden(text=problem + "\n")
    return camera_id


def live_routes(live: LiveEndpoints) -> list[web.RouteDef]:
    async def page(request: web.Request) -> web.Response:
        camera_id = signed_camera(live, request)
        return web.Response(
            text=render_page(camera_id),
            content_type="text/html",
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    async def socket(request: web.Request) -> web.WebSocketResponse:
        camera_id = signed_camera(live, request)
        try:
            hub = await live.hubs.attach(camera_id)
        except SparcVideoError as exc:
            raise web.HTTPConflict(text=exc.message + "\n") from None
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        sending = asyncio.create_task(send(ws, hub))
        try:
            # Read what the browser sends (nothing but its close): the socket notices a browser
            # that closes it only while reading, and a viewer who left must not keep counting
            # (a camera opened on demand is let go LIVE_LINGER after its last viewer).
            async for _ in ws:
                pass
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            await ws.close()
        return ws

    async def send(ws: web.WebSocketResponse, hub: LiveHub) -> None:
        try:
            async with aclosing(hub.watch()) as items:
                async for item in items:
                    if ws.closed:
                        break
                    if isinstance(item, InitSegment):
                        await ws.send_str(json.dumps({"type": "init", "codecs": item.codecs}))
                        await ws.send_bytes(item.data)
                    else:
                        await ws.send_bytes(item.fragment.data)
        except SparcVideoError as exc:  # the recording stopped: say so, then close
            await ws.send_str(json.dumps({"type": "end", "message": exc.message}))
        except ConnectionError:
            pass  # the browser left
        finally:
            await ws.close()

    return [
        web.get("/cameras/{camera}/live", page),
        web.get("/cameras/{camera}/live/ws", socket),
    ]
