"""The threads of a video pass: how many (cores, cgroup quota, concurrency) and how the stages
overlap without changing the result, stop on cancellation and pass errors on."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from sparc_video.core.errors import JobCancelled
from sparc_video.exports.operations import TranscodeOp
from tests.media import make_clip
from tests.test_pipeline import cancelled_transcode
from workers.pipeline import PassProgress, transcode
from workers.pipeline import cores as cores_module
from workers.pipeline import progress as progress_module
from workers.pipeline.cores import (
    ThreadBudget,
    cgroup_quota,
    job_budget,
    quota_from_cpu_max,
    usable_cores,
)
from workers.pipeline.filters import FilterChain
from workers.pipeline.render.stages import Pipeline, tracing

# --- how many threads --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cores"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("", None),
        ("garbage", None),
        ("-1 100000", None),
    ],
)
def test_cpu_max_lines(text: str, cores: float | None) -> None:
    assert quota_from_cpu_max(text) == cores


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("400000 100000\n")
    assert cgroup_quota(tmp_path) == 4.0


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cfs_quota_us").write_text("")  # not the file that counts
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) == 2.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path) is None


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path) is None
    assert usable_cores(tmp_path) == len(os.sched_getaffinity(0))


def test_quota_caps_the_cores_and_concurrency_shares_them(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core still gets a thread
    assert usable_cores(tmp_path) == 1
    assert job_budget(4, tmp_path) == ThreadBudget(1, 1)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    usable = usable_cores(tmp_path)
    assert job_budget(1, tmp_path) == ThreadBudget(usable, usable)
    assert job_budget(usable * 2, tmp_path).cores == 1


def test_thread_counts_of_a_budget() -> None:
    whole = ThreadBudget(16, 16)
    assert (whole.codec_threads, whole.x264_threads, whole.pipelined) == (0, 0, True)
    half = ThreadBudget(8, 16)
    assert (half.codec_threads, half.x264_threads, half.pipelined) == (8, 12, True)
    small = ThreadBudget(2, 2)
    assert not small.pipelined
    assert ThreadBudget(1, 2).x264_threads == 1


# --- the pipeline ------------------------------------------------------------------------------


def _stage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sparc-video-")]


@pytest.mark.parametrize("threaded", [False, True])
def test_pipeline_keeps_order_and_traces(threaded: bool) -> None:
    out: list[int] = []
    with tracing() as traces, Pipeline(threaded=threaded, depth=2) as pipe:
        pipe.drain(
            "sink",
            pipe.map("double", pipe.source("count", range(100)), lambda x: 2 * x),
            out.append,
        )
    assert out == [2 * x for x in range(100)]
    (trace,) = traces
    assert [(s.name, s.items) for s in trace.stages] == [
        ("count", 100),
        ("double", 100),
        ("sink", 100),
    ]
    assert trace.threaded is threaded
    assert not _stage_threads()


class Boom(Exception):
    pass


def test_a_stage_error_stops_the_pipeline_with_that_error() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    def fail_at_50(x: int) -> int:
        if x == 50:
            raise Boom(x)
        return x

    with pytest.raises(Boom) as info, Pipeline(threaded=True, depth=2) as pipe:
        pipe.drain(
            "sink", pipe.map("check", pipe.source("count", endless()), fail_at_50), lambda _: None
        )
    assert info.value.args == (50,)
    assert closed.is_set()  # the source's cleanup ran, in its thread, before the exit
    assert not _stage_threads()


def test_leaving_the_sink_stops_every_thread() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            while True:
                yield 1
        finally:
            closed.set()

    seen = [0]

    def cancel_at_10(_: int) -> None:
        seen[0] += 1
        if seen[0] == 10:
            raise JobCancelled()

    with pytest.raises(JobCancelled), Pipeline(threaded=True, depth=2) as pipe:
        pipe.drain(
            "sink", pipe.map("id", pipe.source("count", endless()), lambda x: x), cancel_at_10
        )
    assert closed.is_set()
    assert not _stage_threads()


# --- a threaded video pass ---------------------------------------------------------------------


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the stages in threads whatever the cores here."""
    monkeypatch.setattr(cores_module, "SERIAL_UP_TO_CORES", 0)


def _video_packets(path: Path) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        return [(p.pts, bytes(p)) for p in container.demux(video=0) if p.size]


def test_threaded_pass_makes_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    # Scaled, frame rate converted (frames dropped and repeated), audio re-encoded.
    op = TranscodeOp(width=160, fps="24", preset="ultrafast")

    def ignore(_: PassProgress) -> None:
        pass

    transcode(clip, tmp_path / "serial.mp4", op, ignore)
    monkeypatch.setattr(cores_module, "SERIAL_UP_TO_CORES", 0)
    with tracing() as traces:
        transcode(clip, tmp_path / "threaded.mp4", op, ignore)
    assert traces[0].threaded
    assert _video_packets(tmp_path / "threaded.mp4") == _video_packets(tmp_path / "serial.mp4")
    assert not _stage_threads()


def test_cancelling_a_threaded_pass(
    tmp_path: Path, threaded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_module, "REPORT_INTERVAL_S", 0.0)
    clip = make_clip(tmp_path / "clip.mp4")
    dst = tmp_path / "out.mp4"
    reports = cancelled_transcode(clip, dst)
    assert reports[-1].frames == 5  # the progress callback is still where it stops
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    assert not _stage_threads()


def test_a_filter_error_fails_a_threaded_pass_with_it(
    tmp_path: Path, threaded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    real = FilterChain.__call__
    calls = [0]

    def failing(self: FilterChain, *args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 10:
            raise Boom("filter")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(FilterChain, "__call__", failing)
    dst = tmp_path / "out.mp4"
    with pytest.raises(Boom, match="filter"):
        transcode(clip, dst, TranscodeOp(width=160, preset="ultrafast"), lambda _: None)
    assert not dst.exists()
    assert not _stage_threads()
