"""The composition rules (exports.plan), request validation of every operation option, and
the proto mapping of operations: pure Python, no media."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest
from sparc.video.v1 import export_pb2

from sparc_video.api.exports.mapping import operation_to_proto, output_to_proto
from sparc_video.api.exports.requests import (
    parse_fps,
    parse_media_time,
    parse_size_bytes,
    validate_operations,
)
from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.exports.models import (
    CameraRange,
    Coverage,
    CoverageGap,
    CoverageSpan,
    DownloadGrant,
    ExportError,
    ExportRecord,
    ExportState,
    ManifestRef,
    Output,
    OutputKind,
    Priority,
)
from sparc_video.exports.operations import (
    CompressOp,
    ConvertOp,
    Operation,
    RedactOp,
    RedactRegion,
    ThumbnailOp,
    Timestamp,
    TranscodeOp,
    TrimOp,
    WatermarkClock,
    WatermarkOp,
)
from sparc_video.exports.plan import Overlay, Scale, Segment, compile_plan
from sparc_video.media import codecs

ROOT = Path(__file__).resolve().parent.parent
Op = export_pb2.Operation


def validate(*ops: export_pb2.Operation) -> tuple[list[Operation], list[FieldViolation]]:
    violations: list[FieldViolation] = []
    parsed = validate_operations(list(ops), "export.operations", violations)
    return parsed, violations


def rejected(*ops: export_pb2.Operation) -> dict[str, str]:
    parsed, violations = validate(*ops)
    assert violations, parsed
    return {v.field: v.description for v in violations}


def transcode(**kw: object) -> export_pb2.Operation:
    return Op(transcode=export_pb2.TranscodeOptions(**kw))  # type: ignore[arg-type]


def convert(container: str, **kw: str) -> export_pb2.Operation:
    value = export_pb2.ConvertOptions.Container.Value(f"CONTAINER_{container.upper()}")
    return Op(convert=export_pb2.ConvertOptions(container=value, **kw))


def trim(**kw: object) -> export_pb2.Operation:
    return Op(trim=export_pb2.TrimOptions(**kw))  # type: ignore[arg-type]


def thumbnail(*stamps: str, **kw: object) -> export_pb2.Operation:
    return Op(thumbnail=export_pb2.ThumbnailOptions(timestamps=list(stamps), **kw))  # type: ignore[arg-type]


def watermark(**kw: object) -> export_pb2.Operation:
    return Op(watermark=export_pb2.WatermarkOptions(**kw))  # type: ignore[arg-type]


def compress(**kw: object) -> export_pb2.Operation:
    return Op(compress=export_pb2.CompressOptions(**kw))  # type: ignore[arg-type]


# --- the codec tables are this PyAV build's -----------------------------------------------


def test_codec_table_matches_this_pyav_build() -> None:
    available = av.codecs_available
    for codec in codecs.VIDEO_CODECS.values():
        assert codec.encoder in available, codec
        formats = {f.name for f in av.Codec(codec.encoder, "w").video_formats or ()}
        assert set(codec.pixel_formats) <= formats, (codec.name, formats)
        assert set(codec.pixel_formats) <= set(codecs.PIXEL_FORMATS)
        if codec.nvenc:
            assert codec.nvenc in available
        assert av.Codec(codec.encoder, "w").canonical_name == codec.canonical  # type: ignore[attr-defined]
    for audio in codecs.AUDIO_CODECS.values():
        assert audio.encoder in available
        assert av.Codec(audio.encoder, "w").canonical_name == audio.canonical  # type: ignore[attr-defined]
    for box in codecs.CONTAINERS.values():
        assert box.format in av.formats_available
        assert box.default_video in codecs.video_codecs_in(box)
        assert box.default_audio in codecs.audio_codecs_in(box)
    # Every encoder of the families we offer that this build has is offered.
    for family in ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "libopus", "libmp3lame"):
        offered = [c.encoder for c in codecs.VIDEO_CODECS.values()]
        offered += [c.encoder for c in codecs.AUDIO_CODECS.values()]
        assert (family in available) == (family in offered), family


def _python_passes(code: str, *, timeout_s: float) -> None:
    """`code` passes in a fresh interpreter (only what it imports is loaded there)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'generated'}"},
        timeout=timeout_s,
    )
    assert result.returncode == 0, result.stderr


