"""The PyAV media pipeline against real, synthesised videos (see tests/media.py)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from sparc_video.core.errors import JobCancelled, MediaError
from sparc_video.exports.operations import ThumbnailOp, Timestamp, TranscodeOp
from sparc_video.media import safe_open
from sparc_video.media.safe_open import open_file
from tests.media import make_audio_only, make_clip, read_frame_index
from workers.pipeline import (
    MediaInfo,
    PassProgress,
    Thumbnail,
    probe,
    thumbnails,
    transcode,
)
from workers.pipeline import progress as progress_module
from workers.pipeline.media import fit_size

FPS = 30


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clip(media_dir: Path) -> Path:
    """320x240, 2 s, 30 fps, H.264 + AAC: 60 frames numbered 0-59."""
    return make_clip(media_dir / "clip.mp4")


@pytest.fixture(scope="module")
def silent_clip(media_dir: Path) -> Path:
    return make_clip(media_dir / "silent.mp4", audio=False)


@pytest.fixture
def every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ProgressReporter report on every tick, so tests see the whole sequence."""
    monkeypatch.setattr(progress_module, "REPORT_INTERVAL_S", 0.0)


def ignore(_: PassProgress) -> None:
    pass


def frame_indexes(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [read_frame_index(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def jpeg_index(thumb: Thumbnail) -> int:
    with av.open(str(thumb.path)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (thumb.width, thumb.height)
        return read_frame_index(frame.to_ndarray(format="rgb24"))


# --- probe and safe opening -------------------------------------------------------------------


def test_probe_describes_a_clip(clip: Path) -> None:
    info = probe(clip)
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert dataclasses.replace(info, duration_s=2.0) == MediaInfo(
        duration_s=2.0,
        width=320,
        height=240,
        fps=30.0,
        video_codec="h264",
        audio_codec="aac",
        has_audio=True,
    )


def test_probe_without_audio(silent_clip: Path) -> None:
    info = probe(silent_clip)
    assert (info.has_audio, info.audio_codec, info.video_codec) == (False, "", "h264")


def test_probe_applies_rotation_metadata(media_dir: Path) -> None:
    info = probe(make_clip(media_dir / "portrait.mp4", rotation=90, audio=False, duration_s=0.2))
    assert (info.width, info.height) == (240, 320)


def _hls_playlist(path: Path) -> None:
    path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p.write_bytes(os.urandom(64 * 1024)), id="random-bytes"),
        pytest.param(lambda p: p.write_bytes(b""), id="zero-bytes"),
        pytest.param(lambda p: p.write_text("just some notes\n" * 100), id="text"),
        pytest.param(_hls_playlist, id="hls-playlist"),
    ],
)
def test_non_videos_are_refused(tmp_path: Path, make: Callable[[Path], object]) -> None:
    source = tmp_path / "upload.mp4"
    make(source)
    with pytest.raises(MediaError) as info:
        probe(source)
    assert info.value.reason == "NOT_A_VIDEO"
    assert "not a video file" in info.value.message
    assert str(tmp_path) not in info.value.message


def test_hls_playlist_is_refused_by_the_format_allow_list(tmp_path: Path) -> None:
    # Named .m3u8, FFmpeg's own checks would let the playlist through to the HLS demuxer.
    source = tmp_path / "upload.m3u8"
    _hls_playlist(source)
    with pytest.raises(MediaError) as info:
        open_file(source)
    assert info.value.reason == "NOT_A_VIDEO"
    assert "MP4/MOV" in info.value.message


def test_ffconcat_file_is_refused(tmp_path: Path, clip: Path) -> None:
    # An ffconcat list reads other local files: exactly what an upload must not do.
    (tmp_path / "secret.mp4").write_bytes(clip.read_bytes())
    source = tmp_path / "upload.mp4"
    source.write_text("ffconcat version 1.0\nfile secret.mp4\n")
    with av.open(str(source)) as unguarded:
        assert unguarded.format.name == "concat"  # the danger is real without the allow-list
    with pytest.raises(MediaError) as info:
        probe(source)
    assert info.value.reason == "NOT_A_VIDEO"


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as info:
        probe(make_audio_only(tmp_path / "song.m4a"))
    assert info.value.reason == "NO_VIDEO_STREAM"
    assert "audio (aac)" in info.value.message


def test_decoders_off_the_allow_list_are_refused(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "lossless.avi", codec="ffvhuff", audio=False, duration_s=0.2)
    with pytest.raises(MediaError) as info:
        probe(source)
    assert info.value.reason == "UNDECODABLE"
    assert "(ffvhuff) is not supported" in info.value.message


def test_oversized_pictures_are_refused(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safe_open, "MAX_PIXELS", 320 * 240 - 1)
    with pytest.raises(MediaError) as info:
        probe(clip)
    assert info.value.reason == "UNDECODABLE"
    assert "320x240" in info.value.message


def test_missing_file_is_not_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nothing.mp4")


def _mp4_boxes(data: bytes) -> dict[bytes, bytes]:
    boxes, offset = {}, 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes[data[offset + 4 : offset + 8]] = data[offset : offset + size]
        offset += size
    return boxes


def test_video_without_its_media_data_cannot_be_decoded(tmp_path: Path, clip: Path) -> None:
    # The index (moov) promises 60 frames, but the media data (mdat) is gone.
    boxes = _mp4_boxes(clip.read_bytes())
    source = tmp_path / "cut.mp4"
    source.write_bytes(boxes[b"ftyp"] + boxes[b"moov"])
    with pytest.raises(MediaError) as info:
        probe(source)
    assert info.value.reason == "UNDECODABLE"


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "even", "expected"),
    [
        ((0, 0), True, (320, 240)),
        ((160, 0), True, (160, 120)),
        ((0, 120), True, (160, 120)),
        ((150, 0), True, (150, 112)),  # 112.5 rounds to an even number
        ((101, 0), True, (100, 76)),
        ((101, 0), False, (101, 76)),
        ((100, 100), False, (100, 100)),
    ],
)
def test_fit_size(asked: tuple[int, int], even: bool, expected: tuple[int, int]) -> None:
    assert fit_size(320, 240, *asked, even=even) == expected


