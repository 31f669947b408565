"""The `sparc-video` command line as a whole: global options before or after the command, their
environment variables, a closed stdout, each command's exit codes in its help, help on every
option, and the commands the workers add through an entry point."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points

import click
import pytest

import sparc_video.cli.main as cli
from sparc_video.cli.options import EXIT_TEXT, ExitCode, resolve
from sparc_video.client import AsyncExportClient, thumbnail
from sparc_video.core.settings import Settings
from tests.fixtures.redis import free_port
from tests.fixtures.service import start_service
from tests.test_cli import SPARC_VIDEO, client_env, sparc_video


def commands(
    command: click.Command = cli.cli, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the tree, groups included, with its path of names (importing the
    lazily loaded ones)."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in subcommands(command, path).items():
            yield from commands(sub, (*path, name))


def subcommands(group: click.Group, path: tuple[str, ...] = ()) -> dict[str, click.Command]:
    ctx = click.Context(group, info_name=path[-1] if path else "sparc-video")
    found = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}


LEAVES = [path for path, command in commands() if not isinstance(command, click.Group)]


def help_text(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main([*path, "--help"]) == 0
    return capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Global options


@pytest.mark.parametrize(
    "argv",
    [
        ["--target", "a:1", "export", "get", "x"],
        ["export", "--target", "a:1", "get", "x"],
        ["export", "get", "x", "--target", "a:1"],
        ["export", "get", "--target", "a:1", "x"],
        # The one nearest the command wins.
        ["--target", "b:2", "export", "get", "x", "--target", "a:1"],
        ["--target", "b:2", "export", "--target", "a:1", "get", "x"],
    ],
)
def test_global_options_before_or_after_the_command(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARC_VIDEO_TARGET", "from-env:3")
    ctx = cli.parse_args(argv)
    assert ctx.command_path == "sparc-video export get"
    assert resolve(ctx, "target") == "a:1"
    assert ctx.params["name"] == "x"


def test_environment_variables_are_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARC_VIDEO_TARGET", "from-env:3")
    monkeypatch.setenv("SPARC_VIDEO_TLS", "true")
    monkeypatch.setenv("SPARC_VIDEO_TIMEOUT", "2.5")
    monkeypatch.setenv("SPARC_VIDEO_FORMAT", "json")
    ctx = cli.parse_args(["queue", "stats"])
    assert resolve(ctx, "target") == "from-env:3"
    assert resolve(ctx, "tls") is True and resolve(ctx, "timeout") == 2.5
    assert resolve(ctx, "output_format") == "json"
    # A flag wins over the variable, wherever it stands.
    ctx = cli.parse_args(["--no-tls", "--format", "text", "queue", "stats", "--timeout", "1"])
    assert resolve(ctx, "tls") is False and resolve(ctx, "timeout") == 1.0
    assert resolve(ctx, "output_format") == "text"
    monkeypatch.delenv("SPARC_VIDEO_TARGET")
    assert resolve(cli.parse_args(["queue", "stats"]), "target") == "localhost:50051"


async def test_global_options_reach_the_server_call_from_either_side() -> None:
    dead = f"127.0.0.1:{free_port()}"
    runs = await asyncio.gather(
        sparc_video("--target", dead, "--timeout", "2", "--format", "json", "queue", "stats"),
        sparc_video("queue", "stats", "--target", dead, "--timeout", "2", "--format", "json"),
        sparc_video(
            "queue", "stats", "--timeout", "2", "--format", "json",
            env=client_env(SPARC_VIDEO_TARGET=dead),
        ),
        sparc_video(
            "--target", "127.0.0.1:1", "queue", "stats", "--target", dead, "--timeout", "2",
            "--format", "json", env=client_env(SPARC_VIDEO_TARGET="127.0.0.1:2"),
        ),
    )  # fmt: skip
    for result in runs:
        assert result.rc == ExitCode.UNREACHABLE, result
        assert f"(target {dead})" in result.stderr
        # Refused at once, or still retrying the connection at the deadline on a loaded machine:
        # both are "unreachable", which is what the options decide (the target is named).
        assert result.json["error"]["code"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


# ---------------------------------------------------------------------------------------------
# A closed stdout


def closed_stdout(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `sparc-video ARGS` with its stdout a pipe nobody reads: closed before it writes."""
    proc = subprocess.Popen(
        [str(SPARC_VIDEO), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or client_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), err


def assert_quiet(rc: int, stderr: str) -> None:
    assert rc in (0, ExitCode.BROKEN_PIPE), (rc, stderr)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr


def head_c1(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`sparc-video ARGS | head -c1` in a shell: sparc-video's exit status and stderr."""
    script = " ".join(shlex.quote(a) for a in (str(SPARC_VIDEO), *args))
    done = subprocess.run(
        ["bash", "-c", f'{script} | head -c1 >/dev/null; echo "status=${{PIPESTATUS[0]}}"'],
        capture_output=True,
        env=env or client_env(),
        text=True,
        timeout=60,
    )
    match = re.search(r"status=(\d+)", done.stdout)
    assert match, done
    return int(match[1]), done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["export", "create", "--help"]])
