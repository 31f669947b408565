"""Entry point of the server's media child: `python -m sparc_video.media.child_main`, started
by the server as a fresh interpreter (`launcher.py`), never as a fork of itself. It speaks the
protocol of `child_protocol.py` and runs the handlers of `child.py`.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

from sparc_video.media.child_protocol import READY_LINE, encode_reply, write


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
