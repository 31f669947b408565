"""The server's media children (ProbeCamera, CaptureSnapshot, CreateRecording) start without
forking the gRPC server, and every way one can end answers a proper status, never UNKNOWN.

Forked from a process running the gRPC server (uvloop's subprocesses are forked by libuv,
which runs gRPC's atfork handlers), a child died at start with SIGSEGV or an abort inside
gRPC, and the RPC answered `UNKNOWN: RuntimeError: unable to perform operation on
<WriteUnixTransport closed=True>`, often on a fresh server's first call. The service tests
below run the server on uvloop, as `sparc-video serve` and `dev` do, and count forks.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest
import uvloop
from google.protobuf import duration_pb2, timestamp_pb2
from sparc.video.v1 import camera_pb2, camera_service_pb2_grpc
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.errors import MediaError, Unavailable
from sparc_video.core.settings import Settings
from sparc_video.media import launcher
from sparc_video.media.child_protocol import READY_LINE
from sparc_video.media.launcher import ChildFailure, ChildOutput, parse_output
from sparc_video.media.probe import MediaProber
from sparc_video.media.synth import make_sample_clip
from sparc_video.storage import open_storage
from tests.camera_helpers import (
    LOOPBACK_CAMERAS,
    camera_service,
    expect_error,
    reason_of,
    silent_server,
    status_of,
)
from tests.fixtures.redis import free_port
from tests.fixtures.service import settings_env
from tests.rtsp_server import rtsp_camera
from tests.test_camera_streams import children

T0 = 1_700_000_000
# Forks of this process, counted while `_counting` holds an entry. os.register_at_fork's
# `before` runs for os.fork() and for uvloop's subprocesses; posix_spawn runs no fork handler.
_forks: list[int] = []
_counting: list[bool] = []
os.register_at_fork(before=lambda: _forks.append(1) if _counting else None)


def media_children() -> set[int]:
    """This process's live media children (not, e.g., the health check's PyAV probe)."""
    found = set()
    for pid in children():
        try:
            if launcher.CHILD_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except FileNotFoundError:  # it ended meanwhile
            continue
    return found


def on_uvloop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop, the loop `sparc-video serve` and `dev` run the server on, and
    fail if this process forked meanwhile."""
    before = len(_forks)
    _counting.append(True)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    finally:
        _counting.pop()
    assert len(_forks) == before, "the server process forked"


def connected(pid: int) -> bool:
    """The child has a socket open: past its start, connecting to the camera."""
    try:
        return any(
            os.readlink(fd).startswith("socket:") for fd in Path(f"/proc/{pid}/fd").iterdir()
        )
    except FileNotFoundError:
        return False


