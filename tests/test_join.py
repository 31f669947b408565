"""The join of a camera time range: stream copy where every cut falls where the coded streams
allow, else a frame-exact re-encode. Recordings are 2 s clips with a keyframe every second whose
frames carry their index; the joined videos are demuxed and decoded and compared with them."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from sparc_video.media.synth import make_sample_clip, read_frame_index
from workers.pipeline.join import JoinMethod, JoinResult, JoinSegment, JoinSpec, join_segments

FPS = 25
AUDIO_RATE = 48_000


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("recordings")
    return [
        make_sample_clip(
            folder / f"{n}.mp4", width=320, height=240, duration_s=2.0, fps=FPS, gop=FPS
        )
        for n in range(3)
    ]


def join(tmp_path: Path, *segments: JoinSegment) -> tuple[JoinResult, list[str]]:
    methods: list[str] = []

    def report(method: JoinMethod, done_s: float, total_s: float) -> None:
        methods.append(method.name)
        assert 0 <= done_s <= total_s + 1e-6

    result = join_segments(JoinSpec(segments), tmp_path / "joined.mp4", report)
    return result, methods


def span(path: Path, offset_s: float, duration_s: float) -> JoinSegment:
    return JoinSegment(path, 0, duration_s, offset_s)


def keyframe_cuts(recordings: list[Path]) -> tuple[JoinSegment, ...]:
    """1 s into the first recording (a keyframe) to its end, the second whole, the third's
    first second (up to its next keyframe): 4 s that can be copied."""
    return (
        span(recordings[0], 1.0, 1.0),
        span(recordings[1], 0.0, 2.0),
        span(recordings[2], 0.0, 1.0),
    )


def video_packets(path: Path) -> list[tuple[Fraction, bytes]]:
    """(pts in seconds, bytes) in decode order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        return [
            (p.pts * stream.time_base, bytes(p))
            for p in container.demux(stream)
            if p.size and p.pts is not None
        ]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def frames(path: Path) -> list[tuple[float, int]]:
    """(time, drawn index) of every decoded frame."""
    with av.open(str(path)) as container:
        return [
            (float(f.time), read_frame_index(f.to_ndarray(format="rgb24")))
            for f in container.decode(video=0)
        ]


def audio_frames(path: Path) -> Iterator[tuple[int, int]]:
    """(first sample, sample count) of every decoded audio frame."""
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            assert frame.pts is not None and frame.time_base is not None
            yield round(frame.pts * frame.time_base * AUDIO_RATE), frame.samples


def test_cuts_on_keyframes_copy_the_packets(recordings: list[Path], tmp_path: Path) -> None:
    result, methods = join(tmp_path, *keyframe_cuts(recordings))
    assert result.method == JoinMethod("copy", "")
    assert set(methods) == {"copy"}
    assert result.offsets_s == (0.0, 1.0, 3.0)

    # The joined video's packets are the recordings' own, byte for byte, in order.
    expected = [
        body
        for path, lo, hi in ((recordings[0], 1, 2), (recordings[1], 0, 2), (recordings[2], 0, 1))
        for t, body in video_packets(path)
        if lo <= t < hi
    ]
    joined = video_packets(result.path)
    assert [body for _, body in joined] == expected
    # On one clock: frame n at n / FPS exactly, no frame missing or doubled.
    assert sorted(t for t, _ in joined) == [Fraction(n, FPS) for n in range(4 * FPS)]

    decoded = frames(result.path)
    assert len(decoded) == 4 * FPS
    assert [t for t, _ in decoded] == pytest.approx([n / FPS for n in range(4 * FPS)], abs=1e-6)
    indexes = [i for _, i in decoded]
    assert indexes == (list(range(FPS, 2 * FPS)) + list(range(2 * FPS)) + list(range(FPS)))
    with av.open(str(result.path)) as container:
        stream = container.streams.video[0]
        assert stream.duration is not None and stream.time_base is not None
        assert (stream.frames, stream.duration * stream.time_base) == (4 * FPS, 4)


def test_copied_audio_runs_without_holes(recordings: list[Path], tmp_path: Path) -> None:
    result, _ = join(tmp_path, *keyframe_cuts(recordings))
    assert result.method.name == "copy"
    laid = list(audio_frames(result.path))
    frame_samples = AUDIO_RATE // FPS
    assert laid[0][0] == 0
    for (start, count), (following, _) in pairwise(laid):
        assert abs(following - (start + count)) <= frame_samples, (start, count, following)
    end = laid[-1][0] + laid[-1][1]
    assert abs(end - 4 * AUDIO_RATE) <= frame_samples
    # Packet by packet, the copied audio is one run: each packet starts where the last ends.
    with av.open(str(result.path)) as container:
        timed = [(p.pts, p.duration) for p in container.demux(audio=0) if p.size]
    assert timed[0][0] == 0
    assert all(b[0] == a[0] + a[1] for a, b in pairwise(timed))
    # AAC packets copied too: each recording's, none re-encoded.
    sources = {body for path in recordings for body in audio_packets(path)}
    assert set(audio_packets(result.path)) <= sources
    # The tone goes on across the joins (the decoder's output, not only the timestamps).
    with av.open(str(result.path)) as container:
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    for boundary_s in (1.0, 3.0):
        around = samples[
            round(boundary_s * AUDIO_RATE) - 2400 : round(boundary_s * AUDIO_RATE) + 2400
        ]
        assert float(np.sqrt((around**2).mean())) > 0.05


