"""One typed settings object, read once from the environment at start.

Every component receives the `Settings` it needs; nothing reads `os.environ` after start-up.
Bad values raise `SettingsError` naming the variable and what it accepts. Each setting is
declared once, in `model.py`; `sparc-video --help` and docs/configuration.md are generated from
it (`python -m sparc_video.core.settings --markdown`).
"""

from __future__ import annotations

from sparc_video.core.settings.model import (
    REFLECTION_MODES,
    Settings,
    SettingsError,
)
from sparc_video.core.settings.parsers import (
    MIN_TOKEN_LENGTH,
    StaticToken,
    parse_fernet_keys,
    parse_identity_roles,
    parse_static_tokens,
)
from sparc_video.core.settings.reference import ENVIRONMENT_HELP, environment_help, markdown
from sparc_video.core.settings.types import reveal
from sparc_video.core.sizes import parse_size

__all__ = [
    "ENVIRONMENT_HELP",
    "MIN_TOKEN_LENGTH",
    "REFLECTION_MODES",
    "Settings",
    "SettingsError",
    "StaticToken",
    "environment_help",
    "markdown",
    "parse_fernet_keys",
    "parse_identity_roles",
    "parse_size",
    "parse_static_tokens",
    "reveal",
]
