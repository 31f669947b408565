"""`sparc-video camera create|get|list|update|delete|probe|snapshot`: cameras on a server
(`record`, `status` and `timeline` are in camera_recording.py).

A camera password is read from a file (`--password-file`) or the SPARC_VIDEO_CAMERA_PASSWORD
variable, never from the command line (every user sees it in `ps`); the server never returns
it, so no output of these commands can show it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from google.protobuf import timestamp_pb2
from sparc.video.v1 import camera_service_pb2

from sparc_video.cli.lazy import LazyGroup
from sparc_video.cli.options import ExitCode, client_exits, connection_options
from sparc_video.cli.output import more, notice, print_json, print_table
from sparc_video.cli.progress import seconds, size, utc
from sparc_video.cli.runner import Session, UsageError, client_command
from sparc_video.client.cameras import AsyncCameraClient, Camera, CameraCredentials

PASSWORD_ENV = "SPARC_VIDEO_CAMERA_PASSWORD"
F = Callable[..., Any]


@click.group(
    "camera",
    cls=LazyGroup,
    # In modules of their own, which import this one (listed in help by importing them).
    lazy={
        "live": "sparc_video.cli.camera_live:live",
        "record": "sparc_video.cli.camera_recording:record",
        "status": "sparc_video.cli.camera_recording:status",
        "timeline": "sparc_video.cli.camera_recording:timeline",
    },
)
@connection_options
def camera(**_: Any) -> None:
    """Register, inspect, probe and snapshot cameras on a server (at --target).

    Camera credentials: --username with --password-file FILE, or the password in
    SPARC_VIDEO_CAMERA_PASSWORD; never on the command line. The server never returns them."""


def camera_name(name: str) -> str:
    return name if "/" in name else f"cameras/{name}"


def name_argument(function: F) -> F:
    return click.argument("name")(function)


def label(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
    if not values:
        return None
    labels: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{text!r} is not KEY=VALUE", ctx, param)
        labels[key.strip()] = value.strip()
    return labels


def camera_fields(function: F) -> F:
    """The fields `create` sets and `update` changes: the same flags on both."""
    for decorator in reversed(
        (
            click.option("--display-name", help="name shown to people"),
            click.option("--site", help="site the camera belongs to"),
            click.option("--location", help="where it is, free text"),
            click.option(
                "--label",
                "labels",
                multiple=True,
                callback=label,
                metavar="KEY=VALUE",
                help="a label (repeatable; on update, replaces all labels)",
            ),
            click.option("--stream-url", help="rtsp://, rtsps://, http(s):// stream address"),
            click.option("--username", help="stream username (password: --password-file)"),
            click.option(
                "--password-file",
                type=click.Path(path_type=Path, dir_okay=False),
                metavar="FILE",
                help=f"file holding the stream password (or the password in {PASSWORD_ENV})",
            ),
            click.option(
                "--enable/--disable",
                "enabled",
                default=None,
                help="whether the camera is used (create: enabled unless --disable; update: "
                "unchanged unless given)",
            ),
        )
    ):
        function = decorator(function)
    return function


def credentials(username: str | None, password_file: Path | None) -> CameraCredentials | None:
    password: str | None = None
    if password_file is not None:
        try:
            password = password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"--password-file: {exc.strerror or exc}") from None
    elif username is not None and os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    if username is None and password is None:
        return None
    if username is None:
        raise UsageError("a password needs --username")
    return CameraCredentials(username=username, password=password or "")


def camera_from_flags(fields: dict[str, Any]) -> tuple[Camera, list[str]]:
    """The camera the flags describe, and the fields they set."""
    found = Camera()
    paths: list[str] = []
    for field in ("display_name", "site", "location", "stream_url", "enabled"):
        value = fields[field]
        if value is not None:
            setattr(found, field, value)
            paths.append(field)
    if fields["labels"] is not None:
        found.labels.update(fields["labels"])
        paths.append("labels")
    given = credentials(fields["username"], fields["password_file"])
    if given is not None:
        found.credentials.CopyFrom(given)
        paths.append("credentials")
    return found, paths


@camera.command("create", exit_codes=client_exits())
@click.argument("camera_id", metavar="[ID]", default="", required=False)
@camera_fields
@client_command(AsyncCameraClient)
async def create(
    session: Session, client: AsyncCameraClient, /, camera_id: str, **fields: Any
) -> int:
    """Register a camera; print its name. ID defaults to one the server picks."""
    wanted, _ = camera_from_flags(fields)
    created = await client.create_camera(wanted, camera_id=camera_id)
    session.message(created, created.name)
    return ExitCode.OK


@camera.command("get", exit_codes=client_exits())
@name_argument
@client_command(AsyncCameraClient)
async def get(session: Session, client: AsyncCameraClient, name: str) -> int:
    """Show one camera (NAME: cameras/ID or ID)."""
    found = await client.get_camera(name)
    session.message(found, describe_camera(found))
    return ExitCode.OK


def page_options(function: F) -> F:
    function = click.option(
        "--all", "all_pages", is_flag=True, help="follow page tokens to the end"
    )(function)
    function = click.option("--page-token", default="", help="next page token of a previous list")(
        function
    )
    return click.option("--page-size", type=int, default=0, help="items per page")(function)


@camera.command("list", exit_codes=client_exits())
@click.option(
    "--filter", "where", default="", help='e.g. \'site = "hq" AND labels.zone = "north"\''
)
@page_options
@client_command(AsyncCameraClient)
async def list_(
    session: Session,
    client: AsyncCameraClient,
    where: str,
    page_size: int,
    page_token: str,
    all_pages: bool,
) -> int:
    """List cameras."""
    if all_pages:
        found = [c async for c in client.iter_cameras(filter=where, page_size=page_size)]
        page = camera_service_pb2.ListCamerasResponse(cameras=found)
    else:
        page = await client.list_cameras(page_size=page_size, page_token=page_token, filter=where)
    if session.json:
        print_json(page)
        return ExitCode.OK
    rows = [
        (
            item.name,
            item.display_name,
            item.site,
            "yes" if item.enabled else "no",
            _status(item),
            _labels(item),
        )
        for item in page.cameras
    ]
    print_table(rows, ("NAME", "DISPLAY NAME", "SITE", "ENABLED", "STATUS", "LABELS"))
    more(page.next_page_token)
    return ExitCode.OK


@camera.command("update", exit_codes=client_exits())
@name_argument
@camera_fields
@click.option("--clear-labels", is_flag=True, help="remove every label (--label replaces all)")
@click.option("--clear-credentials", is_flag=True, help="forget the username and password")
@client_command(AsyncCameraClient)
async def update(
    session: Session,
    client: AsyncCameraClient,
    /,
    name: str,
    clear_labels: bool,
    clear_credentials: bool,
    **fields: Any,
) -> int:
    """Change the fields given of camera NAME (an empty value clears one); the rest stay."""
    changed, paths = camera_from_flags(fields)
    changed.name = camera_name(name)
    if clear_labels:
        if fields["labels"] is not None:
            raise UsageError("--clear-labels and --label contradict each other")
        changed.labels.clear()
        paths.append("labels")
    if clear_credentials:
        if "credentials" in paths:
            raise UsageError("--clear-credentials and --username contradict each other")
        paths.append("credentials")
    if not paths:
        raise UsageError("give at least one field to change (see --help)")
    updated = await client.update_camera(changed, paths)
    session.message(updated, describe_camera(updated))
    return ExitCode.OK


@camera.command("delete", exit_codes=client_exits())
@name_argument
@click.option("--force", is_flag=True, help="also delete its recordings")
@client_command(AsyncCameraClient)
async def delete(session: Session, client: AsyncCameraClient, name: str, force: bool) -> int:
    """Delete a camera (NAME: cameras/ID or ID)."""
    name = camera_name(name)
    await client.delete_camera(name, force=force)
    deleted(session, name)
    return ExitCode.OK


def deleted(session: Session, name: str) -> None:
    session.data({"name": name, "deleted": True}, f"{name}: deleted")


@camera.command(
    "probe", exit_codes=client_exits(ExitCode.FAILED, FAILED="the camera does not answer")
)
@name_argument
@click.option(
    "--probe-timeout", type=float, metavar="SECONDS", help="server-side limit of the probe"
)
@client_command(AsyncCameraClient)
async def probe(
    session: Session, client: AsyncCameraClient, name: str, probe_timeout: float | None
) -> int:
    """Connect to camera NAME's stream now; exit 1 when it does not answer."""
    result = await client.probe_camera(name, probe_timeout=probe_timeout)
    if session.json:
        print_json(result)
    else:
        lines = [f"{result.camera.name}  {'reachable' if result.reachable else 'UNREACHABLE'}"]
        if result.reachable:
            lines.append(f"  {'stream:':<12}{_stream(result.stream_info)}")
            lines.append(
                f"  {'latency:':<12}connect {seconds(result.connect_latency) * 1000:.0f} ms, "
                f"first frame {seconds(result.latency) * 1000:.0f} ms"
            )
        if result.HasField("error"):
            lines.append(f"  {'error:':<12}{result.error.message}")
        print("\n".join(lines))
    return ExitCode.OK if result.reachable else ExitCode.FAILED


