"""Privacy redaction: regions blurred or pixelated, only there and only during their span,
checked by decoding the outputs with PyAV and comparing them with the source frame by frame
(every frame of tests/media.py's clips carries its index, outside the regions used here)."""

from __future__ import annotations

from pathlib import Path

import av
import grpc
import numpy as np
import numpy.typing as npt
import pytest
from sparc.video.v1 import export_pb2

from sparc_video.api.exports.mapping import operation_to_proto
from sparc_video.api.exports.requests import MAX_REDACT_REGIONS, validate_operations
from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.exports.models import (
    CompressOp,
    ExportRecord,
    Operation,
    OutputKind,
    RedactOp,
    RedactRegion,
    ThumbnailOp,
    Timestamp,
    TranscodeOp,
    TrimOp,
    WatermarkOp,
)
from sparc_video.exports.plan import compile_plan
from tests.camera_helpers import expect_error, violation_fields
from tests.fixtures.service import RunningService
from tests.media import make_clip, read_frame_index
from tests.test_export_e2e import create_request
from workers.pipeline.redact import redaction
from workers.sandbox.child import ChildProgress, ProducedFile, run_plan

FPS = 30
# The middle of the picture, below the index strip: x 80-240, y 90-180 on 320x240.
REGION = RedactRegion(0.25, 0.375, 0.5, 0.375)
BOX = (slice(90, 180), slice(80, 240))
# Compared with the source to check that nothing else changed (right of the region, below
# the strip, away from the watermark corner).
OUTSIDE = (slice(40, 180), slice(250, 316))
# Fine detail left by a blur, as a share of the source's (an untouched region keeps > 0.7).
BLURRED = 0.15
Op = export_pb2.Operation
Redact = export_pb2.RedactOptions


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """320x240, 2 s at 30 fps: noisy texture, so a blur or pixelation shows."""
    return make_clip(tmp_path_factory.mktemp("redact") / "clip.mp4", duration_s=2.0)


@pytest.fixture(scope="module")
def source(clip: Path) -> dict[int, npt.NDArray[np.float32]]:
    return {index: luma for index, luma in frames(clip)}


def frames(path: Path) -> list[tuple[int, npt.NDArray[np.float32]]]:
    """(frame index, luma) of each frame of `path`."""
    found = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            found.append((read_frame_index(rgb), rgb.astype(np.float32).mean(axis=2)))
    return found


def run(source: Path, tmp_path: Path, *ops: Operation) -> tuple[ProducedFile, list[str]]:
    progress: list[ChildProgress] = []
    files = run_plan(source, tmp_path / "work", list(ops), progress.append)
    (video,) = [f for f in files if f.kind is OutputKind.VIDEO]
    return video, sorted({p.operation for p in progress})


def detail(luma: npt.NDArray[np.float32]) -> float:
    """Fine detail: the variance of differences between neighbouring pixels."""
    return float(np.diff(luma, axis=1).var())


