"""Drift benchmark (issue 16, "Wall-clock truth"): over a long run, do segment times stay within
one frame interval of the camera's clock?

    .venv/bin/python -m benchmarks.drift --hours 24 [--fps 2] [--segment-s 600] [--ppm 100]

A test camera (sparc_video.simulator) whose clock is set to 2026-01-01 sends at fast pace: its
clock advances one frame interval per frame, so simulated hours take minutes, and everything
it sends (each frame's stamped capture time, RTP times, RTCP sender reports) follows that clock
alone, never this machine's. Its RTP (media) clock runs `--ppm` faster than its wall clock, as
a real camera's crystal does (100 ppm: 8.6 s a day), while its sender reports map RTP times to
its wall clock truthfully; a recorder that timed segments by RTP times from one anchor would
drift by that much. Its 90 kHz RTP times start half an hour short of the 32-bit wrap,
so every run of an hour or more crosses a wrap (a 24-hour run two). The recorder's real ingest
(`run_ingest`: FFmpeg's RTSP client over loopback, the RTCP anchor, the segmenter) cuts it into
segments; each segment is decoded as it is handed over and every frame's wall time (the
segment's start plus the frame's PTS) is compared with the capture time stamped in its pixels.

Printed: segments and frames of the window (the first `hours` of camera time from the first
frame received), the largest deviation in frame intervals and in microseconds, and the wall
time. tests/test_ingest.py runs the same `measure` for one simulated hour (24 h marked slow).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import av

from sparc_video.recording.ingest import IngestSource, SegmentFile, SegmentPolicy, run_ingest
from sparc_video.security.address_policy import AddressPolicy
from sparc_video.simulator import CameraClock, FrameStamp, TestCamera, read_stamp

# A camera still set to New Year: its clock is far from this machine's, as cameras' often are.
CAMERA_START = datetime(2026, 1, 1, tzinfo=UTC)
# Video RTP times 30 minutes (at 90 kHz) short of the 32-bit wrap.
RTP_OFFSETS = (2**32 - 1800 * 90_000, 0)
LOOPBACK = AddressPolicy(allowed_networks=("127.0.0.0/8",))
NS_PER_S, NS_PER_US = 1_000_000_000, 1000


def stamped_frames(segment: SegmentFile) -> list[tuple[FrameStamp, int, bool]]:
    """Each decoded frame's stamp, wall-clock ns (segment start + its PTS) and keyframe flag."""
    found = []
    with av.open(str(segment.path)) as container:
        vs = container.streams.video[0]
        assert vs.time_base is not None
        for frame in container.decode(vs):
            assert frame.pts is not None
            ns = (
                segment.start_ns
                + frame.pts * vs.time_base.numerator * NS_PER_S // vs.time_base.denominator
            )
            found.append((read_stamp(frame), ns, frame.key_frame))
    return found


@dataclass
class Drift:
    fps: int
    segments: int = 0
    frames: int = 0
    max_deviation_ns: int = 0
    wall_s: float = 0.0

    @property
    def interval_ns(self) -> int:
        return NS_PER_S // self.fps

    @property
    def max_intervals(self) -> float:
        return self.max_deviation_ns / self.interval_ns


class _Window:
    """Checks each segment as it is handed over, until `frames` frames have been seen."""

    def __init__(self, frames: int, fps: int, stop: threading.Event) -> None:
        self.drift, self.want, self.stop = Drift(fps), frames, stop
        self.first_index: int | None = None
        self.last: SegmentFile | None = None

    def __call__(self, segment: SegmentFile) -> None:
        try:
            self._check(segment)
        finally:
            segment.path.unlink()  # a day of segments is not kept

    def _check(self, segment: SegmentFile) -> None:
        if self.last is not None:  # contiguous: no hole, no overlap
            assert segment.start_ns == self.last.end_ns, (self.last, segment)
        self.last = segment
        frames = stamped_frames(segment)
        assert frames and frames[0][2], "a segment starts with a keyframe"
        if self.first_index is None:
            self.first_index = frames[0][0].index
        in_window = 0
        for stamp, wall_ns, _ in frames:
            expected = self.first_index + self.drift.frames
            if self.drift.frames >= self.want:
                break
            assert stamp.index == expected, f"frame {stamp.index} where {expected} was due"
            deviation = abs(wall_ns - stamp.capture_time_us * NS_PER_US)
            self.drift.max_deviation_ns = max(self.drift.max_deviation_ns, deviation)
            self.drift.frames += 1
            in_window += 1
        self.drift.segments += 1 if in_window else 0
        if self.drift.frames >= self.want:
            self.stop.set()


def measure(
    hours: float, fps: int, segment_s: float, buffer_dir: Path, rtp_ppm: float = 0.0
) -> Drift:
    """The first `hours` of camera time, recorded by the real ingest, each frame checked; the
    camera's RTP clock `rtp_ppm` faster than its wall clock."""
    stop = threading.Event()
    # Both ends included: the frame `hours` after the first is checked too.
    window = _Window(round(hours * 3600 * fps) + 1, fps, stop)
    # Stall bounds as for a loaded CI machine: the camera and the checks share its cores.
    policy = SegmentPolicy(target_s=segment_s, stall_timeout_s=30.0, open_timeout_s=30.0)
    camera = TestCamera(
        fps=fps,
        pace="fast",
        clock=CameraClock.at(CAMERA_START, rtp_ppm=rtp_ppm),
        rtp_offsets=RTP_OFFSETS,
    )
    started = time.monotonic()
    with camera:
        source = IngestSource(camera.url, camera.url, "drift", LOOPBACK)
        run_ingest(source, policy, buffer_dir, window, lambda _: None, stop)
    window.drift.wall_s = time.monotonic() - started
    assert window.drift.frames == window.want, "the stream ended before the window"
    return window.drift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--fps", type=int, default=2)
    parser.add_argument("--segment-s", type=float, default=600.0)
    parser.add_argument(
        "--ppm", type=float, default=100.0, help="the camera's RTP clock rate error"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        drift = measure(args.hours, args.fps, args.segment_s, Path(directory), args.ppm)
    print(
        f"{args.hours:g} h of camera time at {args.fps} fps, {args.segment_s:g} s segments, "
        f"RTP clock {args.ppm:+g} ppm: "
        f"{drift.segments} segments, {drift.frames} frames, max deviation "
        f"{drift.max_intervals:.3f} frame intervals ({drift.max_deviation_ns / 1000:.1f} µs), "
        f"wall {drift.wall_s:.1f} s"
    )


if __name__ == "__main__":
    main()
