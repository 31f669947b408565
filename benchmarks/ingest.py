"""Ingest benchmark: what recording one camera costs, in CPU and memory.

    .venv/bin/python -m benchmarks.ingest [--seconds 60] [--sizes 320x180,1920x1080]

For each size, a test camera (sparc_video.simulator, 25 fps H.264, in a process of its own so
its encoding is not counted) is read for `--seconds` by two processes at once: the ingest core
(`run_ingest`, 60 s segments of 1 s parts into a temporary directory) and, as the reference
measured in the same run, a bare PyAV demux loop that reads the same stream and throws the
packets away (the least any recorder built on FFmpeg pays). Each reports its CPU time, its peak
RSS and its RSS growth from just after the stream opened (what the recording itself holds).
Targets (issue 16): under 10 MB per camera, and CPU little above the bare read.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

MB = 1024 * 1024
LOOPBACK = ("127.0.0.0/8",)


@dataclass
class Figure:
    cpu_s: float
    wall_s: float
    peak_rss: int
    growth: int  # peak RSS less the RSS before the stream was opened (imports done)
    packets: int
    bytes: int


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def camera(size: tuple[int, int], send: Connection) -> None:
    from sparc_video.simulator import TestCamera

    with TestCamera(size=size, threads=2) as cam:
        send.send(cam.url)
        send.recv()  # until told to stop


def bare(url: str, seconds: float, send: Connection) -> None:
    import av

    start_rss = _rss()
    container = av.open(url, options={"rtsp_transport": "tcp"}, timeout=(10, 10))
    started, cpu = time.monotonic(), time.process_time()
    packets = size = 0
    peak = start_rss
    for packet in container.demux(container.streams.video[0]):
        packets += 1 if packet.size else 0
        size += packet.size
        if packets % 25 == 0:
            peak = max(peak, _rss())
        if time.monotonic() - started >= seconds:
            break
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    container.close()
    send.send(Figure(cpu, wall, peak, peak - start_rss, packets, size))


def ours(url: str, seconds: float, send: Connection) -> None:
    from sparc_video.recording.ingest import IngestSource, IngestStats, SegmentPolicy, run_ingest
    from sparc_video.security.address_policy import AddressPolicy

    stop = threading.Event()
    frames = 0
    # Measured from the first segment's open: the same point as the bare read's.
    marks: dict[str, float] = {}
    start_rss = peak = _rss()
    bits = 0.0

    def on_stats(stats: IngestStats) -> None:
        nonlocal peak, bits
        if not marks:
            marks.update(wall=time.monotonic(), cpu=time.process_time())
        peak = max(peak, _rss())
        bits += stats.bitrate_bps
        if time.monotonic() - marks["wall"] >= seconds:
            stop.set()

    def on_segment(segment: object) -> None:
        nonlocal frames
        frames += getattr(segment, "frames", 0)

    with tempfile.TemporaryDirectory() as directory:
        source = IngestSource(url, url, "bench", AddressPolicy(allowed_networks=LOOPBACK))
        policy = SegmentPolicy(target_s=60.0)
        run_ingest(source, policy, Path(directory), on_segment, on_stats, stop)
    wall = time.monotonic() - marks["wall"]
    cpu = time.process_time() - marks["cpu"]
    # The stats come once a second, each with its second's bit rate.
    send.send(Figure(cpu, wall, peak, peak - start_rss, frames, int(bits / 8)))


def measure(size: tuple[int, int], seconds: float) -> tuple[Figure, Figure]:
    spawn = multiprocessing.get_context("spawn")
    cam_end, cam_here = spawn.Pipe()
    cam = spawn.Process(target=camera, args=(size, cam_end))
    cam.start()
    url = cam_here.recv()
    results = []
    processes = []
    for target in (ours, bare):
        here, there = spawn.Pipe()
        process = spawn.Process(target=target, args=(url, seconds, there))
        process.start()
        results.append(here)
        processes.append(process)
    figures = [here.recv() for here in results]
    for process in processes:
        process.join()
    cam_here.send("stop")
    cam.join()
    return figures[0], figures[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sizes", default="320x180,1920x1080")
    args = parser.parse_args()
    for text in args.sizes.split(","):
        width, height = (int(x) for x in text.split("x"))
        ingest, reference = measure((width, height), args.seconds)
        print(f"{width}x{height}, {args.seconds:g} s:")
        for name, fig in (("ingest", ingest), ("bare demux", reference)):
            print(
                f"  {name:10} CPU {fig.cpu_s / fig.wall_s * 100:5.1f}% of a core, "
                f"peak RSS {fig.peak_rss / MB:6.1f} MB, growth {fig.growth / MB:5.1f} MB, "
                f"{fig.packets / fig.wall_s:5.1f} frames/s, "
                f"{fig.bytes * 8 / fig.wall_s / 1e6:5.2f} Mbit/s"
            )
        ratio = ingest.cpu_s / reference.cpu_s if reference.cpu_s else float("inf")
        print(
            f"  ingest/bare: CPU {ratio:.2f}x, RSS growth {ingest.growth / MB:.1f} MB "
            f"(target < 10 MB): {'ok' if ingest.growth < 10 * MB else 'OVER'}"
        )


if __name__ == "__main__":
    main()