# --- transcode ------------------------------------------------------------------------------


def test_transcode_scales_keeping_aspect(clip: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.mp4"
    info = transcode(clip, dst, TranscodeOp(width=160, preset="ultrafast"), ignore)
    assert (info.width, info.height) == (160, 120)
    assert (info.video_codec, info.audio_codec, info.has_audio) == ("h264", "aac", True)
    assert info.fps == 30.0
    assert info.duration_s == pytest.approx(probe(clip).duration_s, abs=0.1)
    # Every frame, in order, none dropped or duplicated.
    assert frame_indexes(dst) == list(range(60))
    with av.open(str(dst)) as container:
        video = container.streams.video[0]
        assert video.codec_context.pix_fmt == "yuv420p"
        audio = container.streams.audio[0]
        assert (audio.sample_rate, audio.layout.name) == (48_000, "stereo")


def test_transcode_without_audio(silent_clip: Path, tmp_path: Path) -> None:
    info = transcode(silent_clip, tmp_path / "out.mp4", TranscodeOp(preset="ultrafast"), ignore)
    assert (info.has_audio, info.audio_codec) == (False, "")
    assert (info.width, info.height) == (320, 240)


def test_transcode_output_starts_with_the_index(clip: Path, tmp_path: Path) -> None:
    # +faststart: players can start before the download is complete.
    dst = tmp_path / "out.mp4"
    transcode(clip, dst, TranscodeOp(preset="ultrafast"), ignore)
    data = dst.read_bytes()
    assert data[4:8] == b"ftyp"
    assert 0 < data.index(b"moov") < data.index(b"mdat")


def test_bitrate_changes_the_size(clip: Path, tmp_path: Path) -> None:
    small, large = tmp_path / "small.mp4", tmp_path / "large.mp4"
    transcode(clip, small, TranscodeOp(bitrate_bps=100_000, preset="ultrafast"), ignore)
    transcode(clip, large, TranscodeOp(bitrate_bps=2_000_000, preset="ultrafast"), ignore)
    # 2 s of video at 0.1 vs 2 Mbit/s (plus ~32 kB of audio either way).
    assert small.stat().st_size < 100_000
    assert large.stat().st_size > 3 * small.stat().st_size


@pytest.mark.parametrize(
    ("name", "gop"),
    [("clip.mkv", 15), ("clip.ts", 15), ("clip.webm", None)],
)
def test_transcode_other_containers(tmp_path: Path, name: str, gop: int | None) -> None:
    # Matroska/WebM keep millisecond timestamps; MPEG-TS starts the video after the audio.
    codec = "libvpx-vp9" if name.endswith(".webm") else "libx264"
    source = make_clip(tmp_path / name, gop=gop, codec=codec, audio=codec == "libx264")
    info = transcode(source, tmp_path / "out.mp4", TranscodeOp(preset="ultrafast"), ignore)
    assert info.fps == 30.0
    assert info.duration_s == pytest.approx(2.0, abs=0.1)
    assert frame_indexes(tmp_path / "out.mp4") == list(range(60))


def test_transcode_turns_rotated_video_upright(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "portrait.mp4", rotation=90, audio=False, duration_s=0.5)
    dst = tmp_path / "out.mp4"
    info = transcode(source, dst, TranscodeOp(height=160, preset="ultrafast"), ignore)
    assert (info.width, info.height) == (120, 160)
    with av.open(str(dst)) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation == 0
        # Drawn upright before a 90-degree counter-clockwise display rotation: turn it back.
        assert read_frame_index(np.rot90(frame.to_ndarray(format="rgb24"), -1)) == 0


def test_transcode_reports_progress(clip: Path, tmp_path: Path, every_frame: None) -> None:
    reports: list[PassProgress] = []
    transcode(clip, tmp_path / "out.mp4", TranscodeOp(preset="ultrafast"), reports.append)
    times = [r.media_time_s for r in reports]
    assert len(reports) > 10
    assert times == sorted(times)
    assert times[0] == 0.0
    assert reports[-1].media_time_s == reports[-1].media_duration_s == probe(clip).duration_s
    assert reports[-1].frames == 60
    assert all(r.media_duration_s > 0 for r in reports)
    elapsed = [r.elapsed_s for r in reports]
    assert elapsed == sorted(elapsed)


def test_progress_reporter_throttles() -> None:
    now = [100.0]
    reports: list[PassProgress] = []
    reporter = progress_module.ProgressReporter(reports.append, 10.0, clock=lambda: now[0])
    reporter.start()
    for step in range(1, 101):  # a frame every 10 ms of wall time, 0.1 s of media each
        now[0] += 0.01
        reporter.tick(step * 0.1, frames=1)
    reporter.finish()
    assert [round(r.elapsed_s, 2) for r in reports] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    assert [r.frames for r in reports] == [0, 20, 40, 60, 80, 100, 100]
    assert reports[-1].media_time_s == reports[-1].media_duration_s == 10.0


def test_progress_reporter_never_goes_backwards(every_frame: None) -> None:
    reports: list[PassProgress] = []
    reporter = progress_module.ProgressReporter(reports.append, 2.0)
    for media_time in (0.5, 0.3, 5.0):
        reporter.tick(media_time)
    assert [r.media_time_s for r in reports] == [0.5, 0.5, 2.0]


def cancelled_transcode(clip: Path, dst: Path) -> list[PassProgress]:
    """Transcode `clip` to `dst` with a progress callback that cancels once 5 frames are done
    (JobCancelled must come out); the reports the callback got."""
    reports: list[PassProgress] = []

    def cancel_after_a_few(p: PassProgress) -> None:
        reports.append(p)
        if p.frames >= 5:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        transcode(clip, dst, TranscodeOp(preset="ultrafast"), cancel_after_a_few)
    return reports


def test_cancelling_from_progress_stops_the_transcode(
    clip: Path, tmp_path: Path, every_frame: None
) -> None:
    dst = tmp_path / "out.mp4"
    reports = cancelled_transcode(clip, dst)
    assert reports[-1].frames == 5  # nothing more was done after the callback raised
    assert not dst.exists()


def test_unsupported_codec(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError) as info:
        transcode(clip, tmp_path / "out.mp4", TranscodeOp(codec="prores"), ignore)
    assert info.value.reason == "UNSUPPORTED_CODEC"
    assert "h264" in info.value.message


def test_transcode_refuses_non_videos(tmp_path: Path) -> None:
    source = tmp_path / "upload.mp4"
    source.write_text("not a video")
    with pytest.raises(MediaError) as info:
        transcode(source, tmp_path / "out.mp4", TranscodeOp(), ignore)
    assert info.value.reason == "NOT_A_VIDEO"
    assert not (tmp_path / "out.mp4").exists()


# --- thumbnails -----------------------------------------------------------------------------


def test_thumbnails_land_on_the_right_frames(clip: Path, tmp_path: Path) -> None:
    stamps = (
        Timestamp("percent", 50.0),
        Timestamp("seconds", 0.5),
        Timestamp("seconds", 1.0),  # "00:00:01.000"
        Timestamp("percent", 0.0),
        Timestamp("percent", 100.0),
        Timestamp("seconds", 1.234),
    )
    thumbs = thumbnails(clip, tmp_path, ThumbnailOp(stamps, width=160, height=120), ignore)
    expected = [30, 15, 30, 0, 59, 37]
    assert [t.path.name for t in thumbs] == [f"thumb_{i:03d}.jpg" for i in range(6)]
    for thumb, frame in zip(thumbs, expected, strict=True):
        assert (thumb.width, thumb.height) == (160, 120)
        assert abs(jpeg_index(thumb) - frame) <= 1
        assert thumb.timestamp_s == pytest.approx(jpeg_index(thumb) / FPS, abs=1e-3)
        assert thumb.path.read_bytes()[:2] == b"\xff\xd8"


def test_thumbnails_are_full_range_jpeg(clip: Path, tmp_path: Path) -> None:
    (thumb,) = thumbnails(clip, tmp_path, ThumbnailOp(), ignore)
    assert b"JFIF" in thumb.path.read_bytes()[:32]
    with av.open(str(thumb.path)) as container:
        frame = next(container.decode(video=0))
        assert frame.color_range == 2  # AVCOL_RANGE_JPEG
        rgb = frame.to_ndarray(format="rgb24")
    # The white index blocks stay white (limited range would read back as ~235).
    assert rgb[:30].max() >= 250


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(0, 0, (320, 240)), (0, 60, (80, 60)), (100, 100, (100, 100)), (161, 0, (161, 121))],
)
def test_thumbnail_sizes(
    clip: Path, tmp_path: Path, width: int, height: int, expected: tuple[int, int]
) -> None:
    (thumb,) = thumbnails(clip, tmp_path, ThumbnailOp(width=width, height=height), ignore)
    assert (thumb.width, thumb.height) == expected
    assert jpeg_index(thumb) == 30


