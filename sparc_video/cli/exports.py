"""`sparc-video export create|get|list|cancel|watch|download`: exports on a server, through
`sparc_video.client`. They need none of the server's settings."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.cli.describe import describe_export
from sparc_video.cli.operations import (
    GAP_MODES,
    OPERATION_KINDS,
    enum_choices,
    operation_help,
    parse_operations,
    parse_source,
    source_text,
    timestamp_option,
)
from sparc_video.cli.options import (
    ExitCode,
    SparcCommand,
    SparcGroup,
    client_exits,
    connection_options,
)
from sparc_video.cli.output import as_json, more, print_json, print_table
from sparc_video.cli.progress import (
    MODES,
    Display,
    DownloadView,
    WatchView,
    state_name,
    utc,
)
from sparc_video.cli.runner import Session, client_command
from sparc_video.client import (
    AsyncExportClient,
    DownloadedFile,
    export_name,
)

Export = export_pb2.Export
PRIORITIES = enum_choices(Export.DESCRIPTOR.fields_by_name["priority"])
WATCH_EXITS = client_exits(
    ExitCode.FAILED, ExitCode.CANCELLED, OK="success (watching: the export SUCCEEDED)"
)
F = Callable[..., Any]


@click.group("export", cls=SparcGroup)
@connection_options
def export(**_: Any) -> None:
    """Create, inspect, watch and download exports on a server (at --target)."""


def progress_option(function: F) -> F:
    return click.option(
        "--progress",
        type=click.Choice(MODES),
        default="auto",
        show_default=True,
        help="progress on stderr: a redrawn bar on a terminal, plain lines otherwise",
    )(function)


def watch_options(function: F) -> F:
    function = click.option(
        "--reconnect-timeout",
        type=float,
        default=120.0,
        show_default=True,
        metavar="SECONDS",
        help="keep trying to resume a broken watch this long",
    )(function)
    return progress_option(function)


def name_argument(function: F) -> F:
    return click.argument("name")(function)


class OrderedCommand(SparcCommand):
    """Remembers the order its options were given in (`ctx.meta["order"]`): operations run in
    the order of their flags, whichever flags they are."""

    def make_parser(self, ctx: click.Context) -> Any:
        parser = super().make_parser(ctx)
        parse = parser.parse_args

        def parse_args(args: list[str]) -> Any:
            opts, rest, order = parse(args)
            ctx.meta["order"] = [param.name for param in order]
            return opts, rest, order

        setattr(parser, "parse_args", parse_args)  # noqa: B010 (mypy: a method)
        return parser


def operation_options(function: F) -> F:
    for kind in reversed(OPERATION_KINDS):
        function = click.option(
            f"--{kind.replace('_', '-')}",
            kind,
            multiple=True,
            is_flag=False,
            flag_value="",
            metavar="KEY=VALUE,...",
            help=operation_help(kind),
        )(function)
    return function


def given_operations(ctx: click.Context, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, options) of each operation flag, in command-line order."""
    values = {kind: list(params.pop(kind)) for kind in OPERATION_KINDS}
    return [(kind, values[kind].pop(0)) for kind in ctx.meta.get("order", []) if kind in values]


CREATE_EXAMPLES = """\
sparc-video export create samples/clip.mp4 \\
  --transcode codec=h264,bitrate=1000k,resolution=1280x720 \\
  --thumbnail at=50%,size=320x240 --watch
sparc-video export create --camera gate-7 --from 2026-11-24T08:00:00Z \\
  --to 2026-11-24T08:30:00Z --gaps slate --convert container=mp4
"""


@export.command(
    "create",
    cls=OrderedCommand,
    exit_codes=WATCH_EXITS,
    examples=CREATE_EXAMPLES,
    short_help="queue an export; print its name (or watch it with --watch)",
)
@click.argument("source", required=False)
@click.option(
    "--recording", metavar="NAME", help="source: a recording, cameras/CAMERA/recordings/ID"
)
@click.option(
    "--camera",
    metavar="NAME",
    help="source: a camera's footage from --from to --to (cameras/ID or ID)",
)
@click.option(
    "--from",
    "start",
    callback=timestamp_option,
    metavar="TIME",
    help="range start, ISO 8601 with a timezone",
)
@click.option(
    "--to", "end", callback=timestamp_option, metavar="TIME", help="range end (exclusive)"
)
@click.option(
    "--gaps",
    type=click.Choice(sorted(GAP_MODES)),
    help="times without footage: close them (default) or show a NO RECORDING slate",
)
@click.option(
    "--wall-clock-subtitles", is_flag=True, help="add a subtitle track with the capture time"
)
@operation_options
@click.option(
    "--priority",
    type=click.Choice(list(PRIORITIES)),
    help="interactive (someone waits; the server's default) or batch (bulk work, runs after "
    "interactive exports)",
)
@click.option(
    "--request-id",
    help="idempotency key: repeating a create with it returns the first export "
    "(default: a fresh UUID)",
)
@click.option("--case-id", default="", help="case the export is for (recorded in its manifest)")
@click.option("--purpose", default="", help="why it is made (recorded in its signed manifest)")
@click.option("--watch", is_flag=True, help="then watch it to the end (exit code by outcome)")
@watch_options
@client_command(AsyncExportClient)
async def create(session: Session, client: AsyncExportClient, /, **params: Any) -> int:
    """Queue an export of a stored video, a recording or a camera's time range; print its name.

    SOURCE is a storage key (e.g. samples/clip.mp4); or give --recording, or --camera with
    --from and --to. Operations run in the order their flags are given; a flag alone
    (`--thumbnail`) takes the defaults."""
    operations = parse_operations(given_operations(click.get_current_context(), params))
    source = parse_source(
        params["source"],
        recording=params["recording"],
        camera=params["camera"],
        start=params["start"],
        end=params["end"],
        gaps=params["gaps"],
        wall_clock_subtitles=params["wall_clock_subtitles"],
    )
    created = await client.create_export(
        source,
        operations,
        request_id=params["request_id"] or None,
        case_id=params["case_id"],
        purpose=params["purpose"],
        priority=params["priority"] or None,
    )
    if not params["watch"]:
        session.message(created, created.name)
        return ExitCode.OK
    if not session.json:
        print(created.name, flush=True)
    return await follow(
        session, client, created.name, params["progress"], params["reconnect_timeout"]
    )


