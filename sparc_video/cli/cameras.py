"""Client commands of `sparc-video` for CameraService: `camera create|get|list|update|delete|
probe|snapshot` and `recording create|get|list|delete|upload-url`.

Same connection options, `--output json`, exit codes and error reporting as `export ...`
(`cli_client`). A camera password is read from a file (`--password-file`) or the
SPARC_VIDEO_CAMERA_PASSWORD variable, never from the command line (every user sees it in
`ps`); the server never returns it, so no output of these commands can show it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2
from sparc.video.v1 import camera_service_pb2

from sparc_video.cli.exports import (
    EPILOG,
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    _print_json,
    _table,
    client_leaf,
    timestamp,
)
from sparc_video.cli.progress import seconds, size, utc
from sparc_video.client.cameras import AsyncCameraClient, Camera, CameraCredentials, Recording

PASSWORD_ENV = "SPARC_VIDEO_CAMERA_PASSWORD"
CAMERA_EPILOG = (
    f"camera credentials: --username with --password-file FILE, or the password in\n"
    f"{PASSWORD_ENV}; never on the command line. The server never returns them.\n"
    "`camera probe` exits 1 when the camera does not answer.\n\n" + EPILOG
)
Handler = Callable[[argparse.Namespace, AsyncCameraClient], Coroutine[Any, Any, int]]


# ---------------------------------------------------------------------------------------------
# Flag types


def label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


# ---------------------------------------------------------------------------------------------
# Parsers


def add_camera_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    formatter = argparse.RawDescriptionHelpFormatter

    def leaf(
        group: argparse._SubParsersAction,  # type: ignore[type-arg]
        name: str,
        text: str,
        handler: Handler,
    ) -> argparse.ArgumentParser:
        parser = client_leaf(group, common, name, text, handler, AsyncCameraClient)
        parser.epilog = CAMERA_EPILOG
        return parser

    camera = commands.add_parser(
        "camera",
        help="register, inspect, probe and snapshot cameras on a server",
        description="Client commands for cameras; each talks to the server at --target.",
        epilog=CAMERA_EPILOG,
        formatter_class=formatter,
    )
    cameras = camera.add_subparsers(dest="camera_command", required=True)

    create = leaf(cameras, "create", "register a camera; print its name", _camera_create)
    create.add_argument("id", nargs="?", default="", help="camera id (default: the server's)")
    _camera_fields(create)
    create.add_argument("--disabled", action="store_true", help="register it disabled")

    get = leaf(cameras, "get", "show one camera", _camera_get)
    get.add_argument("name", help="cameras/ID or ID")

    listing = leaf(cameras, "list", "list cameras", _camera_list)
    listing.add_argument(
        "--filter", default="", help='e.g. \'site = "hq" AND labels.zone = "north"\''
    )
    _page_options(listing)

    update = leaf(
        cameras,
        "update",
        "change the fields given (an empty value clears one); the rest stay",
        _camera_update,
    )
    update.add_argument("name", help="cameras/ID or ID")
    _camera_fields(update)
    update.add_argument(
        "--clear-labels", action="store_true", help="remove every label (--label replaces all)"
    )
    update.add_argument(
        "--clear-credentials", action="store_true", help="forget the username and password"
    )
    enabled = update.add_mutually_exclusive_group()
    enabled.add_argument("--enable", action="store_true", dest="enable", default=None)
    enabled.add_argument("--disable", action="store_false", dest="enable")

    delete = leaf(cameras, "delete", "delete a camera", _camera_delete)
    delete.add_argument("name", help="cameras/ID or ID")
    delete.add_argument("--force", action="store_true", help="also delete its recordings")

    probe = leaf(cameras, "probe", "connect to the camera's stream now", _camera_probe)
    probe.add_argument("name", help="cameras/ID or ID")
    probe.add_argument(
        "--probe-timeout", type=float, metavar="SECONDS", help="server-side limit of the probe"
    )

    snapshot = leaf(
        cameras, "snapshot", "grab a frame into storage; print a URL to fetch it", _camera_snapshot
    )
    snapshot.add_argument("name", help="cameras/ID or ID")
    snapshot.add_argument(
        "--capture-timeout", type=float, metavar="SECONDS", help="server-side limit of the grab"
    )
    snapshot.add_argument(
        "--url-ttl", type=float, metavar="SECONDS", help="how long the URL works (server default)"
    )

    recording = commands.add_parser(
        "recording",
        help="register, list and delete recordings of cameras",
        description="Client commands for recordings; each talks to the server at --target.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    recordings = recording.add_subparsers(dest="recording_command", required=True)

    rec_create = leaf(
        recordings,
        "create",
        "register a stored video as a recording of a camera; print its name",
        _recording_create,
    )
    rec_create.add_argument("camera", help="cameras/ID or ID")
    rec_create.add_argument("object_key", help="storage key of the video, e.g. nvr/gate/0001.mp4")
    rec_create.add_argument(
        "--start-time",
        type=timestamp,
        required=True,
        help="capture time of the first frame, ISO 8601 with a timezone",
    )

    rec_get = leaf(recordings, "get", "show one recording", _recording_get)
    rec_get.add_argument("name", help="cameras/ID/recordings/ID")

    rec_list = leaf(recordings, "list", "list a camera's recordings by start time", _recording_list)
    rec_list.add_argument("camera", help="cameras/ID or ID")
    rec_list.add_argument("--start-time", type=timestamp, help="only recordings from this time")
    rec_list.add_argument("--end-time", type=timestamp, help="only recordings before this time")
    _page_options(rec_list)

    rec_delete = leaf(
        recordings, "delete", "delete a recording and its stored video", _recording_delete
    )
    rec_delete.add_argument("name", help="cameras/ID/recordings/ID")

    upload = leaf(
        recordings,
        "upload-url",
        "an expiring URL to PUT a recording to (register it with `recording create` after)",
        _recording_upload_url,
    )
    upload.add_argument("camera", help="cameras/ID or ID")
    upload.add_argument("--size-bytes", type=int, required=True, help="exact size of the upload")
    upload.add_argument("--content-type", default="", help="e.g. video/mp4")
    upload.add_argument("--ttl", type=float, metavar="SECONDS", help="how long the URL works")


def _camera_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--display-name", help="name shown to people")
    parser.add_argument("--site", help="site the camera belongs to")
    parser.add_argument("--location", help="where it is, free text")
    parser.add_argument(
        "--label",
        type=label,
        action="append",
        dest="labels",
        metavar="KEY=VALUE",
        help="a label (repeatable)",
    )
    parser.add_argument("--stream-url", help="rtsp://, rtsps://, http(s):// stream address")
    parser.add_argument("--username", help="stream username (password: --password-file)")
    parser.add_argument(
        "--password-file",
        type=Path,
        help=f"file holding the stream password (or the password in {PASSWORD_ENV})",
    )


def _page_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page-size", type=int, default=0, help="items per page")
    parser.add_argument("--page-token", default="", help="next page token of a previous list")
    parser.add_argument("--all", action="store_true", help="follow page tokens to the end")


def _credentials(args: argparse.Namespace) -> CameraCredentials | None:
    password: str | None = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"--password-file: {exc.strerror or exc}") from None
    elif args.username is not None and os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    if args.username is None and password is None:
        return None
    if args.username is None:
        raise UsageError("a password needs --username")
    return CameraCredentials(username=args.username, password=password or "")


def _camera_from_flags(args: argparse.Namespace) -> tuple[Camera, list[str]]:
    """The camera the flags describe, and the fields they set."""
    camera = Camera()
    paths: list[str] = []
    for field in ("display_name", "site", "location", "stream_url"):
        value = getattr(args, field)
        if value is not None:
            setattr(camera, field, value)
            paths.append(field)
    if args.labels is not None:
        camera.labels.update(dict(args.labels))
        paths.append("labels")
    credentials = _credentials(args)
    if credentials is not None:
        camera.credentials.CopyFrom(credentials)
        paths.append("credentials")
    return camera, paths


# ---------------------------------------------------------------------------------------------
# Camera commands


async def _camera_create(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    camera, _ = _camera_from_flags(args)
    if args.disabled:
        camera.enabled = False
    created = await client.create_camera(camera, camera_id=args.id)
    _show(args, created, created.name)
    return EXIT_OK


async def _camera_get(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    camera = await client.get_camera(args.name)
    _show(args, camera, describe_camera(camera))
    return EXIT_OK


async def _camera_list(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    if args.all:
        cameras = [
            c async for c in client.iter_cameras(filter=args.filter, page_size=args.page_size)
        ]
        page = camera_service_pb2.ListCamerasResponse(cameras=cameras)
    else:
        page = await client.list_cameras(
            page_size=args.page_size, page_token=args.page_token, filter=args.filter
        )
    if args.output == "json":
        _print_json(page)
        return EXIT_OK
    rows = [("NAME", "DISPLAY NAME", "SITE", "ENABLED", "STATUS", "LABELS")]
    for camera in page.cameras:
        rows.append(
            (
                camera.name,
                camera.display_name,
                camera.site,
                "yes" if camera.enabled else "no",
                _status(camera),
                _labels(camera),
            )
        )
    print(_table(rows))
    _more(page.next_page_token)
    return EXIT_OK


async def _camera_update(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    camera, paths = _camera_from_flags(args)
    camera.name = args.name if "/" in args.name else f"cameras/{args.name}"
    if args.clear_labels:
        if args.labels is not None:
            raise UsageError("--clear-labels and --label contradict each other")
        camera.labels.clear()
        paths.append("labels")
    if args.clear_credentials:
        if "credentials" in paths:
            raise UsageError("--clear-credentials and --username contradict each other")
        paths.append("credentials")
    if args.enable is not None:
        camera.enabled = args.enable
        paths.append("enabled")
    if not paths:
        raise UsageError("give at least one field to change (see --help)")
    updated = await client.update_camera(camera, paths)
    _show(args, updated, describe_camera(updated))
    return EXIT_OK


async def _camera_delete(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    name = args.name if "/" in args.name else f"cameras/{args.name}"
    await client.delete_camera(name, force=args.force)
    _deleted(args, name)
    return EXIT_OK


async def _camera_probe(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    result = await client.probe_camera(args.name, probe_timeout=args.probe_timeout)
    if args.output == "json":
        _print_json(result)
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
    return EXIT_OK if result.reachable else EXIT_FAILED


async def _camera_snapshot(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    shot = await client.capture_snapshot(
        args.name, capture_timeout=args.capture_timeout, url_ttl=args.url_ttl
    )
    if args.output == "json":
        _print_json(shot)
    else:
        print(shot.download_url)
        print(
            f"{shot.storage_key}  {shot.width}x{shot.height}  {size(shot.size_bytes)}  "
            f"captured {utc(shot.capture_time)}, URL expires {utc(shot.expire_time)}",
            file=sys.stderr,
        )
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Recording commands


async def _recording_create(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    recording = await client.create_recording(args.camera, args.object_key, args.start_time)
    _show(args, recording, recording.name)
    return EXIT_OK


async def _recording_get(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    recording = await client.get_recording(args.name)
    _show(args, recording, describe_recording(recording))
    return EXIT_OK


async def _recording_list(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    window = {"start_time": args.start_time, "end_time": args.end_time}
    if args.all:
        found = [
            r async for r in client.iter_recordings(args.camera, page_size=args.page_size, **window)
        ]
        page = camera_service_pb2.ListRecordingsResponse(recordings=found)
    else:
        page = await client.list_recordings(
            args.camera, page_size=args.page_size, page_token=args.page_token, **window
        )
    if args.output == "json":
        _print_json(page)
        return EXIT_OK
    rows = [("NAME", "START", "DURATION", "VIDEO", "SIZE", "OBJECT")]
    for recording in page.recordings:
        rows.append(
            (
                recording.name,
                utc(recording.start_time),
                f"{seconds(recording.duration):.2f} s",
                f"{recording.video_codec} {recording.width}x{recording.height}",
                size(recording.size_bytes),
                recording.object_key,
            )
        )
    print(_table(rows))
    _more(page.next_page_token)
    return EXIT_OK


async def _recording_delete(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    await client.delete_recording(args.name)
    _deleted(args, args.name)
    return EXIT_OK


async def _recording_upload_url(args: argparse.Namespace, client: AsyncCameraClient) -> int:
    link = await client.create_recording_upload_url(
        args.camera, args.size_bytes, content_type=args.content_type, ttl=args.ttl
    )
    if args.output == "json":
        _print_json(link)
    else:
        print(link.upload_url)
        print(f"object key: {link.object_key}", file=sys.stderr)
        for key, value in sorted(link.headers.items()):
            print(f"header: {key}: {value}", file=sys.stderr)
        print(f"expires: {utc(link.expire_time)}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Output


def _show(args: argparse.Namespace, message: Camera | Recording, text: str) -> None:
    if args.output == "json":
        _print_json(message)
    else:
        print(text, flush=True)


def _deleted(args: argparse.Namespace, name: str) -> None:
    if args.output == "json":
        print(json.dumps({"name": name, "deleted": True}), flush=True)
    else:
        print(f"{name}: deleted")


def _more(token: str) -> None:
    if token:
        print(f"more: --page-token {token}", file=sys.stderr)


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
