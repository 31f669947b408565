"""Every operation and option, run as plans through the worker's child code, checked by
decoding the outputs with PyAV.

Clips come from tests/media.py: every frame carries its index, so a test can tell exactly which
source frames a result holds (trims, frame rates, thumbnails, sprite tiles).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from sparc_video.core.errors import MediaError, PermanentProcessingError
from sparc_video.exports.models import (
    CompressOp,
    ConvertOp,
    Operation,
    OutputKind,
    ThumbnailOp,
    Timestamp,
    TranscodeOp,
    TrimOp,
    WatermarkOp,
)
from tests.hostile_media import FifoWatch
from tests.media import make_clip, read_frame_index
from workers.pipeline.assets import asset_path
from workers.pipeline.encoders import HardwareReport, nvenc_usable, probe_hardware
from workers.pipeline.watermark import watermark_overlay
from workers.sandbox.child import ChildProgress, ProducedFile, run_plan
from workers.sandbox.runner import probe_hardware_in_child

FPS = 30
BLUE = (0, 0, 255)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("operations")


@pytest.fixture(scope="module")
def clip(media: Path) -> Path:
    """320x240, 3 s at 30 fps with AAC audio; a keyframe every second (frames 0, 30, 60)."""
    return make_clip(media / "clip.mp4", duration_s=3.0, gop=30)


@pytest.fixture(scope="module")
def short(media: Path) -> Path:
    """1 s, for the slower encoders."""
    return make_clip(media / "short.mp4", duration_s=1.0)


@pytest.fixture(scope="module")
def logo(media: Path) -> Path:
    """80x40 PNG: the left half opaque blue, the right half fully transparent."""
    pixels = np.zeros((40, 80, 4), dtype=np.uint8)
    pixels[:, :40] = (*BLUE, 255)
    path = media / "logo.png"
    Image.fromarray(pixels, "RGBA").save(path)
    return path


@dataclass
class Run:
    files: list[ProducedFile]
    progress: list[ChildProgress]

    @property
    def video(self) -> ProducedFile:
        (video,) = [f for f in self.files if f.kind is OutputKind.VIDEO]
        return video

    @property
    def images(self) -> list[ProducedFile]:
        return [f for f in self.files if f.kind is not OutputKind.VIDEO]


def run(
    source: Path, tmp_path: Path, *ops: Operation, assets: Mapping[str, Path] | None = None
) -> Run:
    workdir = tmp_path / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    for key, path in (assets or {}).items():
        target = asset_path(workdir, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    progress: list[ChildProgress] = []
    files = run_plan(source, workdir, list(ops), progress.append)
    return Run(files, progress)


def indexes(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [read_frame_index(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def pictures(path: Path) -> list[npt.NDArray[np.uint8]]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@dataclass
class Streams:
    video_codec: str
    pix_fmt: str
    size: tuple[int, int]
    rate: float
    audio_codec: str
    audio_bit_rate: int
    duration_s: float
    frames: int


def streams(path: Path) -> Streams:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        ctx = video.codec_context
        audio = container.streams.audio
        frames = sum(1 for _ in container.decode(video=0))
        return Streams(
            video_codec=ctx.codec.canonical_name,  # type: ignore[attr-defined]
            pix_fmt=ctx.pix_fmt or "",
            size=(ctx.width, ctx.height),
            rate=float(video.average_rate or 0),
            audio_codec=audio[0].codec_context.codec.canonical_name if audio else "",  # type: ignore[attr-defined]
            audio_bit_rate=audio[0].bit_rate or 0 if audio else 0,
            duration_s=(container.duration or 0) / av.time_base,
            frames=frames,
        )


def video_packets(path: Path) -> list[tuple[int, bool]]:
    with av.open(str(path)) as container:
        return [
            (p.size, p.is_keyframe)
            for p in container.demux(video=0)
            if p.size  # type: ignore[call-overload]
        ]


def blue_box(rgb: npt.NDArray[np.uint8]) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pure blue pixels; the test clips have none."""
    mask = (rgb[:, :, 2] > 180) & (rgb[:, :, 0] < 70) & (rgb[:, :, 1] < 70)
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def near(box: tuple[int, int, int, int] | None, expected: tuple[int, int, int, int]) -> bool:
    return box is not None and all(abs(a - b) <= 3 for a, b in zip(box, expected, strict=True))


