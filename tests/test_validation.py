from __future__ import annotations

import pytest

from sparc_video.api.exports.requests import (
    parse_bitrate,
    parse_export_name,
    parse_resolution,
    parse_timestamp,
)
from sparc_video.core.errors import InvalidArgument
from sparc_video.exports.operations import Timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1280x720", (1280, 720)),
        ("1280x0", (1280, 0)),
        ("1280x-1", (1280, 0)),
        ("-1X480", (0, 480)),
    ],
)
def test_resolution(text: str, expected: tuple[int, int]) -> None:
    assert parse_resolution(text) == expected


@pytest.mark.parametrize("text", ["12x", "x720", "0x0", "-2x100", "1280*720", "99999x10", "1x1"])
def test_bad_resolution(text: str) -> None:
    with pytest.raises(ValueError):
        parse_resolution(text)


@pytest.mark.parametrize(
    ("text", "bps"),
    [("1000k", 1_000_000), ("2.5M", 2_500_000), ("800000", 800_000), ("64kbps", 64_000)],
)
def test_bitrate(text: str, bps: int) -> None:
    assert parse_bitrate(text) == bps


@pytest.mark.parametrize("text", ["fast", "", "-5k", "1G", "5"])
def test_bad_bitrate(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bitrate(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50%", Timestamp("percent", 50)),
        ("0%", Timestamp("percent", 0)),
        ("12.5", Timestamp("seconds", 12.5)),
        ("00:01:02.500", Timestamp("seconds", 62.5)),
        ("01:02", Timestamp("seconds", 62)),
        ("1:00:00", Timestamp("seconds", 3600)),
    ],
)
def test_timestamp(text: str, expected: Timestamp) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["150%", "-1", "abc", "00:61:00", "%", "nan%"])
def test_bad_timestamp(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_export_name() -> None:
    assert parse_export_name("exports/0123456789abcdef0123") == "0123456789abcdef0123"
    for bad in (
        "0123456789abcdef0123",
        "exports/",
        "exports/../../etc",
        "cameras/0123456789abcdef0123",
    ):
        with pytest.raises(InvalidArgument):
            parse_export_name(bad)
