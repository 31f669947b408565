"""`sparc-video migrate`: upgrade the PostgreSQL schema at DATABASE_URL to this version's newest
revision and say which revision the database is at.

Safe to run again (nothing to do at head) and from several places at once (the migration holds
an advisory lock): as a Kubernetes Job or init container before the new version starts.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping

import click

from sparc_video.cli.options import (
    LOG_LEVEL,
    ExitCode,
    SparcCommand,
    configure_logging,
    log_level_option,
    resolve,
)
from sparc_video.core.errors import Unavailable
from sparc_video.core.settings import Settings, SettingsError, reveal

MIGRATE_EXITS: Mapping[ExitCode, str] = {
    ExitCode.OK: "the database is at the newest revision",
    ExitCode.FAILED: "the database cannot be reached, or a migration failed",
    ExitCode.USAGE: "DATABASE_URL is not set",
}


@click.command("migrate", cls=SparcCommand, exit_codes=MIGRATE_EXITS, environment=True)
@log_level_option
def migrate_command(log_level: str) -> int:
    """Upgrade the PostgreSQL schema at DATABASE_URL to the newest revision, then print the
    revision. Safe to repeat; concurrent runs wait for each other."""
    configure_logging(resolve(click.get_current_context(), LOG_LEVEL.name))
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        click.echo(f"sparc-video: {exc}", err=True)
        return ExitCode.USAGE
    return run(settings)


def run(settings: Settings) -> int:
    url = reveal(settings.database_url)
    if not url:
        print(
            "sparc-video migrate: DATABASE_URL is not set; set it to the PostgreSQL to upgrade "
            "(postgresql://user:password@host:5432/db).",
            file=sys.stderr,
        )
        return 2
    # alembic announces its autogenerate plugins at INFO when imported; its steps still log.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from sparc_video.database.migrations import head_revision, upgrade
    from sparc_video.database.urls import redacted

    try:
        before, after = asyncio.run(upgrade(url))
    except Unavailable as exc:
        print(f"sparc-video migrate: {exc.message}", file=sys.stderr)
        return 1
    change = "already there" if before == after else f"upgraded from {before or 'an empty schema'}"
    print(f"{redacted(url)}: at revision {after} (newest {head_revision()}; {change})")
    return 0