def test_help_into_a_closed_pipe_ends_quietly(argv: list[str]) -> None:
    assert_quiet(*closed_stdout(*argv))
    assert_quiet(*head_c1(*argv))


async def test_results_into_a_closed_pipe_end_quietly(
    service_settings: Callable[..., Settings],
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        async with AsyncExportClient(service.target) as client:
            created = await client.create_export("in/a.mp4", [thumbnail()])
        env = client_env(SPARC_VIDEO_TARGET=service.target)
        for argv in (["export", "get", created.name], ["export", "list", "--format", "json"]):
            assert_quiet(*await asyncio.to_thread(closed_stdout, *argv, env=env))
            assert_quiet(*await asyncio.to_thread(head_c1, *argv, env=env))

        # --priority on create, set on the request the client sends.
        batch = await sparc_video(
            "export", "create", "in/a.mp4", "--thumbnail", "--priority", "batch",
            "--format", "json", env=env,
        )  # fmt: skip
        assert batch.rc == 0, batch.stderr
        assert batch.json["priority"] == "PRIORITY_BATCH"
        plain = await sparc_video(
            "export", "create", "in/a.mp4", "--thumbnail", "--format", "json", env=env
        )
        assert plain.json["priority"] == "PRIORITY_INTERACTIVE"


# ---------------------------------------------------------------------------------------------
# Help


def test_each_command_lists_its_own_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    listed: dict[tuple[str, ...], set[int]] = {}
    for path in LEAVES:
        text = help_text(path, capsys)
        section = text.split("Exit codes:\n", 1)
        assert len(section) == 2, f"{path}: no exit codes in --help"
        listed[path] = {int(m) for m in re.findall(r"^  (\d+) ", section[1], re.M)}
    verify_codes = {ExitCode.BAD_SIGNATURE, ExitCode.UNKNOWN_KEY, ExitCode.MISSING_FILE}
    assert verify_codes | {ExitCode.HASH_MISMATCH} <= listed[("verify",)]
    assert not verify_codes & listed[("export", "get")]
    assert ExitCode.DOWNLOAD in listed[("export", "download")]
    assert ExitCode.DOWNLOAD not in listed[("export", "watch")]
    assert {ExitCode.FAILED, ExitCode.CANCELLED} <= listed[("export", "watch")]
    assert ExitCode.CANCELLED not in listed[("camera", "probe")]
    assert ExitCode.FAILED not in listed[("queue", "stats")]
    assert ExitCode.UNREACHABLE not in listed[("worker",)]
    for path, codes in listed.items():
        assert codes <= {int(code) for code in EXIT_TEXT}, path
        assert ExitCode.OK in codes and ExitCode.USAGE in codes, path
    probe = help_text(("camera", "probe"), capsys)
    assert "1    the camera does not answer" in probe


def test_every_option_and_argument_is_explained() -> None:
    for path, command in commands():
        assert command.help or command.short_help, f"{path} has no help"
        ctx = click.Context(command, info_name=path[-1] if path else "sparc-video")
        for param in command.get_params(ctx):
            if isinstance(param, click.Option):
                assert param.help, f"{' '.join(path)} {param.opts[0]} has no help"
            elif isinstance(param, click.Argument):
                metavar = param.make_metavar(ctx).strip("[].")
                assert metavar in (command.help or ""), f"{path}: {metavar} not explained"


def test_camera_create_and_update_share_the_enable_disable_pair() -> None:
    def flags(name: str) -> dict[str, tuple[list[str], list[str]]]:
        command = subcommands(cli.cli)["camera"]
        assert isinstance(command, click.Group)
        params = subcommands(command, ("camera",))[name].params
        return {p.name or "": (p.opts, p.secondary_opts) for p in params if p.name == "enabled"}

    assert flags("create") == flags("update") == {"enabled": (["--enable"], ["--disable"])}


def test_the_format_option_is_not_a_case_of_the_output_file() -> None:
    download = cli.parse_args(["export", "download", "x", "-o", "out", "--format", "json"])
    assert str(download.params["directory"]) == "out"
    assert resolve(download, "output_format") == "json"
    with pytest.raises(click.UsageError):
        cli.parse_args(["export", "get", "x", "-O", "json"])


def test_worker_commands_come_from_an_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    names = {e.value for e in entry_points(group=cli.COMMANDS_GROUP)}
    assert "workers.commands:register" in names
    assert {"worker", "dev"} <= set(subcommands(cli.cli))
    assert "--data-dir" in help_text(("dev",), capsys)
    ctx = cli.parse_args(["--log-level", "WARNING", "worker"])
    assert resolve(ctx, "log_level") == "WARNING"


def test_usage_errors_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors go to stderr with exit 2; nothing half-written on stdout."""
    assert cli.main(["export", "create", "in/a.mp4", "--transcode", "bogus=1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "bogus" in err and "usage" in err.lower()