@pytest.mark.parametrize("frames_kept", [1, 2, 3, 5, 6, 12, 13, 24])
def test_an_end_inside_a_gop_is_exact_either_way(
    recordings: list[Path], tmp_path: Path, frames_kept: int
) -> None:
    """With B-frames an end inside a GOP can be copied only where no kept frame refers to a
    dropped one; either way the frames are exactly the span's."""
    result, _ = join(
        tmp_path, span(recordings[0], 0.0, frames_kept / FPS), span(recordings[1], 0.0, 1.0)
    )
    assert [i for _, i in frames(result.path)] == list(range(frames_kept)) + list(range(FPS))
    if result.method.name == "re-encode":
        assert "not a run of packets in decode order" in result.method.reason


def test_a_start_inside_a_gop_is_re_encoded_exactly(recordings: list[Path], tmp_path: Path) -> None:
    result, methods = join(tmp_path, span(recordings[0], 0.52, 1.48), span(recordings[1], 0.0, 1.0))
    assert result.method.name == "re-encode"
    assert result.method.reason == "the cut at 0.520 s into 0.mp4 is not at a keyframe"
    assert set(methods) == {"re-encode"}
    decoded = frames(result.path)
    assert [i for _, i in decoded] == list(range(13, 2 * FPS)) + list(range(FPS))
    assert decoded[0][0] == pytest.approx(0.0, abs=1e-6)


def test_recordings_of_another_size_are_re_encoded(recordings: list[Path], tmp_path: Path) -> None:
    other = make_sample_clip(
        tmp_path / "other.mp4", width=256, height=192, duration_s=2.0, fps=FPS, gop=FPS
    )
    result, _ = join(tmp_path, span(recordings[0], 1.0, 1.0), span(other, 0.0, 1.0))
    assert result.method.name == "re-encode"
    assert "other.mp4 differs from the first recording in its size" in result.method.reason
    assert [i for _, i in frames(result.path)] == list(range(FPS, 2 * FPS)) + list(range(FPS))


def test_recordings_without_audio_next_to_audio_are_re_encoded(
    recordings: list[Path], tmp_path: Path
) -> None:
    silent = make_sample_clip(
        tmp_path / "silent.mp4",
        width=320,
        height=240,
        duration_s=2.0,
        fps=FPS,
        audio=False,
        gop=FPS,
    )
    result, _ = join(tmp_path, span(recordings[0], 1.0, 1.0), span(silent, 0.0, 1.0))
    assert result.method.name == "re-encode"
    assert "audio" in result.method.reason
    # Silence where the silent recording plays, not a hole.
    ends = [start + count for start, count in audio_frames(result.path)]
    assert abs(ends[-1] - 2 * AUDIO_RATE) <= AUDIO_RATE // FPS


def test_silent_recordings_are_copied(tmp_path: Path) -> None:
    silent = [
        make_sample_clip(
            tmp_path / f"silent-{n}.mp4",
            width=320,
            height=240,
            duration_s=2.0,
            fps=FPS,
            audio=False,
            gop=FPS,
        )
        for n in range(2)
    ]
    result, _ = join(tmp_path, span(silent[0], 1.0, 1.0), span(silent[1], 0.0, 2.0))
    assert result.method.name == "copy"
    assert [i for _, i in frames(result.path)] == list(range(FPS, 2 * FPS)) + list(range(2 * FPS))
    with av.open(str(result.path)) as container:
        assert not container.streams.audio


def test_slates_are_re_encoded(recordings: list[Path], tmp_path: Path) -> None:
    result, _ = join(
        tmp_path,
        span(recordings[0], 1.0, 1.0),
        JoinSegment(None, 0, 0.4),
        span(recordings[1], 0.0, 1.0),
    )
    assert result.method.name == "re-encode"
    assert "slate" in result.method.reason
    assert len(frames(result.path)) == 2 * FPS + 10


def test_a_rotated_recording_is_re_encoded(recordings: list[Path], tmp_path: Path) -> None:
    """Same codec parameters, but a display matrix the joined stream could not carry for one
    span only."""
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(recordings[1])) as src, av.open(str(rotated), "w") as dst:
        video, audio = src.streams.video[0], src.streams.audio[0]
        out_video = dst.add_stream_from_template(video)
        out_audio = dst.add_stream_from_template(audio)
        out_video.set_display_rotation(180)
        for packet in src.demux(video, audio):
            if packet.size:
                packet.stream = out_video if packet.stream is video else out_audio
                dst.mux(packet)
    result, _ = join(tmp_path, span(recordings[0], 1.0, 1.0), span(rotated, 0.0, 1.0))
    assert result.method.name == "re-encode"
    assert result.method.reason == "rotated.mp4 differs from the first recording in its rotation"
    decoded = frames(result.path)
    assert len(decoded) == 2 * FPS
    assert [i for _, i in decoded[:FPS]] == list(range(FPS, 2 * FPS))
