"""How a setting is declared (`setting(...)`) and how a bad value is reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from sparc_video.core.sizes import format_size

# The sections of the reference, in order.
GROUPS = (
    "Network",
    "Redis",
    "PostgreSQL",
    "Storage",
    "Cameras and evidence",
    "Workers",
    "Recorder",
    "Limits",
    "Retention",
    "Observability",
    "Authentication",
    "TLS",
)


@dataclass(frozen=True)
class Spec:
    """What `setting(...)` says about a field beside its type and default."""

    env: str
    group: str
    kind: str | None = None
    shown: str | None = None
    file: bool = False
    strip: bool = True
    read: bool = False

    @property
    def secret(self) -> bool:
        """Never quoted in messages: a secret, or a file's content."""
        return self.file or self.read


def setting(
    default: Any,
    env: str,
    group: str,
    description: str,
    *,
    kind: str | None = None,
    shown: str | None = None,
    file: bool = False,
    strip: bool = True,
    read: bool = False,
    **constraints: Any,
) -> Any:
    """A field read from variable `env`, listed under `group`.

    `kind`: its type as the reference names it (else taken from the annotation); `shown`: the
    default as the reference writes it; `file`: ENV_FILE may instead name a file holding the
    value (a mounted secret), and wins; `strip`: False keeps the file's whitespace (a PEM);
    `read`: the variable names a file whose bytes are the value.
    """
    if group not in GROUPS:
        raise ValueError(f"{env}: unknown group {group!r}")
    spec = Spec(env, group, kind, shown, file, strip, read)
    if file:
        constraints.setdefault("repr", False)  # a secret is not even named in the repr
    return Field(default, description=description, json_schema_extra={"spec": spec}, **constraints)  # type: ignore[dict-item]


def spec(field: FieldInfo) -> Spec:
    extra = field.json_schema_extra
    assert isinstance(extra, dict), "every setting is declared with setting(...)"
    value = extra["spec"]
    assert isinstance(value, Spec)
    return value


def bounds(field: FieldInfo) -> tuple[Any, Any]:
    low = high = None
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Le):
            high = item.le
    return low, high


def problem(field: FieldInfo, error: ErrorDetails) -> str:
    """`VARIABLE=value must be ...`: one line naming the variable; secrets are not quoted."""
    about = spec(field)
    if error["type"] == "value_error":
        return f"{about.env}: {error.get('ctx', {}).get('error', error['msg'])}"
    message = error["msg"]
    message = message[:1].lower() + message[1:]
    if about.secret:
        return f"{about.env}: {message}"
    value = error["input"]
    low, high = bounds(field)
    if error["type"] in ("greater_than_equal", "less_than_equal") and None not in (low, high):
        if about.kind == "size":
            low, high = format_size(low), format_size(high)
        elif isinstance(low, float) or isinstance(high, float):
            low, high = f"{low:g}", f"{high:g}"
        return f"{about.env}={value} must be between {low} and {high}"
    return f"{about.env}={value!r}: {message}"