@export.command("watch", exit_codes=WATCH_EXITS)
@name_argument
@watch_options
@client_command(AsyncExportClient)
async def watch(
    session: Session, client: AsyncExportClient, name: str, progress: str, reconnect_timeout: float
) -> int:
    """Follow an export to its end with a live progress bar; resumes across server restarts.

    NAME is exports/ID or ID."""
    return await follow(session, client, export_name(name), progress, reconnect_timeout)


async def follow(
    session: Session, client: AsyncExportClient, name: str, progress: str, reconnect_s: float
) -> int:
    view = WatchView(Display(sys.stderr, "none" if session.json else progress))
    final: Export | None = None
    try:
        async for message in client.watch_export(
            name, reconnect_timeout=reconnect_s, on_reconnect=view.reconnecting
        ):
            final = message.export
            if session.json:
                print(json.dumps(as_json(message)), flush=True)
            else:
                view.update(message)
    finally:
        view.finish()
    assert final is not None, "a watch yields at least its snapshot"
    if not session.json:
        print(describe_export(final), flush=True)
    if final.state == Export.STATE_FAILED:
        return ExitCode.FAILED
    if final.state == Export.STATE_CANCELLED:
        return ExitCode.CANCELLED
    return ExitCode.OK


@export.command("get", exit_codes=client_exits())
@name_argument
@client_command(AsyncExportClient)
async def get(session: Session, client: AsyncExportClient, name: str) -> int:
    """Show one export (NAME: exports/ID or ID)."""
    found = await client.get_export(name)
    session.message(found, describe_export(found))
    return ExitCode.OK


STATES = [v.name.removeprefix("STATE_") for v in Export.State.DESCRIPTOR.values if v.number]


@export.command("list", exit_codes=client_exits())
@click.option(
    "--state",
    type=click.Choice(STATES, case_sensitive=False),
    help="only exports in this state",
)
@click.option("--page-size", type=int, default=0, help="exports per page (server default: 50)")
@click.option("--page-token", default="", help="next page token of a previous list")
@click.option("--all", "all_pages", is_flag=True, help="follow page tokens to the end")
@client_command(AsyncExportClient)
async def list_(
    session: Session,
    client: AsyncExportClient,
    state: str | None,
    page_size: int,
    page_token: str,
    all_pages: bool,
) -> int:
    """List exports, newest first."""
    wanted = (state or "").upper()
    if all_pages:
        exports = [e async for e in client.iter_exports(state=wanted, page_size=page_size)]
        page = export_service_pb2.ListExportsResponse(exports=exports)
    else:
        page = await client.list_exports(page_size=page_size, page_token=page_token, state=wanted)
    if session.json:
        print_json(page)
        return ExitCode.OK
    rows = []
    for item in page.exports:
        progress = ""
        if item.state == Export.STATE_RUNNING:
            progress = f"{item.progress.percent:.1f}% {item.progress.current_operation}"
        rows.append(
            (
                item.name,
                state_name(item.state),
                progress,
                utc(item.create_time),
                source_text(item.source),
            )
        )
    print_table(rows, ("NAME", "STATE", "PROGRESS", "CREATED", "SOURCE"))
    more(page.next_page_token)
    return ExitCode.OK


@export.command("cancel", exit_codes=client_exits())
@name_argument
@client_command(AsyncExportClient)
async def cancel(session: Session, client: AsyncExportClient, name: str) -> int:
    """Stop an export that has not finished (NAME: exports/ID or ID)."""
    cancelled = await client.cancel_export(name)
    session.message(cancelled, f"{cancelled.name}: {state_name(cancelled.state)}")
    return ExitCode.OK


@export.command("download", exit_codes=client_exits(ExitCode.DOWNLOAD))
@name_argument
@click.option(
    "-o",
    "--output",
    "--directory",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="where to put the files (default ./ID); files already there with the right sha256 "
    "are kept",
)
@progress_option
@client_command(AsyncExportClient)
async def download(
    session: Session, client: AsyncExportClient, name: str, directory: Path | None, progress: str
) -> int:
    """Fetch a finished export's outputs, its manifest and signature; verify their sha256.

    NAME is exports/ID or ID."""
    name = export_name(name)
    directory = directory or Path(name.rsplit("/", 1)[-1])
    display = Display(sys.stderr, "none" if session.json else progress)
    try:
        files = await client.download_outputs(name, directory, progress=DownloadView(display))
    finally:
        display.end_bar()
    if session.json:
        print(json.dumps({"files": [file_json(f) for f in files]}, indent=2))
    else:
        for file in files:
            print(file.path)
    return ExitCode.OK


def file_json(file: DownloadedFile) -> dict[str, Any]:
    return {
        "path": str(file.path),
        "storageKey": file.storage_key,
        "sizeBytes": file.size_bytes,
        "sha256": file.sha256,
        "verified": True,
        "alreadyPresent": file.already_present,
    }