def test_validation_does_not_import_pyav_or_pillow() -> None:
    code = (
        "import sys; import sparc_video.api.exports.requests, sparc_video.exports.plan;"
        "import sparc_video.api.exports.mapping;"
        "bad = {'av', 'PIL', 'numpy'} & set(sys.modules); assert not bad, bad"
    )
    _python_passes(code, timeout_s=60)


def test_media_child_runs_a_plan_without_the_settings_model(tmp_path: Path) -> None:
    """What the worker's forkserver preloads, and a plan run after it, leave the settings
    model (pydantic-settings, the signing keys: 25 MB of every media child's peak RSS) out."""
    code = (
        "import sys; from pathlib import Path; import workers.sandbox.child as child;"
        "from sparc_video.media.synth import make_sample_clip;"
        "from sparc_video.exports.operations import TranscodeOp, WatermarkOp, ThumbnailOp;"
        f"d = Path({str(tmp_path)!r}); clip = make_sample_clip(d / 'in.mp4', width=320,"
        " height=240, duration_s=1.0);"
        "child.run_plan(clip, d / 'w1', [WatermarkOp(text='x'), TranscodeOp(width=160,"
        " height=120)], lambda _: None);"
        "child.run_plan(clip, d / 'w2', [ThumbnailOp(width=64)], lambda _: None);"
        "bad = {'sparc_video.core.settings', 'pydantic_settings'} & set(sys.modules);"
        "assert not bad, bad"
    )
    _python_passes(code, timeout_s=120)


# --- composition ---------------------------------------------------------------------------


def test_trim_watermark_transcode_compress_is_one_encode_pass() -> None:
    mark = WatermarkOp(text="Cam 7")
    plan = compile_plan(
        [
            TrimOp(start_s=10, end_s=40),
            mark,
            TranscodeOp(width=1280, height=720, bitrate_bps=1_000_000, preset="fast"),
            CompressOp(crf=28),
            ThumbnailOp(),
        ]
    )
    video = plan.video
    assert video is not None
    assert video.operations == [0, 1, 2, 3]
    assert video.encode and video.trimmed and not video.fast_trim
    assert video.segment == Segment(10, 40)
    assert video.steps == [Overlay(1, mark), Scale(1280, 720)]
    # compress after transcode: its CRF replaces the bitrate, the preset stays.
    assert (video.video.crf, video.video.bitrate_bps, video.video.preset) == (28, None, "fast")
    assert video.encode_video_codec() == "h264" and video.encode_audio_codec() == "aac"
    (thumbs,) = plan.thumbnails
    assert (thumbs.op_index, thumbs.segment, thumbs.steps) == (
        4,
        Segment(10, 40),
        tuple(video.steps),
    )


def test_convert_alone_is_a_remux_and_follows_the_container() -> None:
    plan = compile_plan([ConvertOp(container="webm")])
    assert plan.video is not None and not plan.video.encode
    # When something does not fit and must be encoded, the container's defaults apply.
    assert (plan.video.encode_video_codec(), plan.video.encode_audio_codec()) == ("vp9", "opus")
    fast = compile_plan([TrimOp(start_s=2, mode="fast"), ConvertOp(container="mov")]).video
    assert fast is not None and not fast.encode and fast.fast_trim


def test_fast_trim_with_a_reencode_becomes_exact_in_the_same_pass() -> None:
    video = compile_plan([TrimOp(start_s=2, mode="fast"), WatermarkOp(text="x")]).video
    assert video is not None and video.encode and video.fast_trim


def test_trims_compose_relative_to_the_video_before_them() -> None:
    video = compile_plan([TrimOp(start_s=10, end_s=40), TrimOp(start_s=5, duration_s=10)]).video
    assert video is not None and video.segment == Segment(15, 25)
    video = compile_plan([TrimOp(start_s=10, end_s=40), TrimOp(start_s=20)]).video
    assert video is not None and video.segment == Segment(30, 40)
    video = compile_plan([TrimOp(start_s=10), TrimOp(start_s=1, end_s=3)]).video
    assert video is not None and video.segment == Segment(11, 13)


def test_filters_apply_in_list_order_and_thumbnails_see_the_filters_before_them() -> None:
    early, late = WatermarkOp(text="a"), WatermarkOp(text="b")
    plan = compile_plan([early, TranscodeOp(width=640), ThumbnailOp(), late, TranscodeOp(fps="15")])
    assert plan.video is not None
    assert plan.video.steps == [Overlay(0, early), Scale(640, 0), Overlay(3, late)]
    assert plan.video.fps == Fraction(15)
    assert plan.thumbnails[0].steps == (Overlay(0, early), Scale(640, 0))


