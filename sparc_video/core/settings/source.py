"""The environment as a pydantic-settings source: each field from its variable.

Blank counts as unset. A field declared with `file=True` may instead come from VARIABLE_FILE,
a file holding the value (a Kubernetes or Docker secret mounted as a file); the file wins over
the variable. A field declared with `read=True` is the bytes of the file its variable names.
Problems reading files are collected, never raised one by one, and never quote a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from sparc_video.core.settings.fields import Spec, spec


class EnvironmentSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env = env
        self.problems: list[str] = []

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        about = spec(field)
        return self._value(about), about.env, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, name)
            if value is not None:
                values[name] = value
        return values

    def _value(self, about: Spec) -> str | bytes | None:
        path = self.env.get(f"{about.env}_FILE", "").strip() if about.file else ""
        if path:
            return self._read_text(f"{about.env}_FILE", path, about.strip)
        raw = self.env.get(about.env, "").strip()
        if not raw:
            return None
        if about.read:
            try:
                return Path(raw).read_bytes()
            except OSError as exc:
                self.problems.append(f"{about.env}: cannot read {raw!r}: {exc.strerror}")
                return None
        return raw

    def _read_text(self, name: str, path: str, strip: bool) -> str | None:
        try:
            content = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            self.problems.append(f"{name}: cannot read {path!r} ({why})")
            return None
        if not content.strip():
            self.problems.append(f"{name}: {path!r} is empty")
            return None
        return content.strip() if strip else content
