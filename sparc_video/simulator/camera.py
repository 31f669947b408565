"""The test camera: an RTSP server on a thread per connection, one source thread capturing and
encoding frames at the camera's pace and handing each to every playing connection's queue (a
viewer joining later gets the live stream from the next keyframe, never a restart), and the
fault controls tests call while it streams."""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import socket
import threading
import time
from types import TracebackType
from typing import Any

from sparc_video.simulator import rtp
from sparc_video.simulator.clock import US_PER_S, CameraClock
from sparc_video.simulator.connection import Connection, Reply, interleave
from sparc_video.simulator.rtsp import Auth, Reader, Request
from sparc_video.simulator.source import Burst, Source, StreamConfig

PACES = ("realtime", "fast")
_SR_INTERVAL_US = US_PER_S
# Realtime: ten seconds of frames may wait for a slow reader before it is dropped; fast: the
# source waits for the slowest reader (as fast as the socket takes).
_QUEUE_S, _FAST_QUEUE = 10, 8


class TestCamera:
    """An RTSP camera on `host:port` (127.0.0.1, a free port by default); a context manager,
    or `start()` / `stop()`. See the package docstring."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        *,
        fps: int = 25,
        size: tuple[int, int] = (320, 180),
        codec: str = "h264",
        audio: str | None = None,
        rtcp: bool = True,
        clock: CameraClock | None = None,
        pace: str = "realtime",
        auth: Auth | None = None,
        text: bool = True,
        gop_s: float = 1.0,
        threads: int = 1,
        rtp_offsets: tuple[int, int] | None = None,
        loop_s: float | None = None,
        bitrate: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/cam",
    ) -> None:
        if pace not in PACES:
            raise ValueError(f"pace {pace!r}: one of {', '.join(PACES)}")
        self.config = StreamConfig(
            fps, size, codec, audio, text, gop_s, threads, rtp_offsets, loop_s, bitrate
        )
        self.rtcp, self.pace, self.auth = rtcp, pace, auth
        self.clock = clock or CameraClock()
        self.host, self.port, self.path = host, port, path
        self.requests: list[str] = []
        self.total_connections = 0
        self.total_plays = 0
        self.frames_captured = 0
        self._refusal: int | None = None
        self._redirect: str | None = None
        self._withhold_keys = False
        self._stalled = False
        self._force_key = False
        self._lock = threading.Condition()
        self._connections: set[Connection] = set()
        self._stop = threading.Event()
        self._source_stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: set[threading.Thread] = set()
        self._source_thread: threading.Thread | None = None
        self._source: Source | None = None

    # -- life --------------------------------------------------------------------------------

    def __enter__(self) -> TestCamera:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        listener = socket.create_server((self.host, self.port))
        listener.settimeout(0.1)
        self._listener, self.port = listener, listener.getsockname()[1]
        self._start_source()
        self._spawn(self._accept, "accept")

    def stop(self) -> None:
        """Close every connection and end every thread; the port is free afterwards."""
        self._stop.set()
        self._stop_source()
        while True:  # a connection accepted meanwhile is dropped on the next round
            self.drop()
            with self._lock:
                threads = list(self._threads)
            if not threads:
                break
            for thread in threads:
                thread.join()
        if self._listener is not None:
            self._listener.close()

    @property
    def url(self) -> str:
        return self.url_at(self.host)

    def url_at(self, host: str) -> str:
        return f"rtsp://{host}:{self.port}{self.path}"

    # -- what tests look at ------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """TCP connections open now."""
        with self._lock:
            return len(self._connections)

    @property
    def playing(self) -> int:
        """Connections receiving the stream now (after PLAY)."""
        with self._lock:
            return sum(1 for c in self._connections if c.playing)

    @property
    def size(self) -> tuple[int, int]:
        return self._source.size if self._source is not None else self.config.size

    # -- faults ------------------------------------------------------------------------------

    def drop(self) -> None:
        """Close every connection (the camera's TCP resets); new ones are accepted."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()

    def stall(self) -> None:
        """Stop sending, connections left open; the camera keeps capturing (frames are lost)."""
        self._stalled = True

    def resume(self) -> None:
        """Send again, from a keyframe."""
        with self._lock:
            self._force_key, self._stalled = True, False
            self._lock.notify_all()

    def set_size(self, width: int, height: int) -> None:
        """Change resolution mid-stream: the next frame is a keyframe with new SPS/PPS in band;
        connections opened later get the new SDP."""
        if self._source is not None:
            self._source.resize((width, height))
        self.config = dataclasses.replace(self.config, size=(width, height))

    def restart(self, **changes: Any) -> None:
        """Reboot with new parameters (any of the constructor's but host/port/path): every
        connection is closed, frame indices start again at 0, the clock keeps running."""
        self._stop_source()
        self.drop()
        for name in ("rtcp", "pace", "auth", "clock"):
            if name in changes:
                setattr(self, name, changes.pop(name))
        self.config = dataclasses.replace(self.config, **changes)
        self._stalled = False
        self._start_source()

    def set_auth(self, auth: Auth | None) -> None:
        """Require credentials from the next request on (None: none)."""
        self.auth = auth

    def refuse(self, status: int | None = 401) -> None:
        """Answer every request with `status` (None: serve again)."""
        self._refusal = status

    def redirect(self, url: str | None) -> None:
        """Answer DESCRIBE with "302 Moved Temporarily" to `url` (None: serve again)."""
        self._redirect = url

    def withhold_keyframes(self, withhold: bool = True) -> None:
        """Send only the frames between keyframes, as a camera whose encoder lost its GOP
        does: a viewer gets packets but never a picture it can start from."""
        self._withhold_keys = withhold

    # -- the source --------------------------------------------------------------------------

    def _start_source(self) -> None:
        self._source_stop = threading.Event()
        self._source = Source(self.config, self.clock.camera_us(), self.clock.rtp_ppm)
        self._source_thread = self._spawn(self._capture, "source")

    def _stop_source(self) -> None:
        self._source_stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._source_thread is not None:
            self._source_thread.join()

    def _capture(self) -> None:
        source, stop = self._source, self._source_stop
        assert source is not None
        index = 0
        while not stop.is_set():
            capture_us = source.capture_us(index)
            with self._lock:
                watchers = [c for c in self._connections if c.playing and not c.closed]
                # Fast pace runs on simulated time: with nobody to send to, it stands still.
                if self.pace == "fast" and (self._stalled or not watchers):
                    self._lock.wait(0.1)
                    continue
            due_s = self.clock.real_us(capture_us) / 1e6 - time.time()
            if self.pace == "realtime" and stop.wait(max(0.0, due_s)):
                return
            live = bool(watchers) and not self._stalled
            with self._lock:
                keyframe, self._force_key = self._force_key and live, self._force_key and not live
            burst = source.burst(index, keyframe=keyframe, encode=live)
            self.frames_captured = index + 1
            index += 1
            if live:
                for connection in watchers:
                    self._offer(connection, burst, stop)

    def _offer(self, connection: Connection, burst: Burst, stop: threading.Event) -> None:
        if self.pace == "realtime":
            if connection.queue.qsize() > _QUEUE_S * self.config.fps:
                connection.close()  # too slow a reader: as a camera's send buffer overflows
            else:
                connection.queue.put(burst)
            return
        while not (stop.is_set() or connection.closed):
            with contextlib.suppress(queue.Full):
                return connection.queue.put(burst, timeout=0.1)

    # -- connections -------------------------------------------------------------------------

    def _spawn(self, target: Any, name: str, *args: Any) -> threading.Thread:
        """A thread `stop()` waits for; it forgets itself when it ends."""

        def run() -> None:
            try:
                target(*args)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=f"test-camera-{self.port}-{name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return thread

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            connection = Connection(conn, _FAST_QUEUE if self.pace == "fast" else 0)
            with self._lock:
                self._connections.add(connection)
                self.total_connections += 1
            self._spawn(self._serve, "connection", connection)

    def _serve(self, connection: Connection) -> None:
        try:
            with contextlib.suppress(OSError):
                reader = Reader(connection.conn)
                while not connection.closed:
                    request = reader.next()
                    if request is None or not self._answer(connection, request):
                        break
        finally:
            connection.close()
            connection.conn.close()
            with self._lock:
                self._connections.discard(connection)

    def _answer(self, connection: Connection, request: Request) -> bool:
        """Reply to one request; False ends the connection."""
        self.requests.append(request.line)
        if request.method == "SETUP":
            self.requests.append(f"Transport: {request.headers.get('transport', '')}")
        reply = Reply(request.cseq)
        refusal, auth, nonce = self._refusal, self.auth, connection.nonce
        if refusal is not None:
            reply.status = refusal
        elif request.method == "DESCRIBE" and self._redirect is not None:
            reply.status = 302
            reply.headers.append(("Location", self._redirect))
        elif request.method != "OPTIONS" and not (auth is None or auth.accepts(request, nonce)):
            reply.status = 401
        if reply.status == 401 and auth is not None:
            reply.headers += [("WWW-Authenticate", c) for c in auth.challenges(connection.nonce)]
        if reply.status != 200:
            connection.send(reply.bytes())
            return True
        method = request.method
        source = self._source
        assert source is not None
        if method == "OPTIONS":
            public = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER"
            reply.headers.append(("Public", public))
        elif method == "DESCRIBE":
            reply.headers += [("Content-Base", request.url.rstrip("/") + "/")]
            reply.headers += [("Content-Type", "application/sdp")]
            reply.body = source.sdp()
        elif method == "SETUP":
            if not self._setup(connection, request, reply, len(source.tracks)):
                connection.send(reply.bytes())
                return True
        elif method in ("PLAY", "PAUSE", "GET_PARAMETER", "SET_PARAMETER", "TEARDOWN"):
            reply.headers.append(("Session", connection.session_id))
        else:
            reply.status = 405
        if method == "PLAY":
            reply.headers.append(("Range", "npt=now-"))
        connection.send(reply.bytes())
        if method == "PLAY" and not connection.playing:
            self._play(connection)
        elif method == "PAUSE":
            connection.playing = False
        return method != "TEARDOWN"

    def _setup(self, connection: Connection, request: Request, reply: Reply, tracks: int) -> bool:
        transport = request.headers.get("transport", "")
        track = request.url.rstrip("/").rpartition("trackID=")[2]
        if not track.isdigit() or int(track) >= tracks:
            reply.status = 404
            return False
        if "RTP/AVP/TCP" not in transport:
            reply.status = 461
            return False
        number = int(track)
        channel = 2 * number
        for part in transport.split(";"):
            if part.startswith("interleaved="):
                channel = int(part.split("=")[1].split("-")[0])
        connection.channels[number] = channel
        reply.headers.append(
            ("Transport", f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}")
        )
        reply.headers.append(("Session", f"{connection.session_id};timeout=60"))
        return True

    def _play(self, connection: Connection) -> None:
        with self._lock:
            connection.playing = True
            self.total_plays += 1
            self._force_key = True
            self._lock.notify_all()
        self._spawn(self._write, "writer", connection)

    def _write(self, connection: Connection) -> None:
        """Send each burst (from a keyframe on), preceded by sender reports when due."""
        source = self._source
        assert source is not None
        counts = {track: [0, 0] for track in connection.channels}
        last_report: int | None = None
        started = False
        with contextlib.suppress(OSError):
            while (burst := connection.queue.get()) is not None and not connection.closed:
                if burst.keyframe and self._withhold_keys:
                    continue
                started = started or burst.keyframe or self._withhold_keys
                if not started or not connection.playing:
                    continue
                out: list[bytes] = []
                capture_us = burst.stamp.capture_time_us
                due = last_report is None or capture_us - last_report >= _SR_INTERVAL_US
                if self.rtcp and due:
                    last_report = capture_us
                    for track, channel in connection.channels.items():
                        packets, octets = counts[track]
                        report = rtp.sender_report(
                            source.tracks[track],
                            capture_us,
                            burst.rtp_times[track],
                            packets,
                            octets,
                        )
                        out.append(interleave(channel + 1, report))
                for track, packet in burst.packets:
                    if track in connection.channels:
                        out.append(interleave(connection.channels[track], packet))
                        counts[track][0] += 1
                        counts[track][1] += len(packet) - 12
                connection.send(b"".join(out))
        connection.close()