def test_thumbnail_cost_follows_thumbnails_not_length(tmp_path: Path) -> None:
    # 10 s, a keyframe every 10 frames: a seek decodes at most a GOP, not everything before.
    source = make_clip(tmp_path / "long.mp4", width=160, height=120, duration_s=10, gop=10)
    reports: list[PassProgress] = []
    stamps = (Timestamp("percent", 90.0), Timestamp("seconds", 7.5))
    thumbs = thumbnails(source, tmp_path, ThumbnailOp(stamps), reports.append)
    assert [jpeg_index(t) for t in thumbs] == [270, 225]
    assert reports[-1].frames <= 2 * 12


def test_thumbnails_of_mpegts(tmp_path: Path) -> None:
    # MPEG-TS seeks by timestamp to frames that may need earlier ones; the video also starts
    # a little after the audio.
    source = make_clip(tmp_path / "clip.ts", gop=15)
    stamps = (Timestamp("seconds", 1.0), Timestamp("percent", 100.0), Timestamp("seconds", 0.0))
    thumbs = thumbnails(source, tmp_path, ThumbnailOp(stamps), ignore)
    for thumb, frame in zip(thumbs, [30, 59, 0], strict=True):
        assert abs(jpeg_index(thumb) - frame) <= 1


def test_thumbnail_of_rotated_video_is_upright(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "portrait.mp4", rotation=-90, audio=False, duration_s=0.5)
    (thumb,) = thumbnails(source, tmp_path, ThumbnailOp(width=120), ignore)
    assert (thumb.width, thumb.height) == (120, 160)
    with av.open(str(thumb.path)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert abs(read_frame_index(np.rot90(rgb, 1)) - 7) <= 1


def test_cancelling_from_progress_stops_thumbnails(
    clip: Path, tmp_path: Path, every_frame: None
) -> None:
    def cancel_on_first_frame(p: PassProgress) -> None:
        if p.frames:
            raise JobCancelled()

    op = ThumbnailOp((Timestamp("seconds", 1.0), Timestamp("seconds", 1.5)))
    with pytest.raises(JobCancelled):
        thumbnails(clip, tmp_path, op, cancel_on_first_frame)
    assert not list(tmp_path.glob("*.jpg"))


def test_thumbnail_progress(clip: Path, tmp_path: Path, every_frame: None) -> None:
    reports: list[PassProgress] = []
    stamps = (Timestamp("seconds", 1.5), Timestamp("seconds", 0.2))
    thumbnails(clip, tmp_path, ThumbnailOp(stamps), reports.append)
    times = [r.media_time_s for r in reports]
    assert times == sorted(times)
    assert reports[-1].media_time_s == reports[-1].media_duration_s


@pytest.mark.parametrize(
    "stamp", [Timestamp("seconds", 5.0), Timestamp("percent", 150.0), Timestamp("seconds", 2.1)]
)
def test_timestamp_out_of_range(clip: Path, tmp_path: Path, stamp: Timestamp) -> None:
    op = ThumbnailOp((Timestamp("seconds", 0.5), stamp))
    with pytest.raises(MediaError) as info:
        thumbnails(clip, tmp_path, op, ignore)
    assert info.value.reason == "TIMESTAMP_OUT_OF_RANGE"
    assert str(stamp) in info.value.message
    assert "2.000 s long" in info.value.message
    assert not list(tmp_path.glob("*.jpg"))  # refused before any work


def test_timestamp_a_hair_past_the_end_gives_the_last_frame(clip: Path, tmp_path: Path) -> None:
    (thumb,) = thumbnails(clip, tmp_path, ThumbnailOp((Timestamp("seconds", 2.01),)), ignore)
    assert jpeg_index(thumb) == 59


def test_thumbnails_refuse_non_videos(tmp_path: Path) -> None:
    source = tmp_path / "upload.mp4"
    source.write_bytes(b"")
    with pytest.raises(MediaError) as info:
        thumbnails(source, tmp_path, ThumbnailOp(), ignore)
    assert info.value.reason == "NOT_A_VIDEO"


# --- heavy ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_transcode_1080p_to_720p(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "big.mp4", width=1920, height=1080, duration_s=10)
    reports: list[PassProgress] = []
    dst = tmp_path / "out.mp4"
    started = time.monotonic()
    info = transcode(source, dst, TranscodeOp(width=1280, preset="veryfast"), reports.append)
    took = time.monotonic() - started
    assert (info.width, info.height, info.has_audio) == (1280, 720, True)
    assert info.duration_s == pytest.approx(10.0, abs=0.1)
    assert frame_indexes(dst) == list(range(300))
    # Reports come at least every ~0.25 s, so cancelling is never far away.
    gaps = [b.elapsed_s - a.elapsed_s for a, b in itertools.pairwise(reports)]
    assert max(gaps) < 0.5
    print(f"1080p -> 720p, 10 s: {took:.1f} s ({10 / took:.2f}x realtime)")
    thumbs = thumbnails(dst, tmp_path, ThumbnailOp((Timestamp("percent", 50.0),)), ignore)
    assert abs(jpeg_index(thumbs[0]) - 150) <= 1
    assert Fraction(thumbs[0].width, thumbs[0].height) == Fraction(16, 9)