# --- transcode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "canonical"),
    [("h264", "h264"), ("h265", "hevc"), ("vp9", "vp9"), ("av1", "av1"), ("mpeg4", "mpeg4")],
)
def test_transcode_codecs(short: Path, tmp_path: Path, codec: str, canonical: str) -> None:
    result = run(short, tmp_path, TranscodeOp(codec=codec, preset="ultrafast"))
    video = result.video
    assert (video.video_codec, video.audio_codec) == (canonical, "aac")
    assert video.video_encoder == {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9",
                                   "av1": "libsvtav1", "mpeg4": "mpeg4"}[codec]  # fmt: skip
    assert streams(video.path).video_codec == canonical
    assert indexes(video.path) == list(range(30))


@pytest.mark.parametrize(("fps", "expected"), [("15", list(range(0, 90, 2))), ("60", None)])
def test_transcode_frame_rate(
    clip: Path, tmp_path: Path, fps: str, expected: list[int] | None
) -> None:
    result = run(clip, tmp_path, TranscodeOp(fps=fps, preset="ultrafast"))
    info = streams(result.video.path)
    assert info.rate == float(fps)
    got = indexes(result.video.path)
    # 60 fps shows every source frame twice.
    assert got == (expected if expected is not None else [i // 2 for i in range(180)])
    assert result.video.duration_s == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize(
    ("codec", "pixel_format"),
    [("h264", "yuv444p"), ("h264", "yuv420p10le"), ("h265", "yuv422p"), ("vp9", "yuv444p")],
)
def test_transcode_pixel_formats(
    short: Path, tmp_path: Path, codec: str, pixel_format: str
) -> None:
    op = TranscodeOp(codec=codec, pixel_format=pixel_format, preset="ultrafast")
    result = run(short, tmp_path, op)
    assert streams(result.video.path).pix_fmt == pixel_format
    assert indexes(result.video.path) == list(range(30))


@pytest.mark.parametrize(
    ("audio_codec", "bitrate", "canonical"),
    [("opus", 64_000, "opus"), ("mp3", 96_000, "mp3"), ("aac", 64_000, "aac")],
)
def test_transcode_audio(
    clip: Path, tmp_path: Path, audio_codec: str, bitrate: int, canonical: str
) -> None:
    op = TranscodeOp(audio_codec=audio_codec, audio_bitrate_bps=bitrate, preset="ultrafast")
    result = run(clip, tmp_path, op)
    info = streams(result.video.path)
    assert info.audio_codec == canonical == result.video.audio_codec
    assert info.audio_bit_rate == pytest.approx(bitrate, rel=0.35)


def test_transcode_remove_audio(clip: Path, tmp_path: Path) -> None:
    result = run(clip, tmp_path, TranscodeOp(remove_audio=True, preset="ultrafast"))
    assert result.video.audio_codec == ""
    with av.open(str(result.video.path)) as container:
        assert not container.streams.audio


@pytest.mark.skipif(nvenc_usable(), reason="this machine has a usable NVENC")
def test_hardware_auto_falls_back_to_software_without_a_gpu(short: Path, tmp_path: Path) -> None:
    result = run(short, tmp_path, TranscodeOp(hardware="auto", preset="ultrafast"))
    assert result.video.video_encoder == "libx264"


@pytest.mark.skipif(nvenc_usable(), reason="this machine has a usable NVENC")
def test_hardware_nvenc_without_a_gpu_fails_clearly(short: Path, tmp_path: Path) -> None:
    with pytest.raises(PermanentProcessingError) as info:
        run(short, tmp_path, TranscodeOp(hardware="nvenc"))
    assert info.value.reason == "HARDWARE_UNAVAILABLE"


def test_hardware_probe_says_why_nvenc_is_unavailable(tmp_path: Path) -> None:
    report = probe_hardware(devices=(str(tmp_path / "nvidiactl"),))
    assert report.nvenc == ()
    assert report.reason == f"no NVIDIA device ({tmp_path / 'nvidiactl'} missing)"
    assert report.summary() == f"nvenc unavailable: {report.reason}"


@pytest.mark.skipif(nvenc_usable(), reason="NVENC works here")
def test_a_gpu_without_nvenc_is_named_with_every_encoders_error(tmp_path: Path) -> None:
    """A device node but no working encoder (an H200, or here a node with no driver behind it):
    the reason says so and keeps each encoder's error whole, however long."""
    (tmp_path / "nvidiactl").touch()
    report = probe_hardware(devices=(str(tmp_path / "nvidiactl"),))
    assert report.nvenc == ()
    assert " has no usable NVENC encoder (every open failed: " in report.reason
    for encoder in ("h264_nvenc", "hevc_nvenc", "av1_nvenc"):
        assert f"{encoder}: " in report.reason
    assert report.reason.endswith(")")


async def test_hardware_probe_runs_in_a_media_child() -> None:
    """The worker's start-up probe: the same encoders, from a child process it can lose (the
    wording of a driver's errors may differ between two processes; the verdict may not)."""
    in_child, here = await probe_hardware_in_child(), probe_hardware()
    assert in_child.nvenc == here.nvenc
    assert in_child.reason.split(" (")[0] == here.reason.split(" (")[0]


def test_hardware_choice_follows_the_workers_start_up_report(short: Path, tmp_path: Path) -> None:
    """A worker passes its start-up probe into the child: `auto` and `nvenc` decide from it,
    without probing again."""
    none = HardwareReport(reason="the driver said no")
    files = run_plan(
        short,
        tmp_path / "auto",
        [TranscodeOp(hardware="auto", preset="ultrafast")],
        lambda _: None,
        hardware=none,
    )
    assert files[0].video_encoder == "libx264"
    with pytest.raises(PermanentProcessingError) as info:
        run_plan(
            short, tmp_path / "nvenc", [TranscodeOp(hardware="nvenc")], lambda _: None, None, none
        )
    assert info.value.reason == "HARDWARE_UNAVAILABLE"
    assert "h264_nvenc: the driver said no" in info.value.message


@pytest.mark.skipif(not nvenc_usable(), reason="no usable NVIDIA GPU (NVENC) here")
@pytest.mark.parametrize(("codec", "encoder"), [("h264", "h264_nvenc"), ("h265", "hevc_nvenc")])
def test_nvenc_encodes(short: Path, tmp_path: Path, codec: str, encoder: str) -> None:
    for hardware in ("auto", "nvenc"):
        result = run(short, tmp_path / hardware, TranscodeOp(codec=codec, hardware=hardware))
        assert result.video.video_encoder == encoder
        assert indexes(result.video.path) == list(range(30))


# --- convert --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("container", "suffix", "content_type"),
    [
        ("mkv", ".mkv", "video/x-matroska"),
        ("mov", ".mov", "video/quicktime"),
        ("avi", ".avi", "video/x-msvideo"),
    ],
)
def test_convert_remuxes_when_the_codecs_fit(
    clip: Path, tmp_path: Path, container: str, suffix: str, content_type: str
) -> None:
    result = run(clip, tmp_path, ConvertOp(container=container))
    video = result.video
    assert (video.path.suffix, video.content_type) == (suffix, content_type)
    assert video.video_encoder == ""  # copied, not encoded
    assert video.video_codec == "h264"
    packets = video_packets(video.path)
    if container == "avi":
        # Annex B start codes instead of length prefixes; the same pictures.
        assert len(packets) == len(video_packets(clip))
        assert video.audio_codec == "mp3"  # AVI holds no AAC: re-encoded
    else:
        assert packets == video_packets(clip)  # the very same compressed frames
        assert video.audio_codec == "aac"
    assert indexes(video.path) == list(range(90))
    assert streams(video.path).rate == 30.0


def test_convert_reencodes_what_does_not_fit(clip: Path, tmp_path: Path) -> None:
    video = run(clip, tmp_path, ConvertOp(container="webm")).video
    assert (video.video_codec, video.audio_codec, video.video_encoder) == (
        "vp9",
        "opus",
        "libvpx-vp9",
    )
    with av.open(str(video.path)) as container:
        assert "webm" in container.format.name
    assert indexes(video.path) == list(range(90))


def test_convert_vp9_webm_to_mp4_is_a_remux(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "in.webm", codec="libvpx-vp9", audio=False, duration_s=1.0)
    video = run(source, tmp_path, ConvertOp(container="mp4")).video
    assert (video.video_codec, video.video_encoder, video.path.suffix) == ("vp9", "", ".mp4")
    assert indexes(video.path) == list(range(30))


def test_convert_with_explicit_codecs(short: Path, tmp_path: Path) -> None:
    video = run(
        short, tmp_path, ConvertOp(container="mkv", video_codec="h265", audio_codec="opus")
    ).video
    assert (video.video_codec, video.audio_codec, video.path.suffix) == ("hevc", "opus", ".mkv")
    # Asking for the codec the stream already has keeps it a copy.
    same = run(short, tmp_path / "same", ConvertOp(container="mov", video_codec="h264")).video
    assert same.video_encoder == ""


# --- compress -------------------------------------------------------------------------------


def test_compress_quality_presets(clip: Path, tmp_path: Path) -> None:
    sizes = {
        quality: run(clip, tmp_path / quality, CompressOp(quality=quality))
        .video.path.stat()
        .st_size
        for quality in ("low", "medium", "high")
    }
    assert sizes["low"] < sizes["medium"] < sizes["high"], sizes


def test_compress_crf(clip: Path, tmp_path: Path) -> None:
    small = run(clip, tmp_path / "a", TranscodeOp(preset="ultrafast"), CompressOp(crf=38)).video
    large = run(clip, tmp_path / "b", TranscodeOp(preset="ultrafast"), CompressOp(crf=14)).video
    assert small.path.stat().st_size * 3 < large.path.stat().st_size


def test_compress_max_bitrate_caps_the_rate(clip: Path, tmp_path: Path) -> None:
    cap, buffer = 300_000, 150_000
    op = CompressOp(crf=10, max_bitrate_bps=cap, buffer_size_bits=buffer)
    capped = run(clip, tmp_path, TranscodeOp(preset="ultrafast"), op).video
    video_bits = 8 * sum(size for size, _ in video_packets(capped.path))
    # The rate-control buffer allows bursts of at most its size above the cap.
    assert video_bits <= (cap * 3.0 + buffer) * 1.05
    free = run(clip, tmp_path / "free", TranscodeOp(preset="ultrafast"), CompressOp(crf=10)).video
    assert 8 * sum(size for size, _ in video_packets(free.path)) > 2 * video_bits


@pytest.mark.parametrize("target", [150_000, 400_000])
def test_compress_target_size(clip: Path, tmp_path: Path, target: int) -> None:
    video = run(clip, tmp_path, CompressOp(target_size_bytes=target)).video
    assert video.path.stat().st_size == pytest.approx(target, rel=0.2)


def test_compress_target_size_too_small(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError) as info:
        run(clip, tmp_path, CompressOp(target_size_bytes=20_000))
    assert info.value.reason == "TARGET_SIZE_TOO_SMALL"


# --- watermark ------------------------------------------------------------------------------


def _lossless() -> CompressOp:
    # CRF 0 is lossless: pixels outside a watermark stay exactly the source's.
    return CompressOp(crf=0)


@pytest.mark.parametrize("opacity", [1.0, 0.5, 0.0])
def test_image_watermark_honours_alpha_and_opacity(
    clip: Path, tmp_path: Path, logo: Path, opacity: float
) -> None:
    op = WatermarkOp(image_key="logo.png", position="bottom_left", margin=20, opacity=opacity)
    result = run(
        clip, tmp_path, TranscodeOp(preset="ultrafast"), op, _lossless(), assets={"logo.png": logo}
    )
    source = pictures(clip)
    marked = pictures(result.video.path)
    assert indexes(result.video.path) == list(range(90))
    for number in (0, 45, 89):
        src, out = source[number].astype(float), marked[number].astype(float)
        # The logo covers x 20-100, y 180-220; its left half is opaque blue.
        opaque = (slice(184, 216), slice(24, 56))
        expected = opacity * np.array(BLUE) + (1 - opacity) * src[opaque].mean(axis=(0, 1))
        assert np.abs(out[opaque].mean(axis=(0, 1)) - expected).max() < 12, number
        # Its right half is transparent, and the rest of the frame untouched.
        for region in ((slice(184, 216), slice(64, 96)), (slice(40, 160), slice(120, 300))):
            assert np.abs(out[region] - src[region]).mean() < 3, (number, region)


@pytest.mark.parametrize(
    ("position", "box"),
    [
        ("top_left", (10, 10, 50, 50)),
        ("top_right", (230, 10, 270, 50)),
        ("bottom_left", (10, 190, 50, 230)),
        ("bottom_right", (230, 190, 270, 230)),
        ("center", (120, 100, 160, 140)),
    ],
)
def test_watermark_positions(
    short: Path, tmp_path: Path, logo: Path, position: str, box: tuple[int, int, int, int]
) -> None:
    op = WatermarkOp(image_key="logo.png", position=position, margin=10)  # type: ignore[arg-type]
    result = run(short, tmp_path, op, assets={"logo.png": logo})
    assert near(blue_box(pictures(result.video.path)[5]), box)


def test_watermark_offsets_default_margin_and_scale(
    short: Path, tmp_path: Path, logo: Path
) -> None:
    # Default margin: 2% of the width (6 px); offsets move it; scale 0.5 makes it 160 px wide.
    op = WatermarkOp(image_key="logo.png", position="top_left", offset_x=30, offset_y=40, scale=0.5)
    result = run(short, tmp_path, op, assets={"logo.png": logo})
    assert near(blue_box(pictures(result.video.path)[0]), (36, 46, 116, 126))


def test_watermark_composes_with_scaling_in_list_order(
    short: Path, tmp_path: Path, logo: Path
) -> None:
    mark = WatermarkOp(image_key="logo.png", position="top_left", margin=0, offset_y=40)
    assets = {"logo.png": logo}
    before = run(short, tmp_path / "a", mark, TranscodeOp(width=160), assets=assets).video
    after = run(short, tmp_path / "b", TranscodeOp(width=160), mark, assets=assets).video
    # Watermark then scale: scaled with the picture. Scale then watermark: drawn at its size.
    assert near(blue_box(pictures(before.path)[0]), (0, 20, 20, 40))
    assert near(blue_box(pictures(after.path)[0]), (0, 40, 40, 80))


def changed_box(
    before: npt.NDArray[np.uint8], after: npt.NDArray[np.uint8]
) -> tuple[int, int, int, int]:
    mask = np.abs(after.astype(int) - before.astype(int)).sum(axis=2) > 60
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_text_watermark_is_literal_pixels(short: Path, tmp_path: Path) -> None:
    text = "Cam 7: 'lobby' [in]movie=/etc/passwd;drawtext=x,overlay"
    op = WatermarkOp(text=text, position="center", scale=0.9, text_color="#0000ff")
    result = run(short, tmp_path, op, _lossless())
    source, marked = pictures(short)[3], pictures(result.video.path)[3]
    left, top, right, bottom = changed_box(source, marked)
    assert right - left == pytest.approx(0.9 * 320, abs=12)  # scale: 90% of the width
    assert abs((left + right) / 2 - 160) < 6 and abs((top + bottom) / 2 - 120) < 6
    assert bottom - top < 30  # one line
    outside = np.abs(marked.astype(int) - source.astype(int))
    outside[top:bottom, left:right] = 0
    assert outside.mean() < 0.5


@pytest.mark.parametrize(
    "template",
    [
        "%{{pts}} %{{localtime}} %{{eif:n:d}}",
        "movie={fifo}[wm];[in][wm]overlay",
        "it's: a; [test] \\ , 'quoted' \"double\" \\:\\;",
        "text='x':fontfile={fifo}:textfile={fifo}",
        "drawtext=text=%{{pts\\:hms}}:x=0",
    ],
)
def test_hostile_watermark_text_is_drawn_literally(
    short: Path, tmp_path: Path, template: str
) -> None:
    """Whatever filter-graph syntax the text holds, the output is the source with exactly the
    pictures of those characters on it, the same on every frame, and no file is opened."""
    watch = FifoWatch(tmp_path / "canary.fifo")
    text = template.format(fifo=watch.path)
    # Scaled to 90% of the width, so a long text stays inside the frame.
    op = WatermarkOp(text=text, position="top_left", margin=4, scale=0.9)
    result = run(short, tmp_path, op, _lossless())
    assert not watch.close(), "a file named in the text was opened"
    # What the text must look like: Pillow's literal rendering, composited on the source.
    overlay = watermark_overlay(op, 320, 240, {})
    # A long text runs off the frame's right edge (the font has a minimum size).
    width = min(overlay.width, 320 - overlay.x)
    picture = overlay.image[:, :width].astype(float)
    alpha = picture[:, :, 3:] / 255
    box = (slice(overlay.y, overlay.y + overlay.height), slice(overlay.x, overlay.x + width))
    for number in (0, 15, 29):
        source = pictures(short)[number].astype(float)
        expected = source.copy()
        expected[box] = alpha * picture[:, :, :3] + (1 - alpha) * source[box]
        marked = pictures(result.video.path)[number].astype(float)
        # yuv420p halves the colour resolution, which blurs glyph edges a little.
        assert np.abs(marked[box] - expected[box]).mean() < 8, number
        assert np.abs(marked[box] - source[box]).mean() > 20, "no text was drawn"
        outside = np.abs(marked - source)
        outside[box] = 0
        assert outside.mean() < 0.5, number
    # Literal: the characters themselves are drawn, so other text gives other pixels.
    other = watermark_overlay(
        WatermarkOp(text=text.replace("%", "0").replace(":", "0"), position="top_left"),
        320,
        240,
        {},
    )
    assert other.image.shape != overlay.image.shape or (other.image != overlay.image).any()


def test_text_watermark_default_size_and_opacity(short: Path, tmp_path: Path) -> None:
    ops = [WatermarkOp(text="CAM 7", position="top_left", opacity=o) for o in (1.0, 0.3)]
    strong = pictures(run(short, tmp_path / "a", ops[0], _lossless()).video.path)[0]
    faint = pictures(run(short, tmp_path / "b", ops[1], _lossless()).video.path)[0]
    source = pictures(short)[0]
    left, top, _, bottom = changed_box(source, strong)
    # 4% of the frame height tall (plus its outline), 2% of the width from the corner.
    assert 8 <= bottom - top <= 16 and (left, top) <= (8, 8)
    ratio = np.abs(faint.astype(int) - source).sum() / np.abs(strong.astype(int) - source).sum()
    assert 0.15 < ratio < 0.45


def test_watermark_image_must_be_an_image(short: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("movie=/etc/passwd")
    with pytest.raises(MediaError) as info:
        run(short, tmp_path, WatermarkOp(image_key="notes.png"), assets={"notes.png": bad})
    assert info.value.reason == "INVALID_WATERMARK"


# --- trim -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trim", "first", "count"),
    [
        (TrimOp(start_s=1.0, end_s=2.5), 30, 45),
        (TrimOp(start_s=1.51, duration_s=1.0), 45, 30),  # nearest frame to the start
        (TrimOp(end_s=0.5), 0, 15),
        (TrimOp(start_s=2.0), 60, 30),
    ],
)
def test_exact_trim_is_frame_accurate(
    clip: Path, tmp_path: Path, trim: TrimOp, first: int, count: int
) -> None:
    video = run(clip, tmp_path, trim).video
    assert indexes(video.path) == list(range(first, first + count))
    assert video.duration_s == pytest.approx(count / FPS, abs=0.03)
    assert video.first_keyframe_s is None
    with av.open(str(video.path)) as container:
        audio = container.streams.audio[0]
        samples = sum(f.samples for f in container.decode(audio))
    assert samples / 48_000 == pytest.approx(count / FPS, abs=0.03)


def test_fast_trim_copies_from_the_keyframe_with_an_edit_list(clip: Path, tmp_path: Path) -> None:
    video = run(clip, tmp_path, TrimOp(start_s=1.5, end_s=2.5, mode="fast")).video
    assert video.video_encoder == ""
    assert video.first_keyframe_s == pytest.approx(1.0)  # keyframes every second
    # Players start at the requested time: the edit list hides frames 30-44.
    assert indexes(video.path) == list(range(45, 75))
    assert video.duration_s == pytest.approx(1.0, abs=0.05)
    # The frames are copied (from the keyframe), not re-encoded.
    source_packets = video_packets(clip)
    packets = video_packets(video.path)
    assert packets[0][1] and packets == source_packets[30 : 30 + len(packets)]


def test_fast_trim_in_a_container_without_edit_lists_starts_at_the_keyframe(
    clip: Path, tmp_path: Path
) -> None:
    result = run(
        clip, tmp_path, TrimOp(start_s=1.5, end_s=2.5, mode="fast"), ConvertOp(container="mkv")
    )
    assert result.video.first_keyframe_s == pytest.approx(1.0)
    assert indexes(result.video.path) == list(range(30, 75))


def test_fast_trim_in_a_reencoding_plan_is_exact(clip: Path, tmp_path: Path) -> None:
    result = run(
        clip, tmp_path, TrimOp(start_s=1.5, end_s=2.5, mode="fast"), TranscodeOp(preset="ultrafast")
    )
    assert result.video.first_keyframe_s is None
    assert indexes(result.video.path) == list(range(45, 75))


@pytest.fixture(scope="module", params=["clip.ts", "clip.mkv"])
def other_container(media: Path, request: pytest.FixtureRequest) -> Path:
    """MPEG-TS (Annex B H.264, ADTS AAC, timestamp seeking, audio first) and Matroska."""
    return make_clip(media / str(request.param), duration_s=2.0, gop=15)


@pytest.mark.parametrize("container", ["mp4", "avi", "mkv"])
def test_fast_trim_and_remux_from_other_containers(
    other_container: Path, tmp_path: Path, container: str
) -> None:
    result = run(
        other_container,
        tmp_path,
        TrimOp(start_s=0.6, end_s=1.5, mode="fast"),
        ConvertOp(container=container),
    )
    video = result.video
    assert video.video_encoder == ""
    # The latest keyframe at or before the start (keyframes every 0.5 s), whatever the seek did.
    assert video.first_keyframe_s == pytest.approx(0.5, abs=0.03)
    first = 18 if container == "mp4" else 15  # edit list, or from the keyframe
    assert indexes(video.path) == list(range(first, 45))


def test_trims_compose(clip: Path, tmp_path: Path) -> None:
    video = run(clip, tmp_path, TrimOp(start_s=0.5), TrimOp(start_s=1.0, duration_s=0.5)).video
    assert indexes(video.path) == list(range(45, 60))


def test_trim_past_the_end(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError) as info:
        run(clip, tmp_path, TrimOp(start_s=5.0))
    assert info.value.reason == "TIMESTAMP_OUT_OF_RANGE"
    assert "3.0" in info.value.message


# --- thumbnails -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_format", "magic"),
    [("png", b"\x89PNG"), ("webp", b"RIFF"), ("jpeg", b"\xff\xd8")],
)
def test_thumbnail_formats(clip: Path, tmp_path: Path, image_format: str, magic: bytes) -> None:
    stamps = (Timestamp("seconds", 0.5), Timestamp("percent", 100.0))
    op = ThumbnailOp(timestamps=stamps, width=160, format=image_format)  # type: ignore[arg-type]
    images = run(clip, tmp_path, op).images
    assert [i.content_type for i in images] == [f"image/{image_format}"] * 2
    for image, frame in zip(images, (15, 89), strict=True):
        assert image.path.read_bytes().startswith(magic)
        with Image.open(image.path) as picture:
            assert picture.size == (160, 120) == (image.width, image.height)
            rgb = np.asarray(picture.convert("RGB"))
        assert abs(read_frame_index(rgb) - frame) <= (0 if image_format == "png" else 1)


