"""A PostgreSQL connection string in the two forms the package needs.

Operators give one `DATABASE_URL`: `postgresql://user:password@host:5432/db` (or the unix-socket
form `postgresql://user@/db?host=/run/postgresql` that pgserver prints). asyncpg takes it as is;
SQLAlchemy (alembic's migrations) wants the driver named: `postgresql+asyncpg://...`.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


def _scheme(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ValueError(
            f"DATABASE_URL must start with postgresql:// (e.g. "
            f"postgresql://user:password@127.0.0.1:5432/sparc_video), not {scheme or 'nothing'}://"
        )
    return scheme


def asyncpg_dsn(url: str) -> str:
    """The URL asyncpg connects to: `postgresql://...`."""
    _scheme(url)
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql"))


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy connects to with the asyncpg driver: `postgresql+asyncpg://...`."""
    _scheme(url)
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql+asyncpg"))


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database (the path of the URL)."""
    _scheme(url)
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def redacted(url: str) -> str:
    """The URL for logs and messages: the password replaced by `***` (an empty one, as
    pgserver's URLs have, hides nothing and stays)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))
