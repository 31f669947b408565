"""`sparc-video recording create|get|list|delete|upload-url`: recordings of cameras."""

from __future__ import annotations

import datetime
from typing import Any

import click
from sparc.video.v1 import camera_service_pb2

from sparc_video.cli.cameras import deleted, page_options
from sparc_video.cli.operations import timestamp_option
from sparc_video.cli.options import ExitCode, SparcGroup, client_exits, connection_options
from sparc_video.cli.output import more, notice, print_json, print_table
from sparc_video.cli.progress import seconds, size, utc
from sparc_video.cli.runner import Session, client_command
from sparc_video.client.cameras import AsyncCameraClient, Recording


@click.group("recording", cls=SparcGroup)
@connection_options
def recording(**_: Any) -> None:
    """Register, list and delete recordings of cameras on a server (at --target)."""


@recording.command("create", exit_codes=client_exits())
@click.argument("camera")
@click.argument("object_key")
@click.option(
    "--start-time",
    callback=timestamp_option,
    metavar="TIME",
    required=True,
    help="capture time of the first frame, ISO 8601 with a timezone",
)
@client_command(AsyncCameraClient)
async def create(
    session: Session,
    client: AsyncCameraClient,
    camera: str,
    object_key: str,
    start_time: datetime.datetime,
) -> int:
    """Register a stored video as a recording of a camera; print its name.

    CAMERA is cameras/ID or ID; OBJECT_KEY the storage key of the video (nvr/gate/0001.mp4)."""
    created = await client.create_recording(camera, object_key, start_time)
    session.message(created, created.name)
    return ExitCode.OK


@recording.command("get", exit_codes=client_exits())
@click.argument("name")
@client_command(AsyncCameraClient)
async def get(session: Session, client: AsyncCameraClient, name: str) -> int:
    """Show one recording (NAME: cameras/ID/recordings/ID)."""
    found = await client.get_recording(name)
    session.message(found, describe_recording(found))
    return ExitCode.OK


@recording.command("list", exit_codes=client_exits())
@click.argument("camera")
@click.option(
    "--start-time", callback=timestamp_option, metavar="TIME", help="only recordings from this time"
)
@click.option(
    "--end-time", callback=timestamp_option, metavar="TIME", help="only recordings before this time"
)
@page_options
@client_command(AsyncCameraClient)
async def list_(
    session: Session,
    client: AsyncCameraClient,
    camera: str,
    start_time: datetime.datetime | None,
    end_time: datetime.datetime | None,
    page_size: int,
    page_token: str,
    all_pages: bool,
) -> int:
    """List a camera's recordings by start time (CAMERA: cameras/ID or ID)."""
    if all_pages:
        found = [
            r
            async for r in client.iter_recordings(
                camera, page_size=page_size, start_time=start_time, end_time=end_time
            )
        ]
        page = camera_service_pb2.ListRecordingsResponse(recordings=found)
    else:
        page = await client.list_recordings(
            camera,
            page_size=page_size,
            page_token=page_token,
            start_time=start_time,
            end_time=end_time,
        )
    if session.json:
        print_json(page)
        return ExitCode.OK
    rows = [
        (
            item.name,
            utc(item.start_time),
            f"{seconds(item.duration):.2f} s",
            f"{item.video_codec} {item.width}x{item.height}",
            size(item.size_bytes),
            item.object_key,
        )
        for item in page.recordings
    ]
    print_table(rows, ("NAME", "START", "DURATION", "VIDEO", "SIZE", "OBJECT"))
    more(page.next_page_token)
    return ExitCode.OK


@recording.command("delete", exit_codes=client_exits())
@click.argument("name")
@client_command(AsyncCameraClient)
async def delete(session: Session, client: AsyncCameraClient, name: str) -> int:
    """Delete a recording and its stored video (NAME: cameras/ID/recordings/ID)."""
    await client.delete_recording(name)
    deleted(session, name)
    return ExitCode.OK


@recording.command("upload-url", exit_codes=client_exits())
@click.argument("camera")
@click.option("--size-bytes", type=int, required=True, help="exact size of the upload")
@click.option("--content-type", default="", help="e.g. video/mp4")
@click.option("--ttl", type=float, metavar="SECONDS", help="how long the URL works")
@client_command(AsyncCameraClient)
async def upload_url(
    session: Session,
    client: AsyncCameraClient,
    camera: str,
    size_bytes: int,
    content_type: str,
    ttl: float | None,
) -> int:
    """An expiring URL to PUT a recording of CAMERA to (then register it with `recording
    create`)."""
    link = await client.create_recording_upload_url(
        camera, size_bytes, content_type=content_type, ttl=ttl
    )
    if session.json:
        print_json(link)
    else:
        print(link.upload_url)
        notice(f"object key: {link.object_key}")
        for key, value in sorted(link.headers.items()):
            notice(f"header: {key}: {value}")
        notice(f"expires: {utc(link.expire_time)}")
    return ExitCode.OK


# ---------------------------------------------------------------------------------------------
# Text


def describe_recording(recording: Recording) -> str:
    lines = [recording.name]

    def field(label_text: str, value: str) -> None:
        if value:
            lines.append(f"  {label_text + ':':<12}{value}")

    field("object", recording.object_key)
    field("start", utc(recording.start_time))
    field("end", utc(recording.end_time))
    field("duration", f"{seconds(recording.duration):.3f} s")
    video = f"{recording.video_codec} {recording.width}x{recording.height} {recording.fps:g} fps"
    field("video", f"{video}, {recording.frame_count} frames")
    field("audio", recording.audio_codec or "none")
    field("format", recording.format)
    field("size", f"{size(recording.size_bytes)}  sha256 {recording.sha256[:16]}…")
    field("created", utc(recording.create_time))
    return "\n".join(lines)
