"""What every `sparc-video` command shares: the exit codes (declared once, listed per command in
its `--help`), the global options (accepted before or after the subcommand, with `envvar=`),
and the command classes that render the help epilogs.

A global option given on the command line wins wherever it stands (`sparc-video --target X
export get ID` and `sparc-video export get ID --target X` are the same); the one nearest the
command wins when it is given twice; otherwise its environment variable, otherwise its default.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from sparc_video.core.defaults import DEFAULT_TARGET, DEFAULT_TIMEOUT_S

F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(enum.IntEnum):
    """Every exit status of `sparc-video`; each command declares the ones it can end with."""

    OK = 0
    FAILED = 1
    USAGE = 2
    CANCELLED = 3
    UNREACHABLE = 4
    REFUSED = 5
    DOWNLOAD = 6
    BAD_SIGNATURE = 7
    UNKNOWN_KEY = 8
    MISSING_FILE = 9
    HASH_MISMATCH = 10
    BROKEN_PIPE = 141
    INTERRUPTED = 130


EXIT_TEXT: Mapping[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "the export FAILED",
    ExitCode.USAGE: "usage error: bad flags or operation options",
    ExitCode.CANCELLED: "the export was CANCELLED",
    ExitCode.UNREACHABLE: "the server could not be reached or did not answer in time "
    "(UNAVAILABLE, DEADLINE_EXCEEDED; also TLS failures)",
    ExitCode.REFUSED: "the server refused the request (NOT_FOUND, INVALID_ARGUMENT, "
    "FAILED_PRECONDITION, UNAUTHENTICATED, PERMISSION_DENIED, ...)",
    ExitCode.DOWNLOAD: "a download failed, or its bytes did not match the export's sha256",
    ExitCode.BAD_SIGNATURE: "the manifest's signature does not verify (manifest or signature "
    "altered), or the bundle is malformed",
    ExitCode.UNKNOWN_KEY: "the manifest was signed with another key than the one given",
    ExitCode.MISSING_FILE: "the manifest, its signature or an output is missing",
    ExitCode.HASH_MISMATCH: "an output's size or sha256 differs from the manifest's",
    ExitCode.BROKEN_PIPE: "stdout was closed early (e.g. `| head`); nothing is reported",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
# What any client command can end with, besides its own outcomes.
CLIENT_EXITS = (
    ExitCode.OK,
    ExitCode.USAGE,
    ExitCode.UNREACHABLE,
    ExitCode.REFUSED,
    ExitCode.INTERRUPTED,
    ExitCode.BROKEN_PIPE,
)
# The server-side commands: they run until stopped, or fail to start.
SERVICE_EXITS: Mapping[ExitCode, str] = {
    ExitCode.OK: "stopped (SIGTERM)",
    ExitCode.FAILED: "could not start (bad configuration, Redis, storage, ports)",
    ExitCode.USAGE: "usage error, or a setting that does not parse",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
ExitCodes = Iterable[ExitCode] | Mapping[ExitCode, str]


def client_exits(*own: ExitCode, **texts: str) -> dict[ExitCode, str]:
    """A client command's exit codes: the common ones, `own`, and texts by code name that
    replace the shared ones (`FAILED="the camera does not answer"`)."""
    codes = sorted({*CLIENT_EXITS, *own})
    return {code: texts.get(code.name, EXIT_TEXT[code]) for code in codes}


def exit_codes_help(codes: ExitCodes) -> list[tuple[str, str]]:
    texts = codes if isinstance(codes, Mapping) else {code: EXIT_TEXT[code] for code in codes}
    return [(str(int(code)), text) for code, text in sorted(texts.items())]


# ---------------------------------------------------------------------------------------------
# Global options


@dataclass(frozen=True)
class Global:
    """One option every command (or every client command) accepts."""

    decls: tuple[str, ...]
    name: str
    help: str
    envvar: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def option(self) -> Callable[[F], F]:
        return click.option(
            *self.decls,
            self.name,
            envvar=self.envvar,
            show_envvar=self.envvar is not None,
            help=self.help,
            **self.kwargs,
        )


LOG_LEVEL = Global(
    ("--log-level",),
    "log_level",
    "logging level: DEBUG, INFO, WARNING, ERROR",
    None,
    {"default": "INFO", "show_default": True, "metavar": "LEVEL"},
)
# No --token flag: a token on the command line is visible to every user through `ps`; it comes
# from SPARC_VIDEO_TOKEN or --token-file.
CONNECTION = (
    Global(
        ("--target",),
        "target",
        "server address host:port",
        "SPARC_VIDEO_TARGET",
        {"default": DEFAULT_TARGET, "show_default": True, "metavar": "HOST:PORT"},
    ),
    Global(
        ("--tls/--no-tls",),
        "tls",
        "use TLS with the system's trusted CAs",
        "SPARC_VIDEO_TLS",
        {"default": False},
    ),
    Global(
        ("--ca-cert",),
        "ca_cert",
        "PEM CA bundle to trust instead; implies --tls",
        "SPARC_VIDEO_CA_CERT",
        {"type": click.Path(path_type=Path, dir_okay=False), "metavar": "FILE"},
    ),
    Global(
        ("--client-cert",),
        "client_cert",
        "PEM client certificate for mutual TLS",
        "SPARC_VIDEO_CLIENT_CERT",
        {"type": click.Path(path_type=Path, dir_okay=False), "metavar": "FILE"},
    ),
    Global(
        ("--client-key",),
        "client_key",
        "PEM key of --client-cert",
        "SPARC_VIDEO_CLIENT_KEY",
        {"type": click.Path(path_type=Path, dir_okay=False), "metavar": "FILE"},
    ),
    Global(
        ("--server-name",),
        "server_name",
        "name to verify the server's certificate against",
        "SPARC_VIDEO_SERVER_NAME",
        {"metavar": "NAME"},
    ),
    Global(
        ("--token-file",),
        "token_file",
        "file holding a bearer token, sent as `authorization: Bearer ...`; needs TLS "
        "(or the token itself in SPARC_VIDEO_TOKEN)",
        "SPARC_VIDEO_TOKEN_FILE",
        {"type": click.Path(path_type=Path, dir_okay=False), "metavar": "FILE"},
    ),
    Global(
        ("--plaintext-token",),
        "plaintext_token",
        "send the token without TLS: only behind a service mesh whose sidecars already "
        "encrypt the connection (anyone on a plaintext path could replay the token)",
        "SPARC_VIDEO_PLAINTEXT_TOKEN",
        {"is_flag": True, "default": False},
    ),
    Global(
        ("--timeout",),
        "timeout",
        "deadline of each call in seconds, retries included",
        "SPARC_VIDEO_TIMEOUT",
        {"type": float, "default": DEFAULT_TIMEOUT_S, "show_default": True, "metavar": "SECONDS"},
    ),
    Global(
        ("--format",),
        "output_format",
        "text for people, json for scripts (watch events as JSON lines)",
        "SPARC_VIDEO_FORMAT",
        {"type": click.Choice(["text", "json"]), "default": "text", "show_default": True},
    ),
)
TOKEN_ENV = "SPARC_VIDEO_TOKEN"


def global_options(*options: Global) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option.option()(function)
        return function

    return decorate


def log_level_option(function: F) -> F:
    return global_options(LOG_LEVEL)(function)


def connection_options(function: F) -> F:
    return global_options(LOG_LEVEL, *CONNECTION)(function)


def resolve(ctx: click.Context, name: str) -> Any:
    """A global option's value: given on the command line at this command or any group above
    it (the nearest wins), else this command's own value (its variable or default)."""
    here: click.Context | None = ctx
    while here is not None:
        if name in here.params and here.get_parameter_source(name) in (
            ParameterSource.COMMANDLINE,
            ParameterSource.PROMPT,
        ):
            return here.params[name]
        here = here.parent
    return ctx.params.get(name)


