"""A minimal RTSP camera on loopback: H.264 made with PyAV, sent as RTP interleaved in the RTSP
TCP connection (RFC 2326 §10.12, RFC 6184 single NAL units and FU-A fragments). It records the
requests it gets, so tests can see which URL and transport a client asked for."""

from __future__ import annotations

import base64
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

_MTU = 1400
_PAYLOAD_TYPE = 96


def encode_access_units(frames: int = 50, fps: int = 25) -> list[bytes]:
    """Annex-B H.264 access units, SPS/PPS in band before the first keyframe."""
    ctx = av.CodecContext.create("libx264", "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = 160, 96, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps)}
    units: list[bytes] = []
    for index in range(frames):
        picture = np.full((96, 160, 3), (index * 5) % 256, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        units += [bytes(p) for p in ctx.encode(frame)]
    units += [bytes(p) for p in ctx.encode(None)]
    return units


def nal_units(access_unit: bytes) -> list[bytes]:
    parts = access_unit.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")
    return [part for part in parts if part]


@dataclass
class RtspCamera:
    port: int = 0
    requests: list[str] = field(default_factory=list)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"rtsp://{host}:{self.port}/cam"


@contextlib.contextmanager
def rtsp_camera() -> Iterator[RtspCamera]:
    units = encode_access_units()
    nals = [nal for unit in units for nal in nal_units(unit)]
    sps = next(n for n in nals if n[0] & 0x1F == 7)
    pps = next(n for n in nals if n[0] & 0x1F == 8)
    sdp = (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nt=0 0\r\n"
        f"m=video 0 RTP/AVP {_PAYLOAD_TYPE}\r\n"
        f"a=rtpmap:{_PAYLOAD_TYPE} H264/90000\r\n"
        f"a=fmtp:{_PAYLOAD_TYPE} packetization-mode=1;sprop-parameter-sets="
        f"{base64.b64encode(sps).decode()},{base64.b64encode(pps).decode()}\r\n"
        "a=control:trackID=0\r\n"
    )
    camera = RtspCamera()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    camera.port = server.getsockname()[1]
    stop = threading.Event()

    def session(conn: socket.socket) -> None:
        buffer = b""
        while not stop.is_set():
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines = head.decode(errors="replace").split("\r\n")
            camera.requests.append(lines[0])
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)
            }
            method, cseq = lines[0].split(" ", 1)[0], headers.get("cseq", "0")
            reply = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n"
            body = ""
            if method == "OPTIONS":
                reply += "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
            elif method == "DESCRIBE":
                reply += f"Content-Base: {lines[0].split(' ')[1]}/\r\n"
                reply += "Content-Type: application/sdp\r\n"
                body = sdp
            elif method == "SETUP":
                transport = headers.get("transport", "")
                camera.requests.append(f"Transport: {transport}")
                if "TCP" not in transport:
                    conn.sendall(
                        f"RTSP/1.0 461 Unsupported Transport\r\nCSeq: {cseq}\r\n\r\n".encode()
                    )
                    continue
                reply += "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 1\r\n"
            elif method == "PLAY":
                reply += "Session: 1\r\n"
            reply += f"Content-Length: {len(body)}\r\n\r\n{body}"
            conn.sendall(reply.encode())
            if method == "PLAY":
                _stream(conn, units, stop)
                return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                session(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield camera
    finally:
        stop.set()
        thread.join()
        server.close()


def _stream(conn: socket.socket, units: list[bytes], stop: threading.Event) -> None:
    sequence = 0
    for index, unit in enumerate(units):
        if stop.is_set():
            return
        stamp = index * 3600  # 90 kHz at 25 fps
        nals = nal_units(unit)
        for position, nal in enumerate(nals):
            last = position == len(nals) - 1
            for payload, end in _packetise(nal):
                marker = 0x80 if last and end else 0
                header = struct.pack(
                    ">BBHII", 0x80, marker | _PAYLOAD_TYPE, sequence & 0xFFFF, stamp, 0x5EC0
                )
                packet = header + payload
                conn.sendall(b"$\x00" + struct.pack(">H", len(packet)) + packet)
                sequence += 1
        time.sleep(0.01)


def _packetise(nal: bytes) -> Iterator[tuple[bytes, bool]]:
    if len(nal) <= _MTU:
        yield nal, True
        return
    indicator = (nal[0] & 0xE0) | 28  # FU-A
    kind = nal[0] & 0x1F
    rest = nal[1:]
    chunks = [rest[i : i + _MTU] for i in range(0, len(rest), _MTU)]
    for index, chunk in enumerate(chunks):
        start = 0x80 if index == 0 else 0
        end = 0x40 if index == len(chunks) - 1 else 0
        yield bytes([indicator, start | end | kind]) + chunk, bool(end)
