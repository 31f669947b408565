"""Exports as text, for people: `export get`, the end of `export watch`."""

from __future__ import annotations

from sparc.video.v1 import export_pb2

from sparc_video.cli.operations import describe_operation, source_text
from sparc_video.cli.progress import export_error_text, media_time, seconds, size, state_name, utc

Export = export_pb2.Export


def describe_export(export: Export) -> str:
    lines = [f"{export.name}  {state_name(export.state)}"]

    def field(label: str, value: str) -> None:
        lines.append(f"  {label + ':':<12}{value}")

    field("source", source_text(export.source))
    if export.HasField("capture_start_time"):
        field("captured", f"from {utc(export.capture_start_time)}")
    if export.HasField("coverage"):
        coverage = export.coverage
        covered = seconds(coverage.covered_duration)
        gap = seconds(coverage.gap_duration)
        field("coverage", f"{covered:.2f} s of footage, {gap:.2f} s without")
        for span in coverage.spans:
            field("", f"{utc(span.start_time)} - {utc(span.end_time)}  {span.recording}")
        for hole in coverage.gaps:
            field("", f"{utc(hole.start_time)} - {utc(hole.end_time)}  NO RECORDING")
    for index, operation in enumerate(export.operations):
        field("operations" if index == 0 else "", f"{index + 1}. {describe_operation(operation)}")
    if export.attempt:
        field("attempt", str(export.attempt))
    if export.request_id:
        field("request id", export.request_id)
    if export.requester:
        field("requester", export.requester)
    if export.case_id:
        field("case", export.case_id)
    if export.purpose:
        field("purpose", export.purpose.replace("\n", " "))
    field("created", utc(export.create_time))
    if export.HasField("start_time"):
        field("started", utc(export.start_time))
    if export.HasField("end_time"):
        took = export.end_time.seconds - export.create_time.seconds
        field("ended", f"{utc(export.end_time)} ({took} s after creation)")
    if export.state == Export.STATE_RUNNING:
        progress = export.progress
        field(
            "progress",
            f"{progress.percent:.1f}% {progress.current_operation} "
            f"({progress.operation_index + 1}/{progress.operation_count}) at "
            f"{media_time(seconds(progress.timemark))}",
        )
    if export.HasField("next_attempt_time"):
        field("next try", utc(export.next_attempt_time))
    for index, output in enumerate(export.outputs):
        detail = [output.storage_key, output.content_type]
        if output.width:
            detail.append(f"{output.width}x{output.height}")
        if output.kind == export_pb2.Output.KIND_VIDEO:
            detail.append(f"{seconds(output.duration):.2f} s {output.video_codec}")
        else:
            detail.append(f"at {media_time(seconds(output.timestamp))}")
        detail += [size(output.size_bytes), f"sha256 {output.sha256[:16]}…"]
        field("outputs" if index == 0 else "", "  ".join(detail))
    if export.HasField("manifest"):
        field("manifest", f"{export.manifest.storage_key}  signed by {export.manifest.key_id}")
    if export.download_grants:
        last = export.download_grants[-1]
        field(
            "downloads",
            f"{len(export.download_grants)} grant(s), last {utc(last.grant_time)}"
            + (f" to {last.requester}" if last.requester else ""),
        )
    error = export_error_text(export)
    if error:
        field("error", error)
    return "\n".join(lines)