async def many_calls(
    settings: Settings, tmp_path: Path, calls: int, at_once: int, camera_id: str = "cam"
) -> collections.Counter[str]:
    """`calls` ProbeCamera and CreateRecording calls, alternating, `at_once` at a time, on a
    fresh server with a real RTSP camera: how many answered each code."""
    clip = await asyncio.to_thread(
        make_sample_clip,
        tmp_path / "clip.mp4",
        width=160,
        height=96,
        duration_s=1.0,
        fps=10,
        audio=False,
    )
    codes: collections.Counter[str] = collections.Counter()
    details: dict[str, str] = {}
    with rtsp_camera() as camera:
        async with camera_service(settings) as cams:
            stub, storage = cams.stub, cams.service.app.storage
            created = await stub.CreateCamera(
                svc.CreateCameraRequest(
                    camera_id=camera_id, camera=camera_pb2.Camera(stream_url=camera.url())
                )
            )
            for index in range(calls // 2):
                await storage.upload_file(clip, f"nvr/{camera_id}/{index:04d}.mp4", "video/mp4")
            slots = asyncio.Semaphore(at_once)

            async def call(index: int) -> None:
                async with slots:
                    try:
                        if index % 2:
                            # The longest media timeout: a loaded machine is slow to start.
                            probed = await stub.ProbeCamera(
                                svc.ProbeCameraRequest(
                                    name=created.name, timeout=duration_pb2.Duration(seconds=60)
                                ),
                                timeout=300,
                            )
                            if not probed.reachable:
                                # Answered, with the reason in the camera's error.
                                codes[f"OK, unreachable: {reason_of(probed.error)}"] += 1
                                return
                        else:
                            await stub.CreateRecording(
                                svc.CreateRecordingRequest(
                                    parent=created.name,
                                    recording=camera_pb2.Recording(
                                        object_key=f"nvr/{camera_id}/{index // 2:04d}.mp4",
                                        start_time=timestamp_pb2.Timestamp(
                                            seconds=1_700_000_000 + index * 10
                                        ),
                                    ),
                                ),
                                timeout=300,
                            )
                        codes["OK"] += 1
                    except grpc.aio.AioRpcError as exc:
                        codes[exc.code().name] += 1
                        details[exc.code().name] = exc.details() or ""

            await asyncio.gather(*(call(index) for index in range(calls)))
    assert sum(codes.values()) == calls
    # A documented code may come from a loaded machine (UNAVAILABLE with a reason); UNKNOWN and
    # INTERNAL never.
    assert not {"UNKNOWN", "INTERNAL"} & set(codes), (codes, details)
    return codes


def test_fresh_servers_answer_their_first_media_calls(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The crash hit most often on a fresh server's first call: a few fresh servers, each
    with its first probe and registration at once."""
    for run in range(4):
        path = tmp_path / str(run)
        path.mkdir()
        on_uvloop(many_calls(service_settings(**LOOPBACK_CAMERAS), path, 2, 2, f"cam{run}"))


def test_200_probes_and_registrations_20_at_a_time(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """About 35 s on 2 cores."""
    codes: collections.Counter[str] = collections.Counter()

    async def main() -> None:
        codes.update(await many_calls(service_settings(**LOOPBACK_CAMERAS), tmp_path, 200, 20))

    on_uvloop(main())
    assert codes["OK"] >= 1, codes


async def test_a_child_killed_mid_probe_answers_unavailable_naming_the_signal(
    service_settings: Callable[..., Settings],
) -> None:
    async with camera_service(service_settings(**LOOPBACK_CAMERAS)) as cams:
        with silent_server() as port:
            camera = await cams.stub.CreateCamera(
                svc.CreateCameraRequest(
                    camera=camera_pb2.Camera(stream_url=f"rtsp://127.0.0.1:{port}/")
                )
            )
            for kill_with in (signal.SIGSEGV, signal.SIGKILL):
                before = media_children()
                call = asyncio.ensure_future(
                    expect_error(
                        cams.stub.ProbeCamera(
                            svc.ProbeCameraRequest(
                                name=camera.name, timeout=duration_pb2.Duration(seconds=60)
                            ),
                            timeout=120,
                        ),
                        grpc.StatusCode.UNAVAILABLE,
                    )
                )
                # Killed once it connects to the camera, i.e. mid-probe.
                while not (new := media_children() - before) or not all(map(connected, new)):
                    assert not call.done(), call.result()
                    await asyncio.sleep(0.02)
                for pid in new:
                    os.kill(pid, kill_with)
                error = await call
                assert reason_of(status_of(error)) == "MEDIA_PROCESS_FAILED"
                assert "while working" in error.details(), error.details()
                assert f"killed by {kill_with.name}" in error.details(), error.details()
                assert "retry" in error.details()
            # Nothing was learnt about the camera: its status is not changed.
            after = await cams.stub.GetCamera(svc.GetCameraRequest(name=camera.name))
            assert after.status == camera_pb2.Camera.STATUS_UNSPECIFIED


async def test_a_video_that_crashes_the_child_is_invalid_media_an_outside_kill_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if FFmpeg crashed on the file (SIGSEGV while reading), or the child was killed from
    outside (SIGKILL): a child module that kills itself after its ready line."""
    module = tmp_path / "suicidal_child.py"
    module.write_text(
        "import os, signal, sys\n"
        "sys.stdin.buffer.read()\n"
        f"sys.stdout.buffer.write({READY_LINE!r}); sys.stdout.flush()\n"
        "os.kill(os.getpid(), int(os.environ['KILL_WITH']))\n"
    )
    monkeypatch.setattr(launcher, "CHILD_MODULE", "suicidal_child")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    prober = MediaProber()
    monkeypatch.setenv("KILL_WITH", str(int(signal.SIGSEGV)))
    with pytest.raises(MediaError) as crashed:
        await prober.read_file(tmp_path / "any.mp4", 30)
    assert crashed.value.reason == "UNDECODABLE"
    assert "killed by SIGSEGV" in crashed.value.message
    monkeypatch.setenv("KILL_WITH", str(int(signal.SIGKILL)))
    with pytest.raises(Unavailable) as killed:
        await prober.read_file(tmp_path / "any.mp4", 30)
    assert killed.value.reason == "MEDIA_PROCESS_FAILED"
    assert "killed by SIGKILL" in killed.value.message
    with pytest.raises(Unavailable, match="killed by SIGKILL"):
        await prober.read_stream("rtsp://127.0.0.1:9/", 5)


def output(stdout: bytes, returncode: int = 0, **more: Any) -> ChildOutput:
    return ChildOutput(stdout, returncode, **more)


def failure(result: ChildOutput) -> ChildFailure:
    with pytest.raises(ChildFailure) as caught:
        parse_output(result)
    return caught.value


def test_every_way_a_child_ends_is_told_apart() -> None:
    assert parse_output(output(READY_LINE + b'{"ok": true}\n')) == {"ok": True}
    # A whole reply counts even if the child died right after it.
    assert parse_output(output(READY_LINE + b'{"ok": true}\n', -9)) == {"ok": True}

    early = failure(output(b"", -11, stdin_error="Broken pipe"))
    assert not early.started and not early.crashed
    assert "before it was ready" in early.message and "killed by SIGSEGV" in early.message
    assert "Broken pipe" in early.message
    assert "exit status 1" in failure(output(READY_LINE[:5], 1)).message
    assert "other than its ready line" in failure(output(b"Traceback...", 1)).message

    working = failure(output(READY_LINE, -6))
    assert working.started and working.crashed
    assert "while working" in working.message and "killed by SIGABRT" in working.message
    assert not failure(output(READY_LINE, -9)).crashed
    assert "exit status 0" in failure(output(READY_LINE, 0)).message

    assert "cut short after 9 bytes" in failure(output(READY_LINE + b'{"ok": tr', 0)).message
    assert "garbled" in failure(output(READY_LINE + b"[1, 2]\n", 0)).message
    assert "garbled" in failure(output(READY_LINE + b"\xff{\n", 0)).message
    assert "more than" in failure(output(READY_LINE + b"{}\n", -9, overflowed=True)).message
    assert "signal 77" in failure(output(b"", -77)).message


async def test_run_child_kills_and_reaps_at_the_deadline_and_on_cancel() -> None:
    before = children()
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await launcher.run_child(hang, b"", 0.5)
    assert time.monotonic() - started < 30
    assert children() == before

    task = asyncio.ensure_future(launcher.run_child(hang, b"", 60))
    while not children() - before:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert children() == before


async def test_run_child_survives_a_child_that_closes_its_input() -> None:
    """Writing a request larger than a pipe holds to a child that exits without reading it:
    a broken pipe, told in the result, not an exception."""
    done = await launcher.run_child(
        [sys.executable, "-c", "import sys; sys.stdout.write('bye')"], b"x" * 4_000_000, 60
    )
    assert (done.stdout, done.returncode) == (b"bye", 0)
    assert done.stdin_error
    done = await launcher.run_child(
        [sys.executable, "-c", "import sys; sys.stderr.write('why'); sys.exit(3)"],
        b"",
        60,
        capture_stderr=True,
    )
    assert (done.stdout, done.stderr, done.returncode) == (b"", b"why", 3)


async def test_run_child_stops_a_child_that_writes_without_end() -> None:
    flood = [sys.executable, "-c", "import sys\nwhile True: sys.stdout.write('x' * 65536)"]
    done = await launcher.run_child(flood, b"", 120, max_output=1_000_000)
    assert done.overflowed and done.returncode == -signal.SIGKILL
    assert "more than" in failure(done).message


async def test_a_child_that_cannot_be_started_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    with pytest.raises(Unavailable, match="could not be started") as caught:
        await MediaProber().read_stream("rtsp://127.0.0.1:9/", 5)
    assert caught.value.reason == "MEDIA_PROCESS_FAILED"


async def test_a_fresh_serve_process_answers_its_first_media_calls(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """`sparc-video serve` itself (uvloop, gRPC, a fresh process): its first probe and
    registration, several at once, all answered."""
    settings = service_settings(**LOOPBACK_CAMERAS, grpc_port=free_port())
    clip = await asyncio.to_thread(
        make_sample_clip, tmp_path / "c.mp4", width=160, height=96, duration_s=1.0, fps=10
    )
    async with open_storage(settings) as storage:
        for index in range(4):
            await storage.upload_file(clip, f"nvr/first/{index}.mp4", "video/mp4")
    log_path = tmp_path / "serve.log"
    env = {**os.environ, **settings_env(settings)}
    with log_path.open("ab") as log_file, rtsp_camera() as camera:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sparc_video.cli.main", "serve",
            env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
                await asyncio.wait_for(channel.channel_ready(), 120)
                stub = camera_service_pb2_grpc.CameraServiceStub(channel)
                created = await stub.CreateCamera(
                    svc.CreateCameraRequest(
                        camera_id="first", camera=camera_pb2.Camera(stream_url=camera.url())
                    )
                )
                one_minute = duration_pb2.Duration(seconds=60)
                calls = [
                    stub.ProbeCamera(
                        svc.ProbeCameraRequest(name=created.name, timeout=one_minute),
                        timeout=300,
                    )
                    for _ in range(4)
                ] + [
                    stub.CreateRecording(
                        svc.CreateRecordingRequest(
                            parent=created.name,
                            recording=camera_pb2.Recording(
                                object_key=f"nvr/first/{index}.mp4",
                                start_time=timestamp_pb2.Timestamp(seconds=T0 + index * 10),
                            ),
                        ),
                        timeout=300,
                    )
                    for index in range(4)
                ]
                answers = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            server.kill()
            await server.wait()
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert not failures, (failures, log_path.read_text()[-3000:])
