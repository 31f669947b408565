"""`sparc-video migrate`: upgrade the PostgreSQL schema at DATABASE_URL to this version's newest
revision and say which revision the database is at.

Safe to run again (nothing to do at head) and from several places at once (the migration holds
an advisory lock): as a Kubernetes Job or init container before the new version starts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from sparc_video.core.errors import Unavailable
from sparc_video.core.settings import Settings, reveal

HELP = "upgrade the PostgreSQL schema at DATABASE_URL to the newest revision"
DESCRIPTION = (
    f"{HELP}, then print the revision. Safe to repeat; concurrent runs wait for each other.\n\n"
    "exit codes:\n  0  the database is at the newest revision\n"
    "  1  the database cannot be reached, or a migration failed\n"
    "  2  DATABASE_URL is not set"
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    commands.add_parser(
        "migrate",
        help=HELP,
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


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
    from sparc_video.database.migrations import current_revision, head_revision, migrate
    from sparc_video.database.urls import redacted

    async def upgrade() -> tuple[str | None, str | None]:
        before = await current_revision(url)
        await migrate(url)
        return before, await current_revision(url)

    try:
        before, after = asyncio.run(upgrade())
    except Unavailable as exc:
        print(f"sparc-video migrate: {exc.message}", file=sys.stderr)
        return 1
    change = "already there" if before == after else f"upgraded from {before or 'an empty schema'}"
    print(f"{redacted(url)}: at revision {after} (newest {head_revision()}; {change})")
    return 0
