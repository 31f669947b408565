"""Recorder benchmark: one recorder process recording N cameras of 1080p H.264 at 4 Mbit/s.

    .venv/bin/python -m benchmarks.recorder [--cameras 50] [--seconds 120] [--segment-s 60]

Serves `--cameras` test cameras (sparc_video.simulator: 1920x1080, 25 fps, 4 Mbit/s, RTCP) from
one process of their own, so their cost is not counted: they share one pre-encoded 10 s loop.
Registers them in a fresh PostgreSQL database (created and migrated for the run, dropped at its
end: $DATABASE_URL, else one on 127.0.0.1:5432, else an embedded one), starts one real
`sparc-video recorder` process on a local Redis (its own key prefix) and local storage in a
temporary directory, turns every camera's recording on (CONTINUOUS, `--segment-s` segments) and
measures, after `--warmup-s` with every camera playing, for `--seconds` (targets from issue 16):

- CPU: the recorder process's user + system time over the window, in cores (target: 50 cameras
  under half a core in total);
- memory: its RSS per camera, as growth over the recorder idle before any camera was on (peak
  during the window), and as all of its RSS shared out (target: under 10 MB per camera);
- catalogue latency: a segment's end (its wall-clock end, from the camera's RTCP) to the moment
  this process first sees its Recording in PostgreSQL (polled every 0.1 s), p50/p95/max
  (target: within 2 s);
- gaps: holes between consecutive segments of a camera and gap rows the recorder stored (none
  expected); achieved frames per second and bit rate from the recordings themselves.

The machine's load average is printed too: the cameras, PostgreSQL and Redis share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import asyncpg

from benchmarks.control_plane.processes import PYTHON, ROOT, Processes, cpu_s, rss_mb
from benchmarks.control_plane.results import pct
from benchmarks.control_plane.services import local_redis, run_database
from sparc_video.cameras.records import CameraRecord, CameraStore, RecordingRecord
from sparc_video.database.pool import open_database
from sparc_video.database.urls import asyncpg_dsn
from sparc_video.exports.holds import RecordingHolds
from sparc_video.recording.policy import RecordingMode, RecordingPolicy, set_policy

SIZE = (1920, 1080)
BITRATE = 4_000_000
LOOP_S = 10.0
POLL_S = 0.1
# Targets (issue 16), for 50 cameras.
TARGET_CORES_FOR_50 = 0.5
TARGET_MB_PER_CAMERA = 10.0
TARGET_CATALOGUE_S = 2.0


def serve_cameras(count: int, pipe: Connection) -> None:
    """The cameras' process: `count` test cameras sharing one loop; answers "playing" with how
    many connections play, and ends on "stop"."""
    from sparc_video.simulator import TestCamera

    cameras = [TestCamera(size=SIZE, bitrate=BITRATE, loop_s=LOOP_S) for _ in range(count)]
    for camera in cameras:
        camera.start()
    try:
        pipe.send([camera.url for camera in cameras])
        while pipe.recv() == "playing":
            pipe.send(sum(camera.playing for camera in cameras))
    finally:
        for camera in cameras:
            camera.stop()


@dataclass
class Catalogue:
    """Recordings as this process first saw them: id → seconds from its end to then."""

    latency_s: dict[str, float] = field(default_factory=dict)

    async def poll(self, connection: asyncpg.Connection, until: float) -> None:
        while time.monotonic() < until:
            rows = await connection.fetch("SELECT id, end_ns FROM recordings")
            now = time.time()
            for row in rows:
                if row["id"] not in self.latency_s:
                    self.latency_s[row["id"]] = now - row["end_ns"] / 1e9
            await asyncio.sleep(POLL_S)


def recorder_env(redis_url: str, database_url: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'generated'}",
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"bench-recorder-{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": database_url,
        "LOCAL_STORAGE_DIR": str(workdir / "storage"),
        "RECORDER_BUFFER_DIR": str(workdir / "buffer"),
        "CAMERA_ALLOWED_NETWORKS": "127.0.0.0/8",
    }


async def playing(pipe: Connection) -> int:
    pipe.send("playing")
    return int(await asyncio.to_thread(pipe.recv))


async def measure(args: argparse.Namespace, workdir: Path, procs: Processes) -> None:
    spawn = multiprocessing.get_context("spawn")
    pipe, child_end = spawn.Pipe()
    cameras = spawn.Process(target=serve_cameras, args=(args.cameras, child_end), daemon=True)
    cameras.start()
    print(f"... encoding the {LOOP_S:g} s loop, starting {args.cameras} cameras", flush=True)
    urls: list[str] = await asyncio.to_thread(pipe.recv)
    try:
        with local_redis(workdir) as redis_url, run_database(workdir) as database_url:
            await record(args, workdir, procs, pipe, urls, redis_url, database_url)
    finally:
        pipe.send("stop")
        cameras.join(30)


async def record(
    args: argparse.Namespace,
    workdir: Path,
    procs: Processes,
    pipe: Connection,
    urls: list[str],
    redis_url: str,
    database_url: str,
) -> None:
    async with open_database(database_url) as database:
        store = CameraStore(database, RecordingHolds(database))
        ids = [f"bench-{n:03d}" for n in range(len(urls))]
        for camera_id, url in zip(ids, urls, strict=True):
            await store.create_camera(CameraRecord(id=camera_id, stream_url=url), "bench")
        command = [PYTHON, "-m", "sparc_video.cli.main", "--log-level", "WARNING", "recorder"]
        recorder = procs.start("recorder", command, recorder_env(redis_url, database_url, workdir))
        # Idle: imports done, first rounds run, nothing to record yet.
        await asyncio.sleep(args.idle_s)
        if recorder.poll() is not None:
            raise RuntimeError(f"recorder exited; see {workdir / 'recorder.log'}")
        idle_mb = rss_mb(recorder.pid)
        policy = RecordingPolicy(RecordingMode.CONTINUOUS, segment_s=args.segment_s)
        for camera_id in ids:
            await set_policy(database, camera_id, policy, "bench")
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        catalogue = Catalogue()
        started = time.monotonic()
        polling = asyncio.create_task(
            catalogue.poll(connection, started + args.warmup_s + args.seconds + 120)
        )
        try:
            deadline = started + 120
            while (count := await playing(pipe)) < len(ids):
                if time.monotonic() > deadline or recorder.poll() is not None:
                    raise RuntimeError(f"{count} of {len(ids)} cameras playing")
                await asyncio.sleep(0.5)
            print(f"... {len(ids)} cameras playing after {time.monotonic() - started:.1f} s")
            await asyncio.sleep(args.warmup_s)
            cpu0, t0 = cpu_s(recorder.pid), time.monotonic()
            peak_mb = 0.0
            while time.monotonic() - t0 < args.seconds:
                peak_mb = max(peak_mb, rss_mb(recorder.pid))
                await asyncio.sleep(1.0)
            cores = (cpu_s(recorder.pid) - cpu0) / (time.monotonic() - t0)
            load = os.getloadavg()
            still_playing = await playing(pipe)
        finally:
            polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)
            await connection.close()
            procs.stop(recorder, 60)
        found = {camera_id: await store.all_recordings(camera_id) for camera_id in ids}
        gap_rows = await database.fetch("SELECT reason FROM recording_gaps")
    report(
        args,
        Figures(cores, idle_mb, peak_mb, load, still_playing, catalogue, found),
        Counter(row["reason"] for row in gap_rows),
    )


@dataclass
class Figures:
    cores: float
    idle_mb: float
    peak_mb: float
    load: tuple[float, float, float]
    still_playing: int
    catalogue: Catalogue
    found: dict[str, list[RecordingRecord]]


def holes(segments: list[RecordingRecord]) -> int:
    """Places where a camera's next segment does not start where the previous one ended."""
    return sum(1 for a, b in itertools.pairwise(segments) if b.start_ns != a.end_ns)


