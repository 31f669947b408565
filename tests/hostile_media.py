"""A corpus of hostile and broken media files, generated at test time (nothing checked in)."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sparc_video.media.synth import make_sample_clip


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    # Reasons a FAILED export may carry; SUCCEEDED is allowed only when `may_succeed`.
    reasons: frozenset[str]
    may_succeed: bool = False


class FifoWatch:
    """Notices any process opening a FIFO for reading: a writer opened without blocking
    succeeds only while a reader has it open (and frees a reader blocked in open)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.opened = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.002):
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: no reader
                continue
            self.opened = True

    def close(self) -> bool:
        self._stop.set()
        self._thread.join()
        return self.opened


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _clip(path: Path, *, faststart: bool = True, container: str = "mp4") -> Path:
    source = path.with_suffix(f".src.{container}")
    make_sample_clip(source, width=320, height=180, duration_s=2.0)
    if faststart or container != "mp4":
        return source
    # Rewrite without faststart so the index (moov) sits at the end of the file.
    with av.open(str(source)) as inp, av.open(str(path), "w", format="mp4") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return path


def zero_bytes(path: Path) -> Path:
    return _write(path, b"")


def random_bytes(path: Path) -> Path:
    return _write(path, os.urandom(200_000))


def text_file(path: Path) -> Path:
    return _write(path, b"This is not a video, just a note someone named .mp4\n" * 100)


def png_named_mp4(path: Path) -> Path:
    frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="rgb24")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = 64, 64, "rgb24"
    codec.time_base = Fraction(1, 25)
    return _write(path, b"".join(bytes(p) for p in codec.encode(frame)))


def moov_missing(path: Path) -> Path:
    data = _clip(path.with_name("moov-at-end.mp4"), faststart=False).read_bytes()
    return _write(path, data[: data.rfind(b"moov") - 4])


def mdat_cut(path: Path) -> Path:
    data = _clip(path.with_name("full.mp4")).read_bytes()
    return _write(path, data[: int(len(data) * 0.6)])


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "stereo"
        for i in range(50):
            chunk = av.AudioFrame.from_ndarray(
                np.zeros((2, 1024), np.float32), format="fltp", layout="stereo"
            )
            chunk.sample_rate, chunk.pts = 48000, i * 1024
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def no_streams(path: Path) -> Path:
    ftyp = struct.pack(">I4s4sI8s", 24, b"ftyp", b"isom", 0x200, b"isomiso2")
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd_body = (
        struct.pack(">IIIIIIH", 0, 0, 0, 1000, 0, 0x10000, 0x100)
        + bytes(10)
        + matrix
        + bytes(24)
        + struct.pack(">I", 1)
    )
    mvhd = struct.pack(">I4s", 8 + len(mvhd_body), b"mvhd") + mvhd_body
    moov = struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    return _write(path, ftyp + moov)