def test_later_encoder_options_win() -> None:
    video = compile_plan([CompressOp(quality="high"), TranscodeOp(bitrate_bps=500_000)]).video
    assert video is not None
    assert (video.video.bitrate_bps, video.video.crf, video.video.preset) == (500_000, None, "slow")
    video = compile_plan([TranscodeOp(codec="h265"), TranscodeOp(preset="fast")]).video
    assert video is not None and (video.video.codec, video.video.preset) == ("h265", "fast")
    video = compile_plan([CompressOp()]).video
    assert video is not None and (video.video.crf, video.video.preset) == (27, "medium")
    video = compile_plan([CompressOp(target_size_bytes=10**6)]).video
    assert video is not None and (video.video.target_size_bytes, video.video.crf) == (10**6, None)


def test_thumbnails_alone_make_no_video() -> None:
    plan = compile_plan([ThumbnailOp(), ThumbnailOp(format="png")])
    assert plan.video is None and [t.op_index for t in plan.thumbnails] == [0, 1]


@pytest.mark.parametrize(
    ("ops", "field", "fragments"),
    [
        (
            [TranscodeOp(codec="h265"), ConvertOp(container="webm")],
            "export.operations[1].convert.container",
            ["webm cannot hold the video codec h265", "operations[0] (transcode)", "vp9, av1"],
        ),
        (
            [ConvertOp(container="webm"), TranscodeOp(codec="h264")],
            "export.operations[1].transcode.codec",
            ["h264 cannot go into the webm container chosen by", "vp9, av1"],
        ),
        (
            [TranscodeOp(audio_codec="aac"), ConvertOp(container="webm")],
            "export.operations[1].convert.container",
            ["audio codec aac", "opus"],
        ),
        (
            [TranscodeOp(remove_audio=True), TranscodeOp(audio_codec="opus")],
            "export.operations[1].transcode.audio_codec",
            ["no audio", "operations[0] (transcode) removed it"],
        ),
        (
            [TranscodeOp(remove_audio=True), ConvertOp(container="mkv", audio_codec="opus")],
            "export.operations[1].convert.audio_codec",
            ["no audio"],
        ),
        (
            [TrimOp(start_s=0, end_s=10), TrimOp(start_s=12)],
            "export.operations[1].trim.start",
            ["past the end of the 10 s video"],
        ),
        (
            [TrimOp(start_s=5, duration_s=3), ThumbnailOp(timestamps=(Timestamp("seconds", 4),))],
            "export.operations[1].thumbnail.timestamps[0]",
            ["past the end of the 3 s video"],
        ),
        (
            [TranscodeOp(codec="vp9", hardware="nvenc")],
            "export.operations[0].transcode.hardware",
            ["NVENC cannot encode vp9", "h264, h265, av1"],
        ),
        (
            [TranscodeOp(codec="av1", pixel_format="yuv422p")],
            "export.operations[0].transcode.pixel_format",
            ["av1", "yuv420p, yuv420p10le"],
        ),
        (
            [TranscodeOp(pixel_format="yuv420p10le"), ConvertOp(container="webm")],
            "export.operations[0].transcode.pixel_format",
            ["vp9 (the video codec of this export) cannot encode yuv420p10le"],
        ),
    ],
)
def test_contradictions_are_refused_saying_why(
    ops: list[Operation], field: str, fragments: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as info:
        compile_plan(ops)
    fields = {v.field: v.description for v in info.value.violations}
    assert field in fields, fields
    for fragment in fragments:
        assert fragment in fields[field]


# --- validation of each option --------------------------------------------------------------


def test_every_option_is_parsed() -> None:
    parsed, violations = validate(
        transcode(
            codec="HEVC",
            bitrate="2.5M",
            resolution="1280x-1",
            preset="fast",
            fps="29.97",
            pixel_format="yuv420p10le",
            audio_codec="opus",
            audio_bitrate="96k",
            hardware=export_pb2.TranscodeOptions.HARDWARE_AUTO,
        ),
        compress(
            quality=export_pb2.CompressOptions.QUALITY_HIGH,
            crf=20,
            max_bitrate="3M",
            buffer_size="6M",
        ),
        compress(target_size="25MB"),
        watermark(
            text="Cam 7 · 2024-05-01 12:00",
            position=export_pb2.WatermarkOptions.POSITION_TOP_LEFT,
            margin=0,
            offset_x=-4,
            offset_y=8,
            opacity=0.5,
            scale=0.25,
            text_color="FFCC00",
        ),
        watermark(image_object_key="logos/acme.png"),
        trim(start="00:00:10.500", duration="30", mode=export_pb2.TrimOptions.MODE_FAST),
        convert("mkv", video_codec="h265", audio_codec="opus"),
        thumbnail(
            "50%",
            "00:00:12.5",
            size="320x0",
            format=export_pb2.ThumbnailOptions.FORMAT_WEBP,
        ),
        thumbnail(
            size="0x90",
            sprite_sheet=export_pb2.SpriteSheetOptions(frame_count=20, columns=5),
        ),
    )
    assert violations == []
    assert parsed == [
        TranscodeOp(
            codec="h265",
            bitrate_bps=2_500_000,
            width=1280,
            preset="fast",
            fps="30000/1001",
            pixel_format="yuv420p10le",
            audio_codec="opus",
            audio_bitrate_bps=96_000,
            hardware="auto",
        ),
        CompressOp(quality="high", crf=20, max_bitrate_bps=3_000_000, buffer_size_bits=6_000_000),
        CompressOp(target_size_bytes=25_000_000),
        WatermarkOp(
            text="Cam 7 · 2024-05-01 12:00",
            position="top_left",
            margin=0,
            offset_x=-4,
            offset_y=8,
            opacity=0.5,
            scale=0.25,
            text_color="#ffcc00",
        ),
        WatermarkOp(image_key="logos/acme.png"),
        TrimOp(start_s=10.5, duration_s=30, mode="fast"),
        ConvertOp(container="mkv", video_codec="h265", audio_codec="opus"),
        ThumbnailOp(
            timestamps=(Timestamp("percent", 50), Timestamp("seconds", 12.5)),
            width=320,
            format="webp",
        ),
        ThumbnailOp(height=90, sprite=True, sprite_frame_count=20, sprite_columns=5),
    ]


def test_sprite_sheet_defaults_to_16_frames() -> None:
    (op,), violations = validate(thumbnail(sprite_sheet=export_pb2.SpriteSheetOptions()))
    assert violations == []
    assert op == ThumbnailOp(sprite=True, sprite_frame_count=16)


@pytest.mark.parametrize(
    ("op", "field", "fragments"),
    [
        (transcode(codec="vp7"), "transcode.codec", ["'vp7' is not available", "h265 (hevc)"]),
        (transcode(codec="prores"), "transcode.codec", ["h264, h265 (hevc), vp9, av1, mpeg4"]),
        (transcode(audio_codec="flac"), "transcode.audio_codec", ["aac, opus, mp3"]),
        (transcode(fps="0"), "transcode.fps", ["1 to 240"]),
        (transcode(fps="fast"), "transcode.fps", ["not a frame rate"]),
        (transcode(pixel_format="rgb24"), "transcode.pixel_format", ["yuv420p, yuv422p"]),
        (transcode(audio_bitrate="4M"), "transcode.audio_bitrate", ["16k to 512k"]),
        (transcode(hardware=7), "transcode.hardware", ["unknown value 7"]),  # type: ignore[arg-type]
        (transcode(remove_audio=True, audio_codec="aac"), "transcode.remove_audio", ["no audio"]),
        (Op(convert=export_pb2.ConvertOptions()), "convert.container", ["CONTAINER_WEBM"]),
        (convert("webm", video_codec="h264"), "convert.video_codec", ["webm cannot hold h264"]),
        (convert("avi", audio_codec="aac"), "convert.audio_codec", ["avi cannot hold aac", "mp3"]),
        (compress(crf=60), "compress.crf", ["0 to 51"]),
        (compress(crf=20, target_size="10MB"), "compress.target_size", ["cannot be combined"]),
        (compress(buffer_size="2M"), "compress.buffer_size", ["with max_bitrate"]),
        (compress(target_size="lots"), "compress.target_size", ["not a size"]),
        (compress(target_size="1k"), "compress.target_size", ["10k to 100G"]),
        (watermark(), "watermark", ["image_object_key, text"]),
        (watermark(text="  "), "watermark.text", ["required"]),
        (watermark(text="two\nlines"), "watermark.text", ["one line"]),
        (watermark(text="x" * 201), "watermark.text", ["200"]),
        (watermark(image_object_key="../etc/passwd"), "watermark.image_object_key", []),
        (watermark(text="x", opacity=1.5), "watermark.opacity", ["within 0 to 1"]),
        (watermark(text="x", opacity=float("nan")), "watermark.opacity", []),
        (watermark(text="x", scale=2), "watermark.scale", []),
        (watermark(text="x", text_color="red"), "watermark.text_color", ["#RRGGBB"]),
        (watermark(text="x", margin=-1), "watermark.margin", []),
        (trim(), "trim", ["start, end or duration"]),
        (trim(start="10", end="5"), "trim.end", ["not after the start"]),
        (trim(end="5", duration="5"), "trim.duration", ["not both"]),
        (trim(start="50%"), "trim.start", ["not a percentage"]),
        (trim(start="1:99"), "trim.start", []),
        (trim(start="1", mode=9), "trim.mode", []),  # type: ignore[arg-type]
        (thumbnail(format=8), "thumbnail.format", []),  # type: ignore[arg-type]
        (
            thumbnail("1", sprite_sheet=export_pb2.SpriteSheetOptions(frame_count=4)),
            "thumbnail.sprite_sheet.frame_count",
            ["leave it 0"],
        ),
        (
            thumbnail(sprite_sheet=export_pb2.SpriteSheetOptions(frame_count=101)),
            "thumbnail.sprite_sheet.frame_count",
            ["1 to 100"],
        ),
        (
            thumbnail(size="3000x0", sprite_sheet=export_pb2.SpriteSheetOptions(frame_count=16)),
            "thumbnail.size",
            ["larger than 8192"],
        ),
        (Op(), "export.operations[0]", ["convert", "watermark", "trim"]),
    ],
)
def test_bad_options_name_the_field_and_what_is_allowed(
    op: export_pb2.Operation, field: str, fragments: list[str]
) -> None:
    fields = rejected(op)
    name = field if field.startswith("export.") else f"export.operations[0].{field}"
    assert name in fields, fields
    for fragment in fragments:
        assert fragment in fields[name], fields[name]


def test_list_rules_only_run_on_valid_options() -> None:
    # Each bad option is reported once; no contradiction is invented from a broken option.
    fields = rejected(transcode(codec="vp7"), convert("webm"))
    assert list(fields) == ["export.operations[0].transcode.codec"]


def test_contradiction_through_the_request_path() -> None:
    fields = rejected(transcode(codec="h265"), convert("webm"))
    assert "vp9, av1" in fields["export.operations[1].convert.container"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30", Fraction(30)), ("29.97", Fraction(30000, 1001)), ("24000/1001", Fraction(24000, 1001))],
)
def test_fps(text: str, expected: Fraction) -> None:
    assert parse_fps(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("25MB", 25_000_000), ("500k", 500_000), ("10MiB", 10 * 1024**2), ("1.5G", 1_500_000_000)],
)
def test_size(text: str, expected: int) -> None:
    assert parse_size_bytes(text) == expected


