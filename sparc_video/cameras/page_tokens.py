"""Page tokens of camera and recording listings.

Opaque to clients (AIP-158) but bound to the query they page through, so a token cannot be
replayed against another filter, camera or time range.
"""

from __future__ import annotations

import base64
import json

from sparc_video.core.errors import FieldViolation, InvalidArgument


def encode_token(last: str, scope: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([last, scope]).encode()).decode()


def decode_token(token: str, scope: str) -> str:
    try:
        last, token_scope = json.loads(base64.urlsafe_b64decode(token.encode()))
        if token_scope != scope or not isinstance(last, str) or not last:
            raise ValueError
        return last
    except (ValueError, TypeError):
        raise InvalidArgument(
            [FieldViolation("page_token", "not a token from a previous call with the same query")]
        ) from None


def position(token: str) -> tuple[int, str]:
    """A recording listing's token: the last recording's start time and id."""
    start, _, recording_id = token.partition(":")
    try:
        return int(start), recording_id
    except ValueError:
        raise InvalidArgument(
            [FieldViolation("page_token", "not a token from a previous call with the same query")]
        ) from None