def test_sprite_sheet(clip: Path, tmp_path: Path) -> None:
    op = ThumbnailOp(sprite=True, sprite_frame_count=6, sprite_columns=3, width=96, format="png")
    (sheet,) = run(clip, tmp_path, op).images
    assert sheet.kind is OutputKind.SPRITE_SHEET
    assert (sheet.sprite_columns, sheet.sprite_rows, sheet.tile_width, sheet.tile_height) == (
        3,
        2,
        96,
        72,
    )
    with Image.open(sheet.path) as picture:
        assert picture.size == (288, 144) == (sheet.width, sheet.height)
        rgb = np.asarray(picture.convert("RGB"))
    # Frames at the middle of six equal slices of 3 s: 0.25 s, 0.75 s, ...
    expected = [round((i + 0.5) * 0.5 * FPS) for i in range(6)]
    tiles = [rgb[r * 72 : (r + 1) * 72, c * 96 : (c + 1) * 96] for r in range(2) for c in range(3)]
    got = [read_frame_index(tile) for tile in tiles]
    assert all(abs(a - b) <= 1 for a, b in zip(got, expected, strict=True)), (got, expected)
    assert sheet.tile_times_s == pytest.approx([i / FPS for i in got], abs=1e-3)


def test_sprite_sheet_from_timestamps(clip: Path, tmp_path: Path) -> None:
    stamps = tuple(Timestamp("seconds", s) for s in (0.0, 1.0, 2.0))
    (sheet,) = run(clip, tmp_path, ThumbnailOp(timestamps=stamps, sprite=True)).images
    assert (sheet.sprite_columns, sheet.sprite_rows, sheet.tile_width) == (2, 2, 160)
    assert sheet.path.suffix == ".jpg" and sheet.content_type == "image/jpeg"
    assert sheet.tile_times_s == pytest.approx([0.0, 1.0, 2.0], abs=1e-3)