@camera.command("snapshot", exit_codes=client_exits())
@name_argument
@click.option(
    "--capture-timeout", type=float, metavar="SECONDS", help="server-side limit of the grab"
)
@click.option(
    "--url-ttl", type=float, metavar="SECONDS", help="how long the URL works (server default)"
)
@client_command(AsyncCameraClient)
async def snapshot(
    session: Session,
    client: AsyncCameraClient,
    name: str,
    capture_timeout: float | None,
    url_ttl: float | None,
) -> int:
    """Grab a frame of camera NAME into storage; print a URL to fetch it."""
    shot = await client.capture_snapshot(name, capture_timeout=capture_timeout, url_ttl=url_ttl)
    if session.json:
        print_json(shot)
    else:
        print(shot.download_url)
        notice(
            f"{shot.storage_key}  {shot.width}x{shot.height}  {size(shot.size_bytes)}  "
            f"captured {utc(shot.capture_time)}, URL expires {utc(shot.expire_time)}"
        )
    return ExitCode.OK


# ---------------------------------------------------------------------------------------------
# Text


def _status(camera: Camera) -> str:
    return Camera.Status.Name(camera.status).removeprefix("STATUS_")


def _labels(camera: Camera) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(camera.labels.items()))


def _stream(info: Any) -> str:
    parts = [info.format, info.video_codec]
    if info.width:
        parts.append(f"{info.width}x{info.height}")
    if info.fps:
        parts.append(f"{info.fps:g} fps")
    if info.audio_codec:
        parts.append(f"audio {info.audio_codec}")
    return " ".join(p for p in parts if p)


def _when(stamp: timestamp_pb2.Timestamp) -> str:
    return utc(stamp) if stamp.seconds or stamp.nanos else "never"


def describe_camera(camera: Camera) -> str:
    lines = [f"{camera.name}  {'enabled' if camera.enabled else 'disabled'}  {_status(camera)}"]

    def field(label_text: str, value: str) -> None:
        if value:
            lines.append(f"  {label_text + ':':<14}{value}")

    field("display name", camera.display_name)
    field("site", camera.site)
    field("location", camera.location)
    field("labels", _labels(camera))
    field("stream url", camera.stream_url)
    field("credentials", "stored (write-only)" if camera.has_credentials else "none")
    field("stream", _stream(camera.stream_info))
    field("last seen", _when(camera.last_seen_time))
    field("last probe", _when(camera.last_probe_time))
    if camera.HasField("last_error"):
        field("last error", camera.last_error.message)
    field("created", utc(camera.create_time))
    field("updated", utc(camera.update_time))
    return "\n".join(lines)
