"""`sparc-video audit CASE_ID` / `sparc-video audit --resource exports/ID`: the chain of
custody of a case or of one resource, from AuditService (admins only)."""

from __future__ import annotations

import json

import click
from google.protobuf.json_format import MessageToDict

from sparc_video.cli.options import ExitCode, SparcCommand, client_exits
from sparc_video.cli.output import print_table
from sparc_video.cli.runner import Session, client_command
from sparc_video.client import AsyncAuditClient


@click.command("audit", cls=SparcCommand, exit_codes=client_exits())
@click.argument("case_id", required=False, default="")
@click.option(
    "--resource",
    default="",
    metavar="NAME",
    help="the trail of one resource (exports/ID, cameras/ID, recordings/ID) instead of a case",
)
@client_command(AsyncAuditClient)
async def audit(session: Session, client: AsyncAuditClient, case_id: str, resource: str) -> int:
    """Who did what, oldest first: the audit trail of CASE_ID, or of --resource (admins)."""
    if bool(case_id) == bool(resource):
        raise click.UsageError("give a CASE_ID or --resource NAME (one of them)")
    entries = [e async for e in client.iter_audit_entries(case_id=case_id, resource=resource)]
    if session.json:
        # One array of the whole trail: a case's trail is read as a unit.
        print(json.dumps([MessageToDict(e) for e in entries], indent=2), flush=True)
        return ExitCode.OK
    print_table(
        [
            (
                e.time.ToDatetime().isoformat(timespec="seconds") + "Z",
                e.principal or "-",
                e.action,
                e.resource,
                json.dumps(MessageToDict(e.details), separators=(",", ":")) if e.details else "",
            )
            for e in entries
        ],
        headers=("time", "principal", "action", "resource", "details"),
    )
    return ExitCode.OK
