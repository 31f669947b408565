"""The burned-in capture clock: each frame shows base time + its time in the source, read back
from the decoded output by matching the clock's area against renderings of candidate texts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import grpc
import numpy as np
import numpy.typing as npt
import pytest
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.api.exports.mapping import operation_to_proto
from sparc_video.api.exports.requests import validate_operations
from sparc_video.core.errors import FieldViolation, PermanentProcessingError
from sparc_video.core.settings import Settings
from sparc_video.exports.models import ExportRecord
from sparc_video.exports.operations import (
    Operation,
    TranscodeOp,
    TrimOp,
    WatermarkClock,
    WatermarkOp,
)
from sparc_video.media import capture_clock
from tests.camera_helpers import expect_error, violation_fields
from tests.fixtures.service import RunningService, start_service
from tests.media import make_clip, read_frame_index
from tests.test_export_e2e import create_request, fetch, watch_to_end
from tests.test_redact import REGION
from workers.pipeline.filters import LiveOverlay, Overlay
from workers.pipeline.wall_clock import ClockPart, WallClock
from workers.pipeline.watermark import watermark_overlay
from workers.sandbox.child import run_plan

FPS = 30
# 12:00:00.600 UTC: the second changes 0.4 s and 1.4 s into the source.
BASE = datetime(2024, 5, 1, 12, 0, 0, 600_000, tzinfo=UTC)
BASE_NS = (BASE - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
# Berlin is UTC+2 in May.
CLOCK = WatermarkClock(format="%H:%M:%S", base_time_ns=BASE_NS, time_zone="Europe/Berlin")
OP = WatermarkOp(clock=CLOCK, position="center", scale=0.8)
Op = export_pb2.Operation
Clock = export_pb2.WatermarkOptions.Clock
Redact = export_pb2.RedactOptions


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clock") / "clip.mp4", duration_s=2.0)


def expected(source_s: float) -> str:
    return f"{(BASE + timedelta(seconds=source_s)).astimezone(_BERLIN):%H:%M:%S}"


_BERLIN = capture_clock.time_zone("Europe/Berlin")


def references(op: WatermarkOp) -> dict[str, Overlay]:
    """The clock's picture for each second the clip spans, by its text."""
    live = watermark_overlay(op, 320, 240, {})
    assert isinstance(live, LiveOverlay)
    found: dict[str, Overlay] = {}
    for source_s in (0.0, 1.0, 1.9):
        text, overlay = live.at(source_s)
        assert text == expected(source_s)
        found[text] = overlay
    assert sorted(found) == ["14:00:00", "14:00:01", "14:00:02"]
    return found


def read_clock(rgb: npt.NDArray[np.uint8], candidates: dict[str, Overlay]) -> tuple[str, float]:
    """The candidate whose opaque pixels (glyphs and outline) the frame shows, and its error."""
    errors = {}
    for text, overlay in candidates.items():
        area = rgb[overlay.y : overlay.y + overlay.height, overlay.x : overlay.x + overlay.width]
        opaque = overlay.image[:, :, 3] == 255
        diff = np.abs(area.astype(np.float32) - overlay.image[:, :, :3].astype(np.float32))
        errors[text] = float(diff[opaque].mean())
    best, runner_up = sorted(errors, key=lambda t: errors[t])[:2]
    # Unambiguous: the other texts differ where their digits differ.
    assert errors[runner_up] > 3 * errors[best], errors
    return best, errors[best]


def decoded(path: Path) -> list[tuple[float, int, npt.NDArray[np.uint8]]]:
    """(output time, frame index, RGB) of each frame."""
    found = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert frame.pts is not None and frame.time_base is not None
            rgb = frame.to_ndarray(format="rgb24")
            found.append((float(frame.pts * frame.time_base), read_frame_index(rgb), rgb))
    return found


def run(clip: Path, tmp_path: Path, *ops: Operation, **kwargs: object) -> Path:
    files = run_plan(clip, tmp_path / "work", list(ops), lambda _: None, **kwargs)  # type: ignore[arg-type]
    return files[0].path


