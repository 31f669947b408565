"""Small aiohttp servers the tests stand up (fake S3 endpoints, collectors, pages)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def serving_app(app: web.Application, port: int = 0) -> AsyncIterator[str]:
    """`app` served on loopback at `port` (0: one the system picks) until the block ends; its
    base URL, `http://127.0.0.1:PORT`. No access log: a test server's requests are not the
    service's, and a camera's carry its secrets."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
