"""`sparc-video test-camera`: the RTSP test camera (sparc_video.simulator) as a command, so an
operator can check an install end to end (register it as a camera, record it, watch it live)
without a real camera on the network."""

from __future__ import annotations

import inspect
import signal
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from types import FrameType

import click

from sparc_video.cli.options import ExitCode, SparcCommand
from sparc_video.simulator import (
    AUDIO_CODECS,
    AUTH_SCHEMES,
    PACES,
    VIDEO_CODECS,
    Auth,
    CameraClock,
    TestCamera,
)

# RTSP's registered port is 554, which needs privileges; 8554 is the customary unprivileged one.
DEFAULT_PORT = 8554
TEST_CAMERA_EXITS: Mapping[ExitCode, str] = {
    ExitCode.OK: "stopped (Ctrl-C, SIGTERM or --duration-s)",
    ExitCode.FAILED: "the address could not be bound",
    ExitCode.USAGE: "bad options",
}
_DEFAULTS = {
    name: p.default for name, p in inspect.signature(TestCamera.__init__).parameters.items()
}


def _size(_: click.Context, __: click.Parameter, value: str) -> tuple[int, int]:
    width, sep, height = value.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise click.BadParameter("WIDTHxHEIGHT, e.g. 1920x1080")
    return int(width), int(height)


@click.command(
    "test-camera",
    cls=SparcCommand,
    exit_codes=TEST_CAMERA_EXITS,
    examples="sparc-video test-camera --port 8554 --size 1920x1080 --audio aac\n"
    "sparc-video test-camera --username admin --password secret --auth digest\n"
    "sparc-video test-camera --size 1920x1080 --bitrate 4000000 --loop-s 10",
)
@click.option("--host", default=_DEFAULTS["host"], show_default=True, help="address to listen on")
@click.option("--port", default=DEFAULT_PORT, show_default=True, help="RTSP port (0: any free)")
@click.option("--path", default=_DEFAULTS["path"], show_default=True, help="the stream's path")
@click.option("--fps", default=_DEFAULTS["fps"], show_default=True, help="frames per second")
@click.option(
    "--size",
    default="x".join(map(str, _DEFAULTS["size"])),
    show_default=True,
    callback=_size,
    help="picture size, WIDTHxHEIGHT",
)
@click.option(
    "--codec", type=click.Choice(VIDEO_CODECS), default=_DEFAULTS["codec"], help="video codec"
)
@click.option("--audio", type=click.Choice(AUDIO_CODECS), help="add a 440 Hz tone in this codec")
@click.option("--rtcp/--no-rtcp", default=_DEFAULTS["rtcp"], help="send RTCP sender reports")
@click.option(
    "--clock-start",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    help="the time the camera's clock shows at start (UTC unless an offset is given); "
    "default: the machine's",
)
@click.option("--ppm", default=0.0, help="the camera clock's rate error, parts per million")
@click.option(
    "--rtp-ppm",
    default=0.0,
    help="how much faster the RTP (media) clock runs than the camera's clock, parts per million",
)
@click.option(
    "--pace",
    type=click.Choice(PACES),
    default=_DEFAULTS["pace"],
    show_default=True,
    help="realtime, or fast: as fast as the slowest viewer reads (camera time runs ahead)",
)
@click.option("--username", help="require these credentials (with --password)")
@click.option("--password", help="the password --username must give")
@click.option(
    "--auth",
    "schemes",
    type=click.Choice(AUTH_SCHEMES),
    multiple=True,
    help="the schemes offered, in order (repeatable; default both, digest first)",
)
@click.option("--text/--no-text", default=_DEFAULTS["text"], help="also write the stamp as text")
@click.option(
    "--loop-s",
    type=float,
    help="encode this many seconds once and loop them (for sizes too slow to encode live; "
    "the pictures' stamps repeat each loop)",
)
@click.option(
    "--bitrate",
    type=int,
    help="bits per second the encoder aims at, e.g. 4000000 (noise in the picture to spend "
    "them on); default: what a still picture needs",
)
@click.option("--duration-s", type=float, help="stop after this many seconds")
def test_camera_command(
    host: str,
    port: int,
    path: str,
    fps: int,
    size: tuple[int, int],
    codec: str,
    audio: str | None,
    rtcp: bool,
    clock_start: datetime | None,
    ppm: float,
    rtp_ppm: float,
    pace: str,
    username: str | None,
    password: str | None,
    schemes: tuple[str, ...],
    text: bool,
    loop_s: float | None,
    bitrate: int | None,
    duration_s: float | None,
) -> int:
    """Serve a test camera over RTSP (RTP interleaved on TCP) until stopped.

    Every frame shows its index and the camera's capture time as black and white blocks (and
    text); RTCP sender reports carry the camera's clock (--clock-start, --ppm), RTP times its
    media clock (--rtp-ppm)."""
    if (username is None) != (password is None):
        raise click.UsageError("--username and --password go together")
    if clock_start is not None and clock_start.tzinfo is None:
        clock_start = clock_start.replace(tzinfo=UTC)
    clock = (
        CameraClock.at(clock_start, ppm, rtp_ppm)
        if clock_start
        else CameraClock(ppm=ppm, rtp_ppm=rtp_ppm)
    )
    auth = None
    if username is not None and password is not None:
        auth = Auth(username, password, schemes or AUTH_SCHEMES)
    try:
        camera = TestCamera(
            fps=fps, size=size, codec=codec, audio=audio, rtcp=rtcp, clock=clock, pace=pace,
            auth=auth, text=text, loop_s=loop_s, bitrate=bitrate, host=host, port=port, path=path,
        )  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    stop = threading.Event()

    def on_signal(_: int, __: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        camera.start()
    except OSError as exc:
        print(f"sparc-video test-camera: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    try:
        print(f"{camera.url} {size[0]}x{size[1]} {fps} fps {codec}", flush=True)
        stop.wait(duration_s)
    finally:
        camera.stop()
    return ExitCode.OK