def test_the_clock_runs_with_the_frames(clip: Path, tmp_path: Path) -> None:
    candidates = references(OP)
    frames = decoded(run(clip, tmp_path, OP, TranscodeOp(preset="ultrafast")))
    assert len(frames) == 60
    for at_s, index, rgb in frames:
        assert abs(at_s - index / FPS) < 1e-3
        text, error = read_clock(rgb, candidates)
        assert text == expected(at_s), (index, text)
        assert error < 6, (index, error)
    # Frames far apart show different seconds; within a second the clock's pixels agree.
    assert read_clock(frames[5][2], candidates)[0] == "14:00:00"
    assert read_clock(frames[55][2], candidates)[0] == "14:00:02"


def test_after_a_trim_the_clock_shows_the_source_frames_time(clip: Path, tmp_path: Path) -> None:
    candidates = references(OP)
    frames = decoded(run(clip, tmp_path, TrimOp(start_s=1.0), OP, TranscodeOp(preset="ultrafast")))
    assert [index for _, index, _ in frames] == list(range(30, 60))
    for at_s, index, rgb in frames:
        source_s = 1.0 + at_s  # the trim's start plus the output frame's time
        assert abs(source_s - index / FPS) < 1e-3
        assert read_clock(rgb, candidates)[0] == expected(source_s), index


def test_pictures_are_rendered_once_per_distinct_text() -> None:
    live = watermark_overlay(OP, 320, 240, {})
    assert isinstance(live, LiveOverlay)
    first = live.at(0.0)[1]
    assert live.at(0.2)[1] is first  # the same second: the cached picture
    later = live.at(0.5)[1]
    assert later is not first
    # Sized for the widest digits: the clock keeps its place as the digits change.
    assert (later.x, later.y, later.width, later.height) == (
        first.x, first.y, first.width, first.height,
    )  # fmt: skip


def test_text_and_milliseconds() -> None:
    op = WatermarkOp(text="Cam 7", clock=WatermarkClock("%Y-%m-%d %H:%M:%S.%L %%", BASE_NS))
    live = watermark_overlay(op, 320, 240, {})
    assert isinstance(live, LiveOverlay)
    assert live.at(1.0)[0] == "Cam 7 2024-05-01 12:00:01.600 %"
    # 0.4 s is exactly where the second turns; times are not rounded up into the next one.
    assert live.at(0.4)[0] == "Cam 7 2024-05-01 12:00:01.000 %"
    assert live.at(float(Fraction(1, 30)))[0] == "Cam 7 2024-05-01 12:00:00.633 %"


def test_without_a_base_time_the_clock_shows_the_sources_capture_time(
    clip: Path, tmp_path: Path
) -> None:
    op = WatermarkOp(clock=WatermarkClock("%H:%M:%S"), position="center", scale=0.8)
    start = datetime(2024, 5, 1, 12, 0, 0, 600_000, tzinfo=UTC)
    start_ns = int(start.timestamp()) * 10**9 + 600_000_000
    # A camera range whose gap of 9 s was closed after the first second of footage.
    closed_gap = WallClock(
        (ClockPart(0.0, 1.0, start_ns), ClockPart(1.0, 1.0, start_ns + 10 * 10**9))
    )
    live = watermark_overlay(op, 320, 240, {}, closed_gap.capture_time)
    assert isinstance(live, LiveOverlay)
    assert live.at(0.5)[0] == "12:00:01"
    assert live.at(1.5)[0] == "12:00:11"
    # An explicit base time wins over the source's.
    based = WatermarkOp(clock=WatermarkClock("%H:%M:%S", base_time_ns=0), position="center")
    based_live = watermark_overlay(based, 320, 240, {}, closed_gap.capture_time)
    assert isinstance(based_live, LiveOverlay) and based_live.at(1.5)[0] == "00:00:01"
    with pytest.raises(PermanentProcessingError) as info:
        run(clip, tmp_path, op)
    assert info.value.reason == "NO_CAPTURE_TIME"
    frames = decoded(run(clip, tmp_path / "known", op, wall_clock=closed_gap))
    assert len(frames) == 60
    candidates = dict(live.at(t) for t in (0.5, 1.5))
    assert read_clock(frames[15][2], candidates)[0] == "12:00:01"
    assert read_clock(frames[45][2], candidates)[0] == "12:00:11"


