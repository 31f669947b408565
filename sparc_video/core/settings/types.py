"""The value types and checks settings are declared with (`model.py`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, SecretStr

from sparc_video.core.object_keys import validate_key
from sparc_video.core.sizes import parse_size


def parsed(parse: Callable[[str], Any]) -> BeforeValidator:
    """Text from the environment goes through `parse`; typed values pass as they are."""
    return BeforeValidator(lambda value: parse(value) if isinstance(value, str) else value)


def comma_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def checked(check: Callable[[Any], object]) -> AfterValidator:
    def run(value: Any) -> Any:
        if value is not None:
            check(value)
        return value

    return AfterValidator(run)


def key_prefixes(prefixes: tuple[str, ...]) -> None:
    for prefix in prefixes:
        try:
            validate_key(prefix.removesuffix("/"))
        except ValueError as exc:
            raise ValueError(f"{prefix!r} {exc}") from None


def networks(networks: tuple[str, ...]) -> None:
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"{network!r} is not a CIDR such as 10.0.0.0/8") from None


def starts_with(*prefixes: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if not value.startswith(prefixes):
            raise ValueError(f"{value!r} must start with " + " or ".join(prefixes))

    return check


def on_secret(check: Callable[[str], object]) -> Callable[[SecretStr], None]:
    def run(secret: SecretStr) -> None:
        check(secret.get_secret_value())

    return run


def lowercase(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Size = Annotated[int, parsed(parse_size)]
Names = Annotated[tuple[str, ...], parsed(comma_list)]
Secret = SecretStr | None


def reveal(secret: SecretStr | None) -> str | None:
    """The text of a secret setting, None when unset."""
    return None if secret is None else secret.get_secret_value()