def report(args: argparse.Namespace, f: Figures, gap_reasons: Counter[str]) -> None:
    n = args.cameras
    segments = [s for found in f.found.values() for s in found]
    seconds = sum(s.duration_ns for s in segments) / 1e9 or float("nan")
    fps = sum(s.frame_count for s in segments) / seconds
    mbps = sum(s.size_bytes for s in segments) * 8 / seconds / 1e6
    latency = sorted(f.catalogue.latency_s.values())
    growth = (f.peak_mb - f.idle_mb) / n
    target_cores = TARGET_CORES_FOR_50 * n / 50
    print(
        f"\n{n} cameras, 1920x1080 H.264 {BITRATE / 1e6:g} Mbit/s, {args.segment_s:g} s segments, "
        f"{args.seconds:g} s window after {args.warmup_s:g} s warm-up "
        f"({f.still_playing} of {n} still playing at its end)"
    )
    print(
        f"  recorder CPU      {f.cores:.3f} cores ({f.cores / n * 1000:.1f} millicores a camera; "
        f"target < {target_cores:.2f}: x{f.cores / target_cores:.2f})"
    )
    print(
        f"  recorder RSS      idle {f.idle_mb:.1f} MB, peak {f.peak_mb:.1f} MB: "
        f"{growth:.1f} MB a camera over idle, {f.peak_mb / n:.1f} MB a camera in all "
        f"(target < {TARGET_MB_PER_CAMERA:g}: x{growth / TARGET_MB_PER_CAMERA:.2f})"
    )
    if latency:
        p50, p95, worst = pct(latency, 0.5), pct(latency, 0.95), latency[-1]
        print(
            f"  catalogue latency {len(latency)} segments, p50 {p50:.2f} s, p95 {p95:.2f} s, "
            f"max {worst:.2f} s (target <= {TARGET_CATALOGUE_S:g}: "
            f"x{worst / TARGET_CATALOGUE_S:.2f}; polled every {POLL_S:g} s)"
        )
    else:
        print("  catalogue latency no segment registered: run longer than --segment-s")
    holes_total = sum(holes(found) for found in f.found.values())
    reasons = ", ".join(f"{r}: {c}" for r, c in sorted(gap_reasons.items())) or "none"
    print(f"  gaps              {holes_total} holes between segments; gap rows: {reasons}")
    print(f"  achieved          {fps:.2f} fps, {mbps:.2f} Mbit/s a camera")
    print(f"  load average      {f.load[0]:.2f} {f.load[1]:.2f} {f.load[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120.0, help="the measured window")
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--segment-s", type=float, default=60.0)
    parser.add_argument("--idle-s", type=float, default=5.0, help="recorder idle before cameras")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as directory:
        workdir = Path(directory)
        procs = Processes(workdir)
        try:
            asyncio.run(measure(args, workdir, procs))
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