def test_thumbnails_see_the_video_the_operations_before_them_make(
    clip: Path, tmp_path: Path, logo: Path
) -> None:
    mark = WatermarkOp(image_key="logo.png", position="bottom_left", margin=0)
    stamps = (Timestamp("seconds", 0.0), Timestamp("percent", 100.0))
    result = run(
        clip,
        tmp_path,
        ThumbnailOp(timestamps=(Timestamp("seconds", 0.0),)),  # before anything: the source
        TrimOp(start_s=1.0, end_s=2.0),
        mark,
        ThumbnailOp(timestamps=stamps, format="png"),
        assets={"logo.png": logo},
    )
    first, *after = result.images
    with Image.open(first.path) as picture:
        rgb = np.asarray(picture.convert("RGB"))
        assert read_frame_index(rgb) == 0 and blue_box(rgb) is None
    # Times are relative to the trimmed video; the watermark shows.
    assert [t.timestamp_s for t in after] == pytest.approx([0.0, 29 / FPS], abs=1e-3)
    for thumb, frame in zip(after, (30, 59), strict=True):
        with Image.open(thumb.path) as picture:
            rgb = np.asarray(picture.convert("RGB"))
        assert read_frame_index(rgb) == frame
        assert near(blue_box(rgb), (0, 200, 40, 240))


