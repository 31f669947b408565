"""`sparc-video upload FILE`: a local video into the service's storage through UploadService.

No storage credentials are needed, only the connection options of every client command. The
file goes up in parts; after a broken connection the command resumes by itself, and a second
run with `--resume uploads/ID` (printed when the upload is declared) sends only what storage
still lacks. Prints the object key to export.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sparc_video.cli.options import ExitCode, SparcCommand, client_exits
from sparc_video.cli.progress import MODES, Display, size
from sparc_video.cli.runner import Session, client_command
from sparc_video.cli.upload_api import upload_via_api
from sparc_video.client import AsyncUploadClient
from sparc_video.client.uploads import UploadProgress

UPLOAD_EXITS = client_exits(
    ExitCode.FAILED, OK="uploaded; the object key is printed", FAILED="the file cannot be read"
)


@click.command("upload", cls=SparcCommand, exit_codes=UPLOAD_EXITS)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--resume",
    metavar="uploads/ID",
    help="continue an upload a previous run declared: only the parts storage lacks are sent",
)
@click.option("--filename", help="the name the object gets (default: FILE's name)")
@click.option("--content-type", help="MIME type (default: guessed from the name)")
@click.option(
    "--progress",
    type=click.Choice(MODES),
    default="auto",
    show_default=True,
    help="a bar on a terminal, plain lines elsewhere, or none",
)
@client_command(AsyncUploadClient)
async def upload(
    session: Session,
    client: AsyncUploadClient,
    file: Path,
    resume: str | None,
    filename: str | None,
    content_type: str | None,
    progress: str,
) -> int:
    """Upload FILE through the API (UploadService) as a source for exports, with its SHA-256
    recorded; prints the object key to give `export create`."""
    display = Display(sys.stderr, progress)
    announced: list[str] = []

    def report(state: UploadProgress) -> None:
        if not announced:
            announced.append(state.upload)
            display.line(f"{state.upload}: {size(state.size_bytes)} in {state.part_count} parts")
        fraction = state.sent_bytes / state.size_bytes if state.size_bytes else 1.0
        detail = f"{size(state.sent_bytes)} / {size(state.size_bytes)}"
        if display.redraws:
            display.draw(fraction, file.name, detail)
        elif state.part_number:
            display.line(f"part {state.parts_done}/{state.part_count}: {detail}")

    try:
        key = await upload_via_api(
            client,
            file,
            report,
            resume=resume,
            filename=filename,
            content_type=content_type,
        )
    except OSError as exc:
        display.end_bar()
        click.echo(f"sparc-video: upload: cannot read {file}: {exc.strerror or exc}", err=True)
        return ExitCode.FAILED
    display.end_bar()
    if session.json:
        print(json.dumps({"objectKey": key, "upload": announced[0] if announced else resume}))
    else:
        print(key)
    return ExitCode.OK