def test_media_time() -> None:
    assert parse_media_time("00:01:02.250") == 62.25
    assert parse_media_time("12.5") == 12.5


# --- proto mapping ---------------------------------------------------------------------------


def test_operations_round_trip_through_protos() -> None:
    ops: list[Operation] = [
        TranscodeOp(
            codec="vp9",
            bitrate_bps=800_000,
            width=640,
            fps="15",
            pixel_format="yuv444p",
            audio_codec="opus",
            audio_bitrate_bps=64_000,
            hardware="none",
        ),
        TranscodeOp(remove_audio=True, hardware="nvenc"),
        ConvertOp(container="mov", video_codec="h265"),
        CompressOp(quality="low", crf=0, max_bitrate_bps=2_000_000, buffer_size_bits=1_000_000),
        CompressOp(target_size_bytes=1_234_567),
        WatermarkOp(image_key="a/b.png", position="center", margin=3, opacity=0.0, scale=0.5),
        WatermarkOp(text="Cam 'A': movie=x", offset_x=-5, text_color="#00ff00"),
        TrimOp(start_s=1.5, end_s=9.25, mode="fast"),
        TrimOp(duration_s=3),
        ThumbnailOp(timestamps=(Timestamp("percent", 10), Timestamp("seconds", 2.5))),
        ThumbnailOp(format="png", width=64, sprite=True, sprite_frame_count=9, sprite_columns=3),
    ]
    protos = [operation_to_proto(op) for op in ops]
    again, violations = validate(*protos)
    assert violations == []
    assert again == ops
    # And through the JSON of stored records.
    record = ExportRecord(id="0" * 20, source_key="k", operations=ops)
    assert ExportRecord.from_json_dict(record.to_json_dict()).operations == ops


