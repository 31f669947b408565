"""Parsers of the structured values some settings hold (keys, tokens, role maps)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from sparc_video.core.roles import Role

MIN_TOKEN_LENGTH = 16


def parse_fernet_keys(text: str) -> list[bytes]:
    """Comma-separated Fernet keys (32 bytes in URL-safe base64 each); ValueError otherwise."""
    keys = [part.strip().encode("ascii", "replace") for part in text.split(",") if part.strip()]
    if not keys:
        raise ValueError("holds no key")
    for index, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                f"key {index} is not 32 bytes in URL-safe base64; make one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`"
            )
    return keys


@dataclass(frozen=True)
class StaticToken:
    """A service token from AUTH_TOKENS: whoever presents `token` is `principal` with `role`."""

    principal: str
    role: Role
    token: str = field(repr=False)


def parse_static_tokens(text: str) -> tuple[StaticToken, ...]:
    """`PRINCIPAL:ROLE:TOKEN` entries, one a line or comma-separated; `#` starts a comment line.

    Errors name the entry by number, never by content: an entry holds a secret.
    """
    entries: list[StaticToken] = []
    seen: set[str] = set()
    lines = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
    parts = [part.strip() for line in lines for part in line.split(",") if part.strip()]
    for index, part in enumerate(parts, start=1):
        principal, _, rest = part.partition(":")
        role_name, _, token = rest.partition(":")
        if not principal or not token:
            raise ValueError(f"entry {index} is not PRINCIPAL:ROLE:TOKEN")
        try:
            role = Role.parse(role_name)
        except ValueError as exc:
            raise ValueError(f"entry {index}: {exc}") from None
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"entry {index}: the token is shorter than {MIN_TOKEN_LENGTH} characters; make "
                "one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if token in seen:
            raise ValueError(f"entry {index}: the same token is given twice")
        seen.add(token)
        entries.append(StaticToken(principal, role, token))
    return tuple(entries)


def parse_identity_roles(text: str) -> tuple[tuple[str, Role], ...]:
    """`IDENTITY=ROLE` pairs, comma-separated (client-certificate identity → role)."""
    pairs: list[tuple[str, Role]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        identity, sep, role_name = part.rpartition("=")
        if not sep or not identity.strip():
            raise ValueError(f"{part!r} is not IDENTITY=ROLE")
        pairs.append((identity.strip(), Role.parse(role_name)))
    return tuple(pairs)
