"""What the test camera costs, in CPU seconds per second of video (under 1.0: one core keeps
up with real time):

- source: drawing each frame's stamp, encoding it live (one encoder thread), packing RTP, the
  frames made as fast as one thread can;
- served: the whole camera (RTSP, RTCP, sending) in this process at real-time pace while one
  PyAV client in another process reads it over TCP (the client's CPU not counted), per second
  of video captured meanwhile.

    .venv/bin/python -m benchmarks.test_camera [--seconds 10] [--sizes 320x180,1920x1080]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys

from sparc_video.simulator import TestCamera
from sparc_video.simulator.source import Source, StreamConfig

_CLIENT = """
import sys, time, av
container = av.open(sys.argv[1], options={"rtsp_transport": "tcp"}, timeout=30)
end = None
for packet in container.demux(video=0):
    if end is None:
        print("playing", flush=True)
        end = time.monotonic() + float(sys.argv[2])
    if time.monotonic() > end:
        break
"""


def source_cpu(size: tuple[int, int], codec: str, seconds: float, fps: int = 25) -> float:
    """CPU seconds per second of video, the frames made as fast as one thread can."""
    source = Source(StreamConfig(fps=fps, size=size, codec=codec), start_us=0)
    frames = round(seconds * fps)
    for index in range(fps):  # warm-up: the encoder's look-ahead and first keyframe
        source.burst(index)
    before = _cpu()
    for index in range(fps, fps + frames):
        source.burst(index)
    return (_cpu() - before) / seconds


def served_cpu(size: tuple[int, int], codec: str, seconds: float) -> float:
    with TestCamera(size=size, codec=codec) as camera:
        client = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, camera.url, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        client.stdout.readline()
        before, first = _cpu(), camera.frames_captured
        client.wait()
        return (_cpu() - before) / ((camera.frames_captured - first) / camera.config.fps)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sizes", default="320x180,1920x1080")
    parser.add_argument("--codecs", default="h264")
    args = parser.parse_args()
    for codec in args.codecs.split(","):
        for text in args.sizes.split(","):
            width, _, height = text.partition("x")
            size = (int(width), int(height))
            cpu = source_cpu(size, codec, args.seconds)
            served = served_cpu(size, codec, args.seconds)
            print(
                f"{codec} {text} 25 fps: source {cpu:.3f} CPU s per video s "
                f"({cpu * 40:.1f} ms per frame), served {served:.3f}"
            )


if __name__ == "__main__":
    main()
