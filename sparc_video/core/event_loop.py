"""The event loop the long-running commands use.

The server's RPC throughput and the worker's pickup latency are bound by the speed of one event
loop (Redis round trips, gRPC callbacks); uvloop runs the same asyncio code with a cheaper loop.
Measured with `python -m benchmarks.control_plane` on 2 cores: GetExport went from about 1,100
to 1,600 calls/s. Without uvloop (a platform it does not support), asyncio's loop is used.
"""

from __future__ import annotations

import asyncio
import contextlib


def install_uvloop() -> bool:
    """Make asyncio.run() and new event loops use uvloop; False when it is not available."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return True
    return False
