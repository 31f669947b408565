"""The roles of principals (viewer < operator < admin); which RPC needs which role is
`sparc_video.security.roles.METHOD_ROLES`. Here in core so settings can parse roles."""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    """A principal's role; a larger value may do everything a smaller one may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        """`viewer`, `operator` or `admin` (any case); ValueError otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"{text!r} is not a role; use viewer, operator or admin") from None

    def __str__(self) -> str:
        return self.name.lower()