def configure_logging(level: str) -> None:
    """Plain logging at `level` (--log-level) for a command that runs briefly."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def resolve_all(ctx: click.Context, options: Iterable[Global]) -> dict[str, Any]:
    return {option.name: resolve(ctx, option.name) for option in options}


# ---------------------------------------------------------------------------------------------
# Help


def environment_help() -> str:
    """The server's environment variables, printed under `serve`, `worker` and `dev --help`.

    The one place that text comes from: swap it for one generated from the settings model."""
    from sparc_video.core.settings import ENVIRONMENT_HELP

    return ENVIRONMENT_HELP


class SparcCommand(click.Command):
    """A command whose help ends with its exit codes (and, for server commands, the
    environment). `exit_codes` and `examples` are given at declaration."""

    def __init__(
        self,
        *args: Any,
        exit_codes: ExitCodes = (),
        examples: str = "",
        environment: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("context_settings", {}).setdefault("max_content_width", 100)
        super().__init__(*args, **kwargs)
        self.exit_codes = exit_codes
        self.examples = examples
        self.environment = environment

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        write_epilog(formatter, self.exit_codes, self.examples, self.environment)


class SparcGroup(click.Group):
    """A group whose subcommands are SparcCommands by default; with `environment`, its help
    ends with the server's environment variables."""

    command_class = SparcCommand

    def __init__(self, *args: Any, environment: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {}).setdefault("max_content_width", 100)
        super().__init__(*args, **kwargs)
        self.environment = environment

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text("Run `COMMAND --help` for a command's options and exit codes.")
        write_epilog(formatter, (), "", self.environment)


SparcGroup.group_class = SparcGroup


def write_epilog(
    formatter: click.HelpFormatter, exit_codes: ExitCodes, examples: str, environment: bool
) -> None:
    if examples:
        with formatter.section("Examples"):
            for line in examples.strip("\n").splitlines():
                formatter.write(" " * formatter.current_indent + line + "\n")
    if exit_codes:
        with formatter.section("Exit codes"):
            formatter.write_dl(exit_codes_help(exit_codes))
    if environment:
        formatter.write_paragraph()
        formatter.write(environment_help())
