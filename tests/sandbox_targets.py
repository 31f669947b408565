"""Functions the sandbox tests run in a child process (importable by the forkserver)."""

from __future__ import annotations

import ctypes
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event


def segfault(send: Connection, cancel: Event) -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a crashing decoder would


def allocate(megabytes: int, send: Connection, cancel: Event) -> None:
    block = bytearray(megabytes * 1024 * 1024)
    send.send(("done", len(block)))


def sleep_forever(send: Connection, cancel: Event) -> None:
    while True:
        time.sleep(0.05)


def answer(value: int, send: Connection, cancel: Event) -> None:
    send.send(("done", value))
