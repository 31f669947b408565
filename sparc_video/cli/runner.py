"""Running a client command: resolve the global options, connect, call the async handler, and
turn what went wrong into an exit code and a message (stderr, and stdout in JSON mode)."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import click
import grpc

from sparc_video.cli.options import (
    CONNECTION,
    LOG_LEVEL,
    TOKEN_ENV,
    ExitCode,
    configure_logging,
    connection_options,
    resolve,
    resolve_all,
)
from sparc_video.cli.output import Output, notice, silence_stdout
from sparc_video.client import ChannelClient, DownloadError, ServiceError, open_channel

UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
C = TypeVar("C", bound=ChannelClient)
P = ParamSpec("P")


class UsageError(Exception):
    """Flags that do not make sense together, found after parsing: exit 2 with the usage."""


@dataclass(frozen=True)
class Session(Output):
    """The resolved global options of one client command."""

    target: str
    tls: bool
    ca_cert: Path | None
    client_cert: Path | None
    client_key: Path | None
    server_name: str | None
    token_file: Path | None
    plaintext_token: bool
    timeout: float

    def _credentials(self) -> dict[str, Any]:
        token = os.environ.get(TOKEN_ENV) or None
        if self.token_file is not None:
            token = self.token_file.read_text().strip()

        def pem(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        return {
            "tls": self.tls or bool(self.ca_cert or self.client_cert or self.client_key),
            "ca_cert": pem(self.ca_cert),
            "client_cert": pem(self.client_cert),
            "client_key": pem(self.client_key),
            "token": token,
            "plaintext_token": self.plaintext_token,
            "server_name": self.server_name,
        }

    def connect(self, client_type: type[C]) -> C:
        return client_type(self.target, timeout=self.timeout, **self._credentials())

    def channel(self) -> grpc.aio.Channel:
        """A channel with the client's settings, for a request the client has no method for."""
        return open_channel(self.target, **self._credentials())


def client_command(
    client_type: type[C],
) -> Callable[[Callable[Concatenate[Session, C, P], Coroutine[Any, Any, int]]], Callable[P, int]]:
    """Makes `async def handler(session, client, **params) -> exit code` a click callback: the
    global options are taken out of the params, a `client_type` is connected, and errors become
    exit codes. Apply it below `@click.command` and the option decorators."""

    def decorate(
        handler: Callable[Concatenate[Session, C, P], Coroutine[Any, Any, int]],
    ) -> Callable[P, int]:
        @functools.wraps(handler)
        def callback(*args: P.args, **params: P.kwargs) -> int:
            ctx = click.get_current_context()
            for option in (LOG_LEVEL, *CONNECTION):
                params.pop(option.name, None)
            configure_logging(resolve(ctx, LOG_LEVEL.name))
            session = Session(**resolve_all(ctx, CONNECTION))
            return run(ctx, session, lambda: _call(session, client_type, handler, args, params))

        return connection_options(callback)

    return decorate


async def _call(
    session: Session,
    client_type: type[C],
    handler: Callable[..., Coroutine[Any, Any, int]],
    args: Any,
    params: Any,
) -> int:
    try:
        client = session.connect(client_type)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    async with client:
        try:
            code: int = await handler(session, client, *args, **params)
            return code
        except ServiceError as exc:
            report_error(session, exc)
            return ExitCode.UNREACHABLE if exc.code in UNREACHABLE_CODES else ExitCode.REFUSED
        except DownloadError as exc:
            session.report({"error": {"kind": "download", "message": str(exc)}})
            notice(f"sparc-video: download failed: {exc}")
            return ExitCode.DOWNLOAD


def run(ctx: click.Context, output: Output, main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        return asyncio.run(main())
    except UsageError as exc:
        raise click.UsageError(str(exc), ctx) from None
    except BrokenPipeError:
        silence_stdout()
        return ExitCode.BROKEN_PIPE


def report_error(session: Session, error: ServiceError) -> None:
    session.report(
        {
            "error": {
                "code": error.code.name,
                "message": error.message,
                "reason": error.reason,
                "domain": error.domain,
                "metadata": error.metadata,
                "fieldViolations": [
                    {"field": v.field, "description": v.description} for v in error.field_violations
                ],
            }
        }
    )
    hint = f" (target {session.target})" if error.code in UNREACHABLE_CODES else ""
    notice(f"sparc-video: {error}{hint}")
