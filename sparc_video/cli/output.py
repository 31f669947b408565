"""Output of the client commands: results on stdout (text, tables, or protobuf JSON with
`--format json`), notices and errors on stderr, so `name=$(sparc-video export create ...)`
captures just the name. A closed stdout (`| head`) ends a command quietly."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Output:
    """Where a command's results go, in the format the caller chose (`text` or `json`)."""

    output_format: str

    @property
    def json(self) -> bool:
        return self.output_format == "json"

    def message(self, message: Message, text: str) -> None:
        """A protobuf result: as JSON, or as `text`."""
        if self.json:
            print_json(message)
        else:
            print(text, flush=True)

    def data(self, data: dict[str, Any], text: str) -> None:
        if self.json:
            print(json.dumps(data), flush=True)
        else:
            print(text, flush=True)

    def report(self, data: dict[str, Any]) -> None:
        """In JSON mode, errors also go to stdout as an object, for scripts that parse it."""
        if self.json:
            print(json.dumps(data), flush=True)


def as_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def print_json(message: Message) -> None:
    print(json.dumps(as_json(message), indent=2), flush=True)


def notice(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def more(token: str) -> None:
    """The token of the next page of a listing, on stderr."""
    if token:
        notice(f"more: --page-token {token}")


def table(rows: Sequence[Sequence[str]], headers: Sequence[str] = ()) -> str:
    """Columns aligned with two spaces between them; no borders, no wrapping (a script can
    `split()` each line). The header row, if any, comes first."""
    grid = Table(box=None, pad_edge=False, show_header=bool(headers), show_edge=False)
    columns = len(headers) if headers else len(rows[0]) if rows else 0
    for index in range(columns):
        grid.add_column(Text(headers[index]) if headers else "", no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*(Text(cell) for cell in row))
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, highlight=False).print(grid)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def print_table(rows: Sequence[Sequence[str]], headers: Sequence[str] = ()) -> None:
    print(table(rows, headers), flush=True)


def silence_stdout() -> None:
    """After a broken pipe: send what is still buffered for stdout nowhere, so Python's flush at
    exit does not print a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
