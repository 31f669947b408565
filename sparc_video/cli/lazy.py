"""Subcommands imported when they are named: `sparc-video export get X` imports the export
commands and the gRPC client, not the simulator, the settings model or PyAV that other commands
need (importing every command took longer than most commands take to run).

A `LazyGroup` names each lazy subcommand by `"module:attribute"`. Its help lists a subcommand
from the one-line summary given with it, if any, without importing it (tests hold each summary
equal to the command's own short help); one given without a summary is imported to be listed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import click

from sparc_video.cli.options import SparcGroup


class LazyGroup(SparcGroup):
    """A SparcGroup whose `lazy` subcommands (name: "module:attribute") are imported when first
    resolved, with `summaries` (name: short help) to list them, and `plugins`, run once when a
    name is neither declared nor lazy or when the group lists its commands, to add the rest."""

    def __init__(
        self,
        *args: Any,
        lazy: Mapping[str, str] | None = None,
        summaries: Mapping[str, str] | None = None,
        plugins: Callable[[click.Group], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self.summaries = dict(summaries or {})
        self.plugins = plugins

    def _add_plugins(self) -> None:
        plugins, self.plugins = self.plugins, None
        if plugins is not None:
            plugins(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugins()
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        elif cmd_name not in self.commands:
            self._add_plugins()
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            # click suggests from the commands already loaded; suggest from all of them.
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with a summary standing in for each command not yet imported."""
        listed: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            if name not in self.commands and name in self.summaries:
                listed.append((name, click.Command(name, help=self.summaries[name])))
            elif (command := self.get_command(ctx, name)) is not None and not command.hidden:
                listed.append((name, command))
        if listed:
            limit = formatter.width - 6 - max(len(name) for name, _ in listed)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in listed])
