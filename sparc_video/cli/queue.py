"""`sparc-video queue stats`: the export queue of a server."""

from __future__ import annotations

from typing import Any

import click

from sparc_video.cli.options import ExitCode, SparcGroup, client_exits, connection_options
from sparc_video.cli.output import print_json, print_table
from sparc_video.cli.progress import seconds
from sparc_video.cli.runner import Session, client_command
from sparc_video.client import AsyncExportClient


@click.group("queue", cls=SparcGroup)
@connection_options
def queue(**_: Any) -> None:
    """Queue statistics of a server (at --target)."""


@queue.command("stats", exit_codes=client_exits())
@client_command(AsyncExportClient)
async def stats(session: Session, client: AsyncExportClient) -> int:
    """Exports by state, live workers, age of the oldest queued export."""
    found = await client.get_queue_stats()
    if session.json:
        print_json(found)
        return ExitCode.OK
    oldest = seconds(found.oldest_queued_age)
    print_table(
        [
            ("queued", str(found.queued), f"oldest {oldest:.1f} s" if found.queued else ""),
            ("running", str(found.running), ""),
            ("retrying", str(found.retrying), ""),
            ("succeeded", str(found.succeeded), ""),
            ("failed", str(found.failed), ""),
            ("cancelled", str(found.cancelled), ""),
            ("workers", str(found.workers), "heartbeat in the last 30 s"),
        ]
    )
    return ExitCode.OK
