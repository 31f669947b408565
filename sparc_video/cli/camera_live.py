"""`sparc-video camera live`: a camera's live view, saved to a playable fragmented MP4 for a
number of seconds, or (`--link`) the signed links to watch it in a browser."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sparc_video.cli.cameras import name_argument
from sparc_video.cli.options import ExitCode, SparcCommand, client_exits
from sparc_video.cli.progress import utc
from sparc_video.cli.runner import Session, UsageError, client_command
from sparc_video.client.cameras import AsyncCameraClient


@click.command("live", cls=SparcCommand, exit_codes=client_exits())
@name_argument
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="write the live video here (fragmented MP4, plays in any player)",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="how long to record into --output",
)
@click.option(
    "--link", is_flag=True, help="print the signed links to watch it in a browser or HLS player"
)
@client_command(AsyncCameraClient)
async def live(
    session: Session,
    client: AsyncCameraClient,
    name: str,
    output: Path | None,
    seconds: float,
    link: bool,
) -> int:
    """Watch camera NAME live: save --seconds of it to --output, or print --link."""
    if output is None and not link:
        raise UsageError("give --output FILE (and --seconds) or --link")
    if link:
        stream = await client.get_camera_live_stream(name)
        session.message(
            stream,
            f"page:      {stream.page_url}\nwebsocket: {stream.websocket_url}\n"
            f"hls:       {stream.hls_url}\n"
            f"gRPC:      {stream.grpc_target} (recorder {stream.recorder})\n"
            f"expires:   {utc(stream.expire_time)}",
        )
    if output is None:
        return ExitCode.OK
    frames, started, note = 0, 0.0, ""
    with output.open("wb") as out:
        async for message in client.stream_camera_live(name):
            if message.HasField("init_segment"):
                if frames:
                    # A new init (the camera's stream restarted) cannot follow in one file.
                    note = "the camera's stream restarted: stopped there"
                    break
                out.write(message.init_segment.data)
                continue
            if not frames:
                started = time.monotonic()
            out.write(message.fragment.data)
            frames += 1
            if time.monotonic() - started >= seconds:
                break
    text = f"wrote {frames} frames to {output}" + (f" ({note})" if note else "")
    session.data({"output": str(output), "frames": frames, "note": note}, text)
    return ExitCode.OK
