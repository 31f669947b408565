"""The media child's protocol on its stdin and stdout, shared by the child (`child_main.py`,
`child.py`) and the server (`launcher.py`); standard library only, so the server imports it
without PyAV.

1. The server writes one JSON request to stdin and closes it. A stream URL with its
   credentials travels here, never in the command line (which any local user can read in
   /proc).
2. The child imports PyAV and the handlers (`child.py`), applies its resource limits
   (`memory_limit`: RLIMIT_AS, set after the imports as before), and writes the line
   `READY_LINE`: from here on a death is a death while reading, not a failure to start.
3. The child writes one JSON reply on one line, ended by a newline, and exits. A reply without
   its newline was cut short.
"""

from __future__ import annotations

import json
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
