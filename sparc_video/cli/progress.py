"""Progress output of the CLI: a rich bar redrawn in place on a terminal, plain lines elsewhere.

A log file or CI console does not interpret carriage returns, so redrawing there would leave
hundreds of half lines; without a TTY, progress is printed as whole lines at coarse steps.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import TextIO

from google.protobuf import duration_pb2, timestamp_pb2
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.client import DownloadedFile, ServiceError, error_from_status

Export = export_pb2.Export

MODES = ("auto", "bar", "plain", "none")
# Plain lines are printed when progress crosses the next multiple of this many percent.
PLAIN_STEP_PERCENT = 10.0
REDRAW_INTERVAL_S = 0.1


def state_name(state: Export.State.ValueType) -> str:
    return Export.State.Name(state).removeprefix("STATE_")


def seconds(value: duration_pb2.Duration) -> float:
    return value.seconds + value.nanos / 1e9


def media_time(total: float) -> str:
    """`HH:MM:SS.ss`, the way media players show a position."""
    hours, rest = divmod(max(0.0, total), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{secs:05.2f}"


def clock(total: float) -> str:
    """`M:SS` or `H:MM:SS`, for an ETA."""
    whole = round(max(0.0, total))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def utc(value: timestamp_pb2.Timestamp) -> str:
    if not value.seconds and not value.nanos:
        return "-"
    moment = datetime.datetime.fromtimestamp(value.seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


class Display:
    """One output stream for progress: bars redrawn in place by rich (`bar`), whole lines
    (`plain`), or nothing (`none`); `auto` picks `bar` on a terminal and `plain` otherwise.

    A bar lasts until `end_bar()` (or a `line()`), which leaves it on screen as it is."""

    def __init__(self, stream: TextIO, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}")
        if mode == "auto":
            terminal = stream.isatty() and os.environ.get("TERM") != "dumb"
            mode = "bar" if terminal else "plain"
        self.mode = mode
        self.stream = stream
        self._console = Console(
            file=stream, force_terminal=mode == "bar" or None, highlight=False, soft_wrap=True
        )
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._label = ""

    @property
    def redraws(self) -> bool:
        return self.mode == "bar"

    def line(self, text: str) -> None:
        if self.mode == "none":
            return
        self.end_bar()
        self.stream.write(text + "\n")
        self.stream.flush()

    def draw(self, fraction: float, label: str, detail: str, *, force: bool = False) -> None:
        """Show the bar `label` at `fraction` (a new bar when the label changes); rich redraws
        it REDRAW_INTERVAL_S apart, or now with `force`."""
        if self.mode != "bar":
            return
        if self._progress is None or label != self._label:
            self.end_bar()
            self._progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(bar_width=40),
                TextColumn("{task.fields[detail]}", markup=False),
                console=self._console,
                refresh_per_second=1 / REDRAW_INTERVAL_S,
            )
            self._task = self._progress.add_task(label, total=1.0, detail=detail)
            self._label = label
            self._progress.start()
        assert self._task is not None
        done = max(0.0, min(1.0, fraction))
        self._progress.update(self._task, completed=done, detail=detail)
        if force:
            self._progress.refresh()

    def end_bar(self) -> None:
        """Leave the current bar on screen as it is and move below it."""
        if self._progress is not None:
            self._progress.refresh()
            self._progress.stop()
            self._progress = None
            self._task = None


def export_error_text(export: Export) -> str:
    if not export.HasField("error"):
        return ""
    error = error_from_status(export.error)
    return f"{error.reason or error.code.name}: {error.message}"


class WatchView:
    """Renders a WatchExport stream: a line per state change, a bar per pass (operation)."""

    def __init__(self, display: Display) -> None:
        self.display = display
        self._state: tuple[int, int] | None = None
        self._pass: tuple[int, int] | None = None
        self._bar: tuple[str, str] | None = None
        self._next_plain_percent = 0.0

    def update(self, message: export_service_pb2.WatchExportResponse) -> None:
        export = message.export
        if (export.state, export.attempt) != self._state:
            if export.state == Export.STATE_SUCCEEDED and self._bar is not None:
                # Fast passes can end between two progress events: show the bar full.
                self.display.draw(1.0, self._bar[0], "100.0%", force=True)
            self._state = (export.state, export.attempt)
            self._bar = None
            self._pass = None
            self.display.line(self.state_line(export))
        if export.state == Export.STATE_RUNNING and export.progress.operation_count:
            self._progress(export.progress, export.attempt)

    def reconnecting(self, error: ServiceError, delay_s: float) -> None:
        self.display.line(
            f"connection lost ({error.code.name}: {error.message}); resuming in {delay_s:.1f} s"
        )

    def state_line(self, export: Export) -> str:
        text = f"{export.name}: {state_name(export.state)}"
        if export.state == Export.STATE_RUNNING:
            text += f" (attempt {export.attempt})"
        elif export.state == Export.STATE_RETRYING:
            text += f" after attempt {export.attempt}: {export_error_text(export)}"
            if export.HasField("next_attempt_time"):
                text += f"; next attempt at {utc(export.next_attempt_time)}"
        elif export.state == Export.STATE_SUCCEEDED:
            took = export.end_time.seconds - export.create_time.seconds
            text += f" in {clock(took)}, {len(export.outputs)} output(s)"
        elif export.state == Export.STATE_FAILED:
            text += f": {export_error_text(export)}"
        return text

    def _progress(self, progress: export_pb2.Progress, attempt: int) -> None:
        key = (attempt, progress.operation_index)
        new_pass = key != self._pass
        if new_pass:
            self.display.end_bar()
            self._pass = key
        label = (
            f"[{progress.operation_index + 1}/{progress.operation_count} "
            f"{progress.current_operation}]"
        )
        detail = f"{progress.percent:5.1f}%  {media_time(seconds(progress.timemark))}"
        if progress.fps:
            detail += f"  {progress.fps:.0f} fps"
        if progress.speed:
            detail += f"  {progress.speed:.2f}x"
        if progress.HasField("eta"):
            detail += f"  ETA {clock(seconds(progress.eta))}"
        if self.display.redraws:
            self._bar = (label, detail)
            self.display.draw(progress.percent / 100, label, detail, force=new_pass)
        elif new_pass or progress.percent >= self._next_plain_percent:
            step = PLAIN_STEP_PERCENT
            self._next_plain_percent = (progress.percent // step + 1) * step
            self.display.line(f"{label} {detail.strip()}")

    def finish(self) -> None:
        self.display.end_bar()


class DownloadView:
    """Byte progress of `download_outputs` (implements client.DownloadProgress)."""

    def __init__(self, display: Display) -> None:
        self.display = display
        self._name = ""
        self._total = 0
        self._start = 0.0
        self._next_plain = 0.0

    def started(self, output: export_pb2.Output, path: Path) -> None:
        self._name = path.name
        self._total = output.size_bytes
        self._start = time.monotonic()
        self._next_plain = 0.0
        self.display.draw(0.0, self._name, f"0 B / {size(self._total)}", force=True)

    def advanced(self, done_bytes: int) -> None:
        fraction = done_bytes / self._total if self._total else 1.0
        if self.display.redraws:
            elapsed = max(1e-6, time.monotonic() - self._start)
            detail = (
                f"{fraction * 100:5.1f}%  {size(done_bytes)} / {size(self._total)}  "
                f"{size(done_bytes / elapsed)}/s"
            )
            self.display.draw(fraction, self._name, detail)
        elif fraction * 100 >= self._next_plain and fraction < 1.0:
            self._next_plain = (fraction * 100 // 25 + 1) * 25
            self.display.line(f"{self._name}: {fraction * 100:.0f}% of {size(self._total)}")

    def finished(self, result: DownloadedFile) -> None:
        how = "already present" if result.already_present else "downloaded"
        if self.display.redraws and not result.already_present:
            self.display.draw(1.0, self._name, f"100.0%  {size(result.size_bytes)}", force=True)
        self.display.line(
            f"{result.path}: {how}, {size(result.size_bytes)}, sha256 {result.sha256[:16]}… ok"
        )