def huge_dimensions(path: Path) -> Path:
    """MJPEG in AVI whose frames declare 30000x30000 pixels."""
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuvj420p"
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((240, 320, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = bytearray(path.read_bytes())
    at = data.find(b"\xff\xc0")
    while at >= 0:  # every JPEG start-of-frame: height, width
        struct.pack_into(">HH", data, at + 5, 30000, 30000)
        at = data.find(b"\xff\xc0", at + 2)
    return _write(path, bytes(data))


def absurd_duration(path: Path) -> Path:
    data = bytearray(_clip(path.with_name("normal.mp4")).read_bytes())
    at = data.find(b"mvhd")
    # version 0 mvhd: flags(4) created(4) modified(4) timescale(4) duration(4)
    struct.pack_into(">I", data, at + 4 + 16, 0xFFFFFFF0)
    return _write(path, bytes(data))


def damaged_matroska(path: Path) -> Path:
    data = bytearray(_clip(path.with_name("clean.mkv"), container="mkv").read_bytes())
    cluster = data.find(b"\x1f\x43\xb6\x75")  # first Cluster element
    middle = cluster + (len(data) - cluster) // 2
    data[middle : middle + 4096] = os.urandom(4096)
    return _write(path, bytes(data))


def playlist_cases(canary_url: str, fifo: Path) -> list[Case]:
    """Playlists that would make FFmpeg read local files or open network connections."""

    def hls(path: Path) -> Path:
        body = (
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
            f"#EXTINF:10.0,\nfile:///etc/passwd\n#EXTINF:10.0,\nfile://{fifo}\n"
            f"#EXTINF:10.0,\n{canary_url}/segment.ts\n#EXT-X-ENDLIST\n"
        )
        return _write(path, body.encode())

    def ffconcat(path: Path) -> Path:
        body = (
            f"ffconcat version 1.0\nfile '/etc/passwd'\nfile '{fifo}'\nfile '{canary_url}/x.mp4'\n"
        )
        return _write(path, body.encode())

    def external_dref(path: Path) -> Path:
        return mp4_with_external_reference(path, fifo)

    refused = frozenset({"NOT_A_VIDEO"})
    return [
        Case("hls_playlist", hls, refused),
        Case("ffconcat", ffconcat, refused),
        # Its tracks' samples live "in" the FIFO; not opened, they are no usable video.
        Case("external_dref", external_dref, BROKEN),
    ]


_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"dinf"}


def mp4_with_external_reference(path: Path, target: Path) -> Path:
    """An MP4 whose tracks say their media is in another file, `target`: each track's data
    reference ('dref') becomes a Mac alias record ('alis') holding `target` as its absolute
    path, which FFmpeg's mov demuxer would open with enable_drefs."""
    clip = _clip(path.with_suffix(".plain.mp4"), faststart=False)  # moov last: no offsets move
    name = target.name.encode()[:63]
    record = str(target).encode()
    record += b"\0" * (len(record) % 2)
    body = (
        bytes(10) + b"\0" + bytes(27) + bytes(12)  # volume: none
        + bytes([len(name)]) + name.ljust(63, b"\0") + bytes(16)
        + struct.pack(">HH", 0xFFFF, 0xFFFF) + bytes(16)
        + struct.pack(">HH", 2, len(record)) + record  # type 2: the absolute path
        + struct.pack(">hH", -1, 0)
    )  # fmt: skip
    alias = struct.pack(">I4sI", 12 + len(body), b"alis", 0) + body
    dref = struct.pack(">II", 0, 1) + alias

    def rebuild(data: bytes) -> bytes:
        out = b""
        offset = 0
        while offset + 8 <= len(data):
            size, kind = struct.unpack(">I4s", data[offset : offset + 8])
            header = 8
            if size == 1:
                size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
                header = 16
            elif size == 0:
                size = len(data) - offset
            payload = data[offset + header : offset + size]
            if kind in _MP4_CONTAINERS:
                payload = rebuild(payload)
            elif kind == b"dref":
                payload = dref
            out += struct.pack(">I4s", 8 + len(payload), kind) + payload
            offset += size
        return out

    return _write(path, rebuild(clip.read_bytes()))


NOT_A_VIDEO = frozenset({"NOT_A_VIDEO"})
BROKEN = frozenset({"NOT_A_VIDEO", "UNDECODABLE", "NO_VIDEO_STREAM", "TIMESTAMP_OUT_OF_RANGE"})

FILE_CASES = [
    Case("zero_bytes", zero_bytes, NOT_A_VIDEO),
    Case("random_bytes", random_bytes, NOT_A_VIDEO),
    Case("text_file", text_file, NOT_A_VIDEO),
    Case("png_named_mp4", png_named_mp4, NOT_A_VIDEO),
    Case("moov_missing", moov_missing, BROKEN),
    Case("mdat_cut", mdat_cut, BROKEN, may_succeed=True),
    Case("audio_only", audio_only, frozenset({"NO_VIDEO_STREAM"})),
    Case("no_streams", no_streams, frozenset({"NO_VIDEO_STREAM", "NOT_A_VIDEO", "UNDECODABLE"})),
    Case("huge_dimensions", huge_dimensions, frozenset({"UNDECODABLE"})),
    Case("absurd_duration", absurd_duration, BROKEN, may_succeed=True),
    Case("damaged_matroska", damaged_matroska, BROKEN, may_succeed=True),
]


class ConnectionCanary:
    """A TCP listener on a loopback address that counts every connection attempt and every
    byte it is sent."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen()
        self.sock.settimeout(0.1)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.connections = 0
        self.bytes_received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            with contextlib.suppress(OSError):
                while chunk := conn.recv(65536):
                    self.bytes_received += len(chunk)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