def unchanged(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> bool:
    """Equal within codec noise (the output went through H.264 twice over)."""
    return float(np.abs(a - b).mean()) < 4.0


def test_blur_hides_the_region_only_during_its_span(
    clip: Path, source: dict[int, npt.NDArray[np.float32]], tmp_path: Path
) -> None:
    op = RedactOp(regions=(REGION,), start_s=0.5, end_s=1.5)
    video, labels = run(clip, tmp_path, op, CompressOp(crf=16))
    assert labels == ["redact+compress"]
    out = frames(video.path)
    assert [i for i, _ in out] == list(range(60))
    for index, luma in out:
        src = source[index]
        assert unchanged(luma[OUTSIDE], src[OUTSIDE]), index
        assert unchanged(luma[:24], src[:24]), index  # the index strip above the region
        if 15 <= index < 45:  # [0.5 s, 1.5 s)
            assert detail(luma[BOX]) < BLURRED * detail(src[BOX]), index
        else:
            assert unchanged(luma[BOX], src[BOX]), index
            assert detail(luma[BOX]) > 0.7 * detail(src[BOX]), index


def test_pixelate_makes_uniform_blocks(
    clip: Path, source: dict[int, npt.NDArray[np.float32]], tmp_path: Path
) -> None:
    op = RedactOp(regions=(REGION,), mode="pixelate", strength=0.5)
    # Blocks of 0.5 x 10% of 240 = 12 pixels, from the region's top left corner (80, 90).
    assert redaction(compile_plan([op]).video.steps[0], 320, 240).amount == 12  # type: ignore[union-attr, arg-type]
    video, _ = run(clip, tmp_path, op, CompressOp(crf=10))
    with av.open(str(video.path)) as container:
        # The Y plane itself: RGB would mix in chroma upsampled across block edges.
        luma_planes = [
            f.to_ndarray(format="gray").astype(np.float32) for f in container.decode(video=0)
        ]
    for index, (_, picture) in list(enumerate(frames(video.path)))[::10]:
        luma = luma_planes[index]
        src = source[index]
        spread: list[float] = []
        spread_before: list[float] = []
        for top in range(90, 180 - 12, 12):
            for left in range(80, 240 - 12, 12):
                # The middle of each block (edges carry the codec's ringing).
                middle = (slice(top + 3, top + 9), slice(left + 3, left + 9))
                spread.append(float(luma[middle].std()))
                spread_before.append(float(src[middle].std()))
        # Uniform within the encoder's noise, where the source had detail.
        assert max(spread) < 3.5 and np.mean(spread) < 1.5, (index, spread)
        assert np.mean(spread_before) > 5 * np.mean(spread), index
        assert unchanged(picture[OUTSIDE], src[OUTSIDE])


def test_redact_composes_with_trim_watermark_and_transcode_in_one_pass(
    clip: Path, source: dict[int, npt.NDArray[np.float32]], tmp_path: Path
) -> None:
    """The span is relative to the video the operation applies to: after a trim from 0.5 s,
    0.25-0.5 s is 0.75-1.0 s of the source (frames 23-29; frame 22 is at 0.733 s)."""
    ops: list[Operation] = [
        TrimOp(start_s=0.5, duration_s=1.0),
        RedactOp(regions=(REGION,), start_s=0.25, end_s=0.5),
        WatermarkOp(text="Cam 7", position="bottom_left"),
        TranscodeOp(preset="ultrafast", codec="h264"),
        ThumbnailOp(timestamps=(Timestamp("seconds", 0.3),), format="png"),
    ]
    plan = compile_plan(ops)
    assert plan.video is not None and plan.video.operations == [0, 1, 2, 3]
    files = run_plan(clip, tmp_path / "work", ops, lambda _: None)
    video = files[0]
    out = frames(video.path)
    assert [i for i, _ in out] == list(range(15, 45))
    for index, luma in out:
        src = source[index]
        assert unchanged(luma[OUTSIDE], src[OUTSIDE]), index
        if 23 <= index < 30:
            assert detail(luma[BOX]) < BLURRED * detail(src[BOX]), index
        else:
            assert detail(luma[BOX]) > 0.7 * detail(src[BOX]), index
    # The thumbnail after the redaction (0.3 s of the trimmed video: frame 24) is redacted too.
    (thumb,) = [f for f in files if f.kind is OutputKind.THUMBNAIL]
    with av.open(str(thumb.path)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert read_frame_index(rgb) == 24
    assert detail(rgb.astype(np.float32).mean(axis=2)[BOX]) < BLURRED * detail(source[24][BOX])


def test_regions_follow_the_frame_they_are_drawn_on_before_or_after_a_scale(
    clip: Path, tmp_path: Path
) -> None:
    """Regions are normalised to the frame they are drawn on."""
    before, _ = run(
        clip, tmp_path / "a", TranscodeOp(width=160, height=120, preset="ultrafast"),
        RedactOp(regions=(REGION,)),
    )  # fmt: skip
    after, _ = run(
        clip, tmp_path / "b", RedactOp(regions=(REGION,)),
        TranscodeOp(width=160, height=120, preset="ultrafast"),
    )  # fmt: skip
    for path in (before.path, after.path):
        (index, luma), *_ = frames(path)
        assert index == 0 and luma.shape == (120, 160)
        assert detail(luma[48:88, 44:116]) < 0.1 * detail(luma[20:40, 0:40])


def test_validation_names_each_bad_field() -> None:
    def region(x: float, y: float, w: float, h: float) -> Redact.Region:
        return Redact.Region(x=x, y=y, width=w, height=h)

    bad = [
        Op(redact=Redact()),
        Op(redact=Redact(regions=[region(0.5, 0.5, 0.6, 0.1)], strength=0.0)),
        Op(redact=Redact(regions=[region(-0.1, 0.2, 0.0, 0.1)], start="3", end="2")),
        Op(redact=Redact(regions=[region(0, 0, 0.1, float("nan"))], duration="0")),
        Op(redact=Redact(regions=[region(0, 0, 0.1, 0.1)] * (MAX_REDACT_REGIONS + 1))),
    ]
    violations: list[FieldViolation] = []
    validate_operations(bad, "export.operations", violations)
    fields = sorted(v.field for v in violations)
    assert fields == [
        "export.operations[0].redact.regions",
        "export.operations[1].redact.regions[0].width",
        "export.operations[1].redact.strength",
        "export.operations[2].redact.end",
        "export.operations[2].redact.regions[0].width",
        "export.operations[2].redact.regions[0].x",
        "export.operations[3].redact.duration",
        "export.operations[3].redact.regions[0].height",
        "export.operations[4].redact.regions",
    ]
    messages = {v.field: v.description for v in violations}
    assert "inside the frame" in messages["export.operations[1].redact.regions[0].width"]
    assert "at most 32 regions" in messages["export.operations[4].redact.regions"]


def test_a_span_past_the_trimmed_video_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        compile_plan([TrimOp(duration_s=2.0), RedactOp(regions=(REGION,), start_s=2.0)])
    ((violation),) = info.value.violations
    assert violation.field == "export.operations[1].redact.start"


def test_redact_round_trips_through_the_record_and_the_api() -> None:
    op = RedactOp(
        regions=(REGION, RedactRegion(0.0, 0.0, 1.0, 0.5)),
        mode="pixelate",
        strength=0.8,
        start_s=1.5,
        duration_s=2.0,
    )
    record = ExportRecord(id="x", source_key="a.mp4", operations=[op])
    assert ExportRecord.from_json_dict(record.to_json_dict()).operations == [op]
    violations: list[FieldViolation] = []
    assert validate_operations([operation_to_proto(op)], "ops", violations) == [op]
    assert violations == []


async def test_create_export_refuses_a_region_outside_the_frame(
    api_only: RunningService,
) -> None:
    request = create_request(
        "in/x.mp4",
        Op(redact=Redact(regions=[Redact.Region(x=0.8, y=0.1, width=0.3, height=0.2)])),
    )
    error = await expect_error(
        api_only.exports.CreateExport(request), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert violation_fields(error) == ["export.operations[0].redact.regions[0].width"]