def test_clock_formats() -> None:
    with pytest.raises(ValueError, match="%A is not a clock field"):
        capture_clock.parse_format("%A %H")
    with pytest.raises(ValueError, match="no clock field"):
        capture_clock.parse_format("just text")
    with pytest.raises(ValueError, match="lone %"):
        capture_clock.parse_format("%H %")
    with pytest.raises(ValueError):
        capture_clock.time_zone("../../etc/passwd")
    with pytest.raises(ValueError):
        capture_clock.time_zone("Mars/Olympus")


def test_validation_names_each_bad_clock_field() -> None:
    base = Clock()
    base.base_time.FromNanoseconds(BASE_NS)
    bad = [
        Op(watermark=export_pb2.WatermarkOptions(image_object_key="a.png", clock=base)),
        Op(watermark=export_pb2.WatermarkOptions(clock=Clock(format="%c", time_zone="Nowhere"))),
    ]
    violations: list[FieldViolation] = []
    validate_operations(bad, "ops", violations)
    assert sorted(v.field for v in violations) == [
        "ops[0].watermark.clock",
        "ops[1].watermark.clock.format",
        "ops[1].watermark.clock.time_zone",
    ]


def test_clock_round_trips_through_the_record_and_the_api() -> None:
    op = WatermarkOp(text="Cam 7", clock=CLOCK)
    record = ExportRecord(id="x", source_key="a.mp4", operations=[op])
    assert ExportRecord.from_json_dict(record.to_json_dict()).operations == [op]
    violations: list[FieldViolation] = []
    assert validate_operations([operation_to_proto(op)], "ops", violations) == [op]
    assert violations == []
    alone = WatermarkOp(clock=WatermarkClock())
    assert validate_operations([operation_to_proto(alone)], "ops", violations) == [alone]
    assert violations == []


async def test_an_object_source_needs_a_base_time(api_only: RunningService) -> None:
    request = create_request("in/x.mp4", Op(watermark=export_pb2.WatermarkOptions(clock=Clock())))
    error = await expect_error(
        api_only.exports.CreateExport(request), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert violation_fields(error) == ["export.operations[0].watermark.clock.base_time"]


async def test_redaction_and_clock_through_the_service(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """CreateExport → record → worker → media child: one pass redacts and burns the clock."""
    clip = await asyncio.to_thread(make_clip, tmp_path / "in.mp4", duration_s=2.0)
    region = Redact.Region(x=REGION.x, y=REGION.y, width=REGION.width, height=REGION.height)
    clock = Clock(format="%H:%M:%S", time_zone="Europe/Berlin")
    clock.base_time.FromNanoseconds(BASE_NS)
    async with start_service(service_settings()) as service:
        await service.app.storage.upload_file(clip, "cams/gate.mp4", "video/mp4")
        created = await service.exports.CreateExport(
            create_request(
                "cams/gate.mp4",
                Op(redact=Redact(regions=[region], start="1", mode=Redact.MODE_PIXELATE)),
                Op(
                    watermark=export_pb2.WatermarkOptions(
                        clock=clock,
                        position=export_pb2.WatermarkOptions.POSITION_CENTER,
                        scale=0.8,
                    )
                ),
                Op(transcode=export_pb2.TranscodeOptions(preset="ultrafast")),
            )
        )
        messages = await watch_to_end(service, created.name)
        final = messages[-1].export
        assert final.state == export_pb2.Export.STATE_SUCCEEDED, final.error
        labels = {m.export.progress.current_operation for m in messages}
        assert "redact+watermark+transcode" in labels
        urls = await service.exports.GetExportDownloadUrl(
            export_service_pb2.GetExportDownloadUrlRequest(name=created.name)
        )
        (tmp_path / "out.mp4").write_bytes(await fetch(urls.urls[0].url))
    candidates = references(OP)
    frames = decoded(tmp_path / "out.mp4")
    assert len(frames) == 60
    source = {index: rgb for _, index, rgb in decoded(clip)}
    for at_s, index, rgb in frames[::6]:
        assert read_clock(rgb, candidates)[0] == expected(at_s), index
        # Redacted from 1 s on: the part of the region left of the clock's text.
        part = (slice(150, 178), slice(80, 240))
        changed = np.abs(rgb[part].astype(float) - source[index][part].astype(float)).mean()
        assert (changed > 8) == (index >= 30), (index, changed)