def test_record_json_is_what_asdict_gives() -> None:
    # to_json_dict has its own conversion (asdict deep-copies every value): the stored JSON
    # must stay exactly what it was, for every kind of field.
    ops: list[Operation] = [
        ThumbnailOp(timestamps=(Timestamp("percent", 10), Timestamp("seconds", 2.5))),
        WatermarkOp(text="t", clock=WatermarkClock(base_time_ns=5, format="%H")),
        RedactOp(regions=(RedactRegion(0.1, 0.2, 0.3, 0.4),), end_s=2.0),
        TrimOp(start_s=1.5, end_s=9.25, mode="fast"),
    ]
    record = ExportRecord(
        id="0" * 20,
        source_key="k",
        operations=ops,
        state=ExportState.SUCCEEDED,
        priority=Priority.BATCH,
        requester="alice",
        outputs=[
            Output(
                kind=OutputKind.VIDEO,
                storage_key="o/1.mp4",
                size_bytes=10,
                sha256="ab",
                content_type="video/mp4",
                operation_index=0,
                tile_times_s=(0.5, 1.0),
            )
        ],
        error=ExportError(13, "X", "m"),
        download_grants=[DownloadGrant(1.5, "bob", ("a", "b"), 2.5)],
        manifest=ManifestRef("m.json", "cd", "m.sig", "key"),
        camera_range=CameraRange("cam", 1, 2),
        coverage=Coverage(
            spans=(CoverageSpan("r", "cam", "o.ts", 1, 2, 0, 0),), gaps=(CoverageGap(2, 3, 1),)
        ),
    )
    assert json.dumps(record.to_json_dict()) == json.dumps(dataclasses.asdict(record))
    assert ExportRecord.from_json_dict(json.loads(json.dumps(record.to_json_dict()))) == record


