"""One RTSP connection to the test camera: its socket (RTSP replies and interleaved RTP share
it, so writes are serialised), the tracks it set up, and its queue of frames to send."""

from __future__ import annotations

import contextlib
import queue
import secrets
import socket
import threading

from sparc_video.simulator.rtsp import new_nonce, response
from sparc_video.simulator.source import Burst


class Connection:
    def __init__(self, conn: socket.socket, queue_size: int) -> None:
        self.conn = conn
        self.nonce = new_nonce()
        self.session_id = secrets.token_hex(8)
        self.channels: dict[int, int] = {}  # track → interleaved RTP channel
        self.queue: queue.Queue[Burst | None] = queue.Queue(queue_size)
        self.playing = False
        self.closed = False
        self.send_lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.send_lock:
            self.conn.sendall(data)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)


class Reply:
    def __init__(self, cseq: str) -> None:
        self.cseq, self.status, self.body = cseq, 200, ""
        self.headers: list[tuple[str, str]] = []

    def bytes(self) -> bytes:
        reasons = {
            200: "OK",
            302: "Moved Temporarily",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            405: "Method Not Allowed",
            461: "Unsupported Transport",
            503: "Service Unavailable",
        }
        reason = reasons.get(self.status, "Error")
        return response(self.status, reason, self.cseq, self.headers, self.body)


def interleave(channel: int, packet: bytes) -> bytes:
    return b"$" + bytes([channel]) + len(packet).to_bytes(2, "big") + packet
