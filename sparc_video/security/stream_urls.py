"""Camera stream URLs: which ones are accepted, and keeping their secrets out of sight.

A stream URL can carry secrets in two places: the user information (`rtsp://user:pass@host`)
and, for many cheap IP cameras, query parameters (`/video.cgi?user=admin&pwd=...`). Both are
taken out of the URL when it is received: the service stores and returns the *public* form, in
which the user information is absent and each secret query value is `***`, and keeps the
secrets apart (encrypted, see `credentials.py`). `compose` puts them back only to hand the URL to
FFmpeg. A client that reads a camera and sends its URL back unchanged sends `***` placeholders,
which mean "keep what is stored".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit, urlunsplit

ALLOWED_SCHEMES = ("rtsp", "rtsps", "http", "https")
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
MAX_URL_LENGTH = 2048
REDACTED = "***"
# Query parameters whose values are treated as secrets (compared case-insensitively).
SECRET_QUERY_PARAMS = frozenset(
    {
        "user", "username", "usr", "login", "password", "passwd", "pass", "pwd", "psw",
        "token", "access_token", "auth", "authorization", "key", "apikey", "api_key",
        "secret", "sig", "signature", "session", "sessionid",
    }
)  # fmt: skip

# Greedy up to the last "@" of the URL: a password may hold "/" or "@" unencoded, and hiding a
# bit of path too is the safe side of the mistake.
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s'\"]*@")
_SECRET_PARAM_RE = re.compile(
    r"(?i)([?&;](?:" + "|".join(sorted(SECRET_QUERY_PARAMS, key=len, reverse=True)) + r")=)"
    r"[^&#\s'\"]*"
)


@dataclass(frozen=True)
class ParsedStreamUrl:
    """A received stream URL split into its public form and the secrets it carried.

    `username`/`password` are None when the URL had no user information; `keep_userinfo` is
    true when it had the `***` placeholder. In `query_secrets`, a value of `***` means "keep the
    stored value". Secret values are kept percent-encoded as received, so `compose` rebuilds the
    URL byte for byte.
    """

    public_url: str
    origin: str
    username: str | None = None
    password: str | None = None
    keep_userinfo: bool = False
    query_secrets: dict[str, str] = field(default_factory=dict)

    @property
    def has_userinfo(self) -> bool:
        return self.username is not None


@dataclass
class StreamSecrets:
    """What is stored encrypted for a camera: its log-in and secret query values."""

    username: str = ""
    password: str = ""
    query: dict[str, str] = field(default_factory=dict)

    @property
    def has_userinfo(self) -> bool:
        return bool(self.username or self.password)

    @property
    def empty(self) -> bool:
        return not self.has_userinfo and not self.query

    def values(self) -> list[str]:
        """Every secret string, as given and percent-decoded, for scrubbing messages."""
        found = {self.username, self.password}
        for value in self.query.values():
            found |= {value, unquote(value)}
        return sorted((v for v in found if v), key=len, reverse=True)


def parse_stream_url(text: str) -> ParsedStreamUrl:
    """Validate a stream URL and split off its secrets; ValueError(description) when invalid.

    Descriptions quote only the redacted URL.
    """
    shown = redact_text(text)[:200]
    if len(text) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError(f"{shown!r} must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
        _port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError(f"{shown!r} is not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise ValueError(
            f"{shown!r}: the scheme must be one of {', '.join(ALLOWED_SCHEMES)}, "
            "e.g. rtsp://camera.local:554/stream1"
        )
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not parts.hostname or not hostport or hostport.startswith(":"):
        raise ValueError(f"{shown!r} names no host")
    username: str | None = None
    password: str | None = None
    keep = False
    if at:
        if userinfo == REDACTED:
            keep = True
        else:
            user, _, secret = userinfo.partition(":")
            username, password = unquote(user), unquote(secret)
    query, secrets = _split_query(parts.query)
    public = urlunsplit((scheme, hostport, parts.path, query, parts.fragment))
    return ParsedStreamUrl(public, origin_of(public), username, password, keep, secrets)


def origin_of(url: str) -> str:
    """Scheme, host and port, normalised: the stored secrets are bound to it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def display_url(public_url: str, has_userinfo: bool) -> str:
    """The URL as returned to clients: `***@` where a log-in is stored."""
    if not has_userinfo:
        return public_url
    parts = urlsplit(public_url)
    return urlunsplit(
        (parts.scheme, f"{REDACTED}@{parts.netloc}", parts.path, parts.query, parts.fragment)
    )


def compose(public_url: str, secrets: StreamSecrets) -> str:
    """The full URL to open: the log-in as user information, the secret query values back."""
    parts = urlsplit(public_url)
    netloc = parts.netloc
    if secrets.has_userinfo:
        user = quote(secrets.username, safe="")
        netloc = f"{user}:{quote(secrets.password, safe='')}@{netloc}"
    query = "&".join(
        _restore(piece, secrets.query) for piece in parts.query.split("&") if parts.query
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Hide user information and secret query values of every URL in a message."""
    return _SECRET_PARAM_RE.sub(r"\1" + REDACTED, _USERINFO_RE.sub(r"\1" + REDACTED + "@", text))


def scrub(text: str, secrets: StreamSecrets) -> str:
    """redact_text, and every known secret string replaced by `***` wherever it appears."""
    text = redact_text(text)
    for value in secrets.values():
        text = text.replace(value, REDACTED)
    return text


def _split_query(query: str) -> tuple[str, dict[str, str]]:
    if not query:
        return "", {}
    kept: list[str] = []
    secrets: dict[str, str] = {}
    for piece in query.split("&"):
        name, eq, value = piece.partition("=")
        if eq and unquote(name).lower() in SECRET_QUERY_PARAMS:
            secrets[name] = value
            kept.append(f"{name}={REDACTED}")
        else:
            kept.append(piece)
    return "&".join(kept), secrets


def _restore(piece: str, stored: dict[str, str]) -> str:
    name, eq, value = piece.partition("=")
    if eq and value == REDACTED and name in stored:
        return f"{name}={stored[name]}"
    return piece
