"""`sparc-video camera record|status|timeline`: a camera's continuous recording: its policy,
what its recorder reports, and its timeline of recorded spans and gaps with their reasons."""

from __future__ import annotations

import datetime
import re

import click
from google.protobuf import timestamp_pb2
from sparc.video.v1 import camera_pb2, camera_service_pb2

from sparc_video.cli.cameras import name_argument
from sparc_video.cli.operations import timestamp_option
from sparc_video.cli.options import ExitCode, SparcCommand, client_exits
from sparc_video.cli.output import print_json, print_table
from sparc_video.cli.progress import seconds, utc
from sparc_video.cli.runner import Session, UsageError, client_command
from sparc_video.client.cameras import AsyncCameraClient, Camera

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A click callback: `60s`, `1.5m`, `1h`, `500ms` or plain seconds, as seconds."""
    if value is None:
        return None
    found = _DURATION_RE.match(value)
    if found is None:
        raise click.BadParameter(f"{value!r}: use e.g. 60s, 1.5m, 1h or 500ms", ctx, param)
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


@click.command("record", cls=SparcCommand, exit_codes=client_exits())
@name_argument
@click.option("--on/--off", "on", default=None, help="record continuously, or stop")
@click.option(
    "--segment",
    callback=duration_option,
    metavar="DURATION",
    help="segment length, e.g. 60s or 2m (0.5 s to 1 h)",
)
@click.option(
    "--retention-days",
    type=click.IntRange(min=0),
    metavar="N",
    help="days segments are kept; 0: the service default",
)
@client_command(AsyncCameraClient)
async def record(
    session: Session,
    client: AsyncCameraClient,
    name: str,
    on: bool | None,
    segment: float | None,
    retention_days: int | None,
) -> int:
    """Set camera NAME's recording policy: the flags given change, the rest stay."""
    if on is None and segment is None and retention_days is None:
        raise UsageError("give --on or --off, --segment or --retention-days")
    updated = await client.set_recording_policy(
        name, continuous=on, segment_duration=segment, retention_days=retention_days
    )
    session.message(updated, describe_recording(updated))
    return ExitCode.OK


@click.command("status", cls=SparcCommand, exit_codes=client_exits())
@name_argument
@click.option(
    "--watch", is_flag=True, help="then print every change the recorder reports, until Ctrl-C"
)
@client_command(AsyncCameraClient)
async def status(session: Session, client: AsyncCameraClient, name: str, watch: bool) -> int:
    """Show camera NAME's recording policy and what its recorder last reported."""
    found = await client.get_camera(name)
    if session.json:
        print_json(
            camera_pb2.Camera(
                name=found.name,
                recording_policy=found.recording_policy,
                recording_status=found.recording_status,
            )
        )
    else:
        print(describe_recording(found), flush=True)
    if not watch:
        return ExitCode.OK
    async for change in client.watch_camera(name):
        if not change.event_id:
            continue  # the status now: shown above
        if session.json:
            print_json(change)
        else:
            print(f"{utc(_now())}  {describe_status(change.recording_status)}", flush=True)
    return ExitCode.OK


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def describe_status(state: camera_pb2.RecordingStatus) -> str:
    parts = [camera_pb2.RecordingStatus.State.Name(state.state).removeprefix("STATE_")]
    if state.recorder:
        parts.append(f"recorder {state.recorder}")
    if state.bitrate_bps:
        parts.append(f"{state.bitrate_bps / 1000:.0f} kbit/s")
    if state.fps:
        parts.append(f"{state.fps:g} fps")
    if state.last_error:
        parts.append(f"error: {state.last_error}")
    return "  ".join(parts)


@click.command("timeline", cls=SparcCommand, exit_codes=client_exits())
@name_argument
@click.option(
    "--from",
    "start",
    callback=timestamp_option,
    required=True,
    metavar="TIME",
    help="range start, ISO 8601 with a timezone",
)
@click.option(
    "--to",
    "end",
    callback=timestamp_option,
    required=True,
    metavar="TIME",
    help="range end (exclusive)",
)
@client_command(AsyncCameraClient)
async def timeline(
    session: Session,
    client: AsyncCameraClient,
    name: str,
    start: datetime.datetime,
    end: datetime.datetime,
) -> int:
    """List camera NAME's recorded spans and the gaps between them, with why each gap is."""
    found = await client.get_camera_timeline(name, start, end)
    if session.json:
        print_json(found)
        return ExitCode.OK
    rows: list[tuple[float, tuple[str, ...]]] = []
    for span in found.spans:
        length = _length(span.start_time, span.end_time)
        rows.append(
            (
                span.start_time.ToNanoseconds(),
                ("RECORDED", utc(span.start_time), utc(span.end_time), length, ""),
            )
        )
    for gap in found.gaps:
        why = camera_service_pb2.TimelineGap.Reason.Name(gap.reason).removeprefix("REASON_")
        why = "UNKNOWN" if why == "UNSPECIFIED" else why
        if gap.detail:
            why = f"{why}: {gap.detail}"
        length = _length(gap.start_time, gap.end_time)
        rows.append(
            (
                gap.start_time.ToNanoseconds(),
                ("GAP", utc(gap.start_time), utc(gap.end_time), length, why),
            )
        )
    rows.sort(key=lambda row: row[0])
    print_table([row for _, row in rows], ("KIND", "START", "END", "LENGTH", "REASON"))
    return ExitCode.OK


def _length(start: timestamp_pb2.Timestamp, end: timestamp_pb2.Timestamp) -> str:
    return f"{(end.ToNanoseconds() - start.ToNanoseconds()) / 1e9:g}s"


def describe_recording(camera: Camera) -> str:
    policy, state = camera.recording_policy, camera.recording_status
    mode = camera_pb2.RecordingPolicy.Mode.Name(policy.mode).removeprefix("MODE_")
    lines = [f"{camera.name}  recording {'OFF' if mode == 'UNSPECIFIED' else mode}"]

    def field(label_text: str, value: str) -> None:
        if value:
            lines.append(f"  {label_text + ':':<14}{value}")

    field("segment", f"{seconds(policy.segment_duration):g}s")
    field("retention", f"{policy.retention_days} days" if policy.retention_days else "default")
    field("state", camera_pb2.RecordingStatus.State.Name(state.state).removeprefix("STATE_"))
    field("recorder", state.recorder)
    if state.HasField("last_packet_time"):
        field("last packet", utc(state.last_packet_time))
    if state.bitrate_bps:
        field("bitrate", f"{state.bitrate_bps / 1000:.0f} kbit/s")
    if state.fps:
        field("fps", f"{state.fps:g}")
    field("last error", state.last_error)
    return "\n".join(lines)