def test_records_of_older_versions_still_load() -> None:
    data = ExportRecord(id="0" * 20, source_key="k", operations=[]).to_json_dict()
    data["operations"] = [
        {"codec": "h264", "bitrate_bps": None, "width": 0, "height": 0, "preset": "medium",
         "name": "transcode"},
        {"timestamps": [{"kind": "percent", "value": 50.0}], "width": 0, "height": 0,
         "format": "jpeg", "name": "thumbnail"},
    ]  # fmt: skip
    data["outputs"] = [
        {"kind": "VIDEO", "storage_key": "k", "size_bytes": 1, "sha256": "x",
         "content_type": "video/mp4", "operation_index": 0},
    ]  # fmt: skip
    record = ExportRecord.from_json_dict(data)
    assert record.operations == [TranscodeOp(codec="h264", preset="medium"), ThumbnailOp()]
    assert record.outputs[0].first_keyframe_s is None


def test_sprite_sheet_and_fast_trim_outputs_map_to_protos() -> None:
    sprite = output_to_proto(
        Output(
            kind=OutputKind.SPRITE_SHEET,
            storage_key="exports/x/1/sprite-0.jpg",
            size_bytes=10,
            sha256="ab",
            content_type="image/jpeg",
            operation_index=0,
            width=320,
            height=240,
            sprite_columns=2,
            sprite_rows=2,
            tile_width=160,
            tile_height=120,
            tile_times_s=(0.5, 1.5, 2.5, 3.5),
        )
    )
    assert sprite.kind == export_pb2.Output.KIND_SPRITE_SHEET
    assert (sprite.sprite_sheet.columns, sprite.sprite_sheet.rows) == (2, 2)
    assert [t.ToMilliseconds() for t in sprite.sprite_sheet.tile_times] == [500, 1500, 2500, 3500]
    video = output_to_proto(
        Output(
            kind=OutputKind.VIDEO,
            storage_key="k",
            size_bytes=1,
            sha256="x",
            content_type="video/mp4",
            operation_index=0,
            first_keyframe_s=8.0,
            video_encoder="",
        )
    )
    assert video.HasField("first_keyframe_time") and video.first_keyframe_time.seconds == 8
    assert not video.HasField("sprite_sheet")
