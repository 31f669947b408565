"""Entry point of the server's media child: `python -m sparc_video.media.child_main`.

The server starts it as a fresh interpreter (`launcher.py`), never as a fork of itself. The
protocol, on the child's stdin and stdout:

1. The server writes one JSON request to stdin and closes it. A stream URL with its
   credentials travels here, never in the command line (which any local user can read in
   /proc).
2. The child imports PyAV and the handlers (`child.py`), applies its resource limits
   (`memory_limit`: RLIMIT_AS, set after the imports as before), and writes the line
   `READY_LINE`: from here on a death is a death while reading, not a failure to start.
3. The child writes one JSON reply on one line, ended by a newline, and exits. A reply without
   its newline was cut short.

This module imports only the standard library at the top, so the server can import the
protocol's constants without importing PyAV.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

# What the child writes once its limits are set and PyAV is imported.
READY_LINE = b"sparc-media-child ready 1\n"


def encode_reply(reply: dict[str, Any]) -> bytes:
    """One reply line; `json.dumps` escapes every newline inside strings."""
    return json.dumps(reply).encode("utf-8") + b"\n"


def write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def apply_limits(request: dict[str, Any]) -> None:
    memory_limit = int(request.get("memory_limit", 0))
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    from sparc_video.media import child

    apply_limits(request)
    write(READY_LINE)
    write(encode_reply(child.handle(request)))


if __name__ == "__main__":
    main()