def test_thumbnail_of_a_watermark_scaled_with_the_picture(
    short: Path, tmp_path: Path, logo: Path
) -> None:
    mark = WatermarkOp(image_key="logo.png", position="top_left", margin=0, offset_y=40)
    stamps = (Timestamp("seconds", 0.0),)
    result = run(
        short,
        tmp_path,
        mark,
        TranscodeOp(width=160),
        ThumbnailOp(timestamps=stamps, format="png"),
        ThumbnailOp(timestamps=stamps, format="png", width=320),
        assets={"logo.png": logo},
    )
    # The video, its thumbnail and a thumbnail scaled back up all show it as the video does.
    assert near(blue_box(pictures(result.video.path)[0]), (0, 20, 20, 40))
    small, large = result.images
    with Image.open(small.path) as picture:
        assert picture.size == (160, 120)
        assert near(blue_box(np.asarray(picture.convert("RGB"))), (0, 20, 20, 40))
    with Image.open(large.path) as picture:
        assert near(blue_box(np.asarray(picture.convert("RGB"))), (0, 40, 40, 80))


# --- plans ----------------------------------------------------------------------------------


def test_a_plan_runs_one_video_pass_and_reports_one_percent(
    clip: Path, tmp_path: Path, logo: Path
) -> None:
    result = run(
        clip,
        tmp_path,
        TrimOp(start_s=0.5, end_s=2.5),
        WatermarkOp(image_key="logo.png"),
        TranscodeOp(width=160, preset="ultrafast"),
        CompressOp(quality="low"),
        ThumbnailOp(timestamps=(Timestamp("percent", 50.0),)),
        assets={"logo.png": logo},
    )
    video = result.video
    assert (video.width, video.height, video.operation_index) == (160, 120, 3)
    assert indexes(video.path) == list(range(15, 75))
    (thumb,) = result.images
    assert thumb.operation_index == 4
    labels = [p.operation for p in result.progress]
    assert labels[0] == "trim+watermark+transcode+compress" and labels[-1] == "thumbnail"
    assert sorted(set(labels), key=labels.index) == [labels[0], "thumbnail"]
    percents = [p.percent for p in result.progress]
    assert percents == sorted(percents) and percents[-1] == pytest.approx(100.0)
    assert {p.operation_index for p in result.progress} == {0, 4}
