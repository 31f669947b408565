"""`sparc-video` imports a command's module only when the command is named (sparc_video/cli/
lazy.py): what each kind of command loads in a fresh interpreter, and the summaries that list the
lazy commands in `--help` without importing them."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

import sparc_video.cli.main as cli

# Resolve the command `argv` names in a fresh interpreter (top-level help for `--help`, which
# lists every command) and print which of the modules asked about it imported.
PROBE = """
import json, sys
import click
import sparc_video.cli.main as cli
argv, modules = json.loads(sys.argv[1])
if argv == ["--help"]:
    cli.cli.get_help(click.Context(cli.cli, info_name="sparc-video"))
else:
    cli.parse_args(argv)
print(json.dumps([name for name in modules if name in sys.modules]))
"""
CLIENT = ["grpc", "sparc_video.client", "google.protobuf"]
MEDIA = ["av", "numpy", "sparc_video.simulator"]
SERVER = ["pydantic_settings", "sparc_video.core.settings", "workers.commands"]


def imported(argv: list[str], modules: list[str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([argv, modules])],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found: list[str] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize(
    ("argv", "not_imported"),
    [
        # The listing comes from the summaries; the settings model still loads, for the
        # environment variables the help ends with.
        (["--help"], [*CLIENT, *MEDIA, "aiohttp", "rich"]),
        (["export", "get", "x"], [*MEDIA, *SERVER]),
        (["camera", "get", "x"], [*MEDIA, *SERVER, "sparc_video.cli.camera_recording"]),
        (["verify", "bundle"], [*MEDIA, *SERVER]),
        (["test-camera"], [*CLIENT, *SERVER, "aiohttp"]),
        (["migrate"], [*CLIENT, *MEDIA, "aiohttp", "workers.commands"]),
        (["serve"], [*CLIENT, *MEDIA, *SERVER, "aiohttp"]),
    ],
)
def test_a_command_imports_only_what_it_needs(argv: list[str], not_imported: list[str]) -> None:
    assert imported(argv, not_imported) == []


def test_the_worker_commands_load_when_named() -> None:
    assert imported(["worker"], ["workers.commands"]) == ["workers.commands"]


def test_the_listed_summaries_are_the_commands_own() -> None:
    ctx = click.Context(cli.cli, info_name="sparc-video")
    for name, (_, summary) in cli.COMMANDS.items():
        command = cli.cli.get_command(ctx, name)
        assert command is not None, name
        for limit in (45, 80, 10_000):
            listed = click.Command(name, help=summary).get_short_help_str(limit)
            assert listed == command.get_short_help_str(limit), name


@pytest.mark.parametrize(
    ("argv", "suggested"), [(["veriffy"], "verify"), (["camera", "lvie"], "live")]
)
def test_a_mistyped_command_is_told_the_nearest_one(argv: list[str], suggested: str) -> None:
    """In a fresh interpreter, where no lazy command is imported yet."""
    done = subprocess.run(
        [sys.executable, "-m", "sparc_video.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert f"Did you mean {suggested!r}?" in done.stderr
