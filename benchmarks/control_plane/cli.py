"""The command line: sets up a run (Redis, database, moto, the server), runs the chosen
scenarios and prints (and optionally writes) their rows."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import benchmarks.control_plane as package
from benchmarks.control_plane.env import Env
from benchmarks.control_plane.memory import bench_memory
from benchmarks.control_plane.processes import Processes
from benchmarks.control_plane.results import Row, pct, print_table
from benchmarks.control_plane.rpc import bench_rpc
from benchmarks.control_plane.services import (
    clean_redis,
    local_redis,
    moto_server,
    new_signing_key,
    run_database,
    s3_client,
)
from benchmarks.control_plane.storage import MIB, bench_storage
from benchmarks.control_plane.streams import bench_progress, bench_watchers
from benchmarks.control_plane.worker import bench_pickup, bench_priority, bench_queue_overhead
from sparc_video.core.embedded_redis import free_port
from sparc_video.core.event_loop import install_uvloop


def make_clip(path: Path, width: int = 160, height: int = 90, frames: int = 10) -> None:
    """A 1 s H.264 clip: the source of the tiny exports."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for n in range(frames):
            picture = np.full((height, width, 3), (n * 25) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


SCENARIOS = (
    "pickup",
    "progress",
    "rpc",
    "memory",
    "watchers",
    "queue",
    "priority",
    "storage",
)


async def run_scenarios(env: Env, args: argparse.Namespace, only: set[str]) -> list[Row]:
    quick = args.quick
    rows: list[Row] = []
    steps: list[tuple[str, Callable[[], Awaitable[list[Row]]]]] = [
        ("pickup", lambda: bench_pickup(env, 40 if quick else 200)),
        ("progress", lambda: bench_progress(env, 100, 50 if quick else 200, 20.0)),
        (
            "rpc",
            lambda: bench_rpc(env, 2000 if quick else 10000, 5000 if quick else 20000, 16),
        ),
        ("memory", lambda: bench_memory(env, 2000 if quick else 10000, 86400)),
        ("watchers", lambda: bench_watchers(env, 200, 10, 5 if quick else 10, 0.5)),
        ("queue", lambda: bench_queue_overhead(env, 200 if quick else 1000, 4)),
        ("priority", lambda: bench_priority(env, 12 if quick else 30, 2)),
    ]
    for name, step in steps:
        if name in only:
            print(f"... {name}", file=sys.stderr, flush=True)
            rows += await step()
    if "storage" in only:
        print("... storage", file=sys.stderr, flush=True)
        size = (128 if quick else 1024) * MIB
        rows += await asyncio.to_thread(bench_storage, env, size, 2)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        # The usage line as it read when this was one file (argparse would now say __main__.py).
        prog="control_plane.py",
        description=(package.__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, 128 MiB storage")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated: {','.join(SCENARIOS)}"
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    load_at_start = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="sparc-bench-"))
    procs = Processes(workdir)
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    rows: list[Row] = []
    try:
        with (
            local_redis(workdir) as redis_url,
            run_database(workdir) as database_url,
            moto_server(procs) as endpoint,
        ):
            bucket = f"bench-{uuid.uuid4().hex[:12]}"
            client = s3_client(endpoint)
            client.create_bucket(Bucket=bucket)
            env = Env(
                redis_url=redis_url,
                redis_port=int(redis_url.rsplit(":", 1)[1].split("/")[0]),
                prefix=prefix,
                s3_endpoint=endpoint,
                bucket=bucket,
                grpc_port=free_port(),
                workdir=workdir,
                procs=procs,
                database_url=database_url,
                signing_key=new_signing_key(),
            )
            clip = workdir / "clip.mp4"
            make_clip(clip)
            client.upload_file(str(clip), bucket, env.source_key)
            env.start_server()
            # The load generator shares the 2 cores with the service: keep its loop cheap.
            install_uvloop()
            try:
                rows = asyncio.run(run_scenarios(env, args, only))
            finally:
                env.stop_worker()
                if env.server is not None:
                    procs.stop(env.server)
                clean_redis(redis_url, prefix)
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work dir kept: {workdir}", file=sys.stderr)
    # Other work on the machine moves every figure: say how busy it was.
    header = (
        f"sparc-video control plane, {os.cpu_count()} CPUs, "
        f"{'quick' if args.quick else 'full'} run, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    print_table(rows, header)
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "figure": r.figure,
                        "p50": pct(r.samples, 0.5) if r.samples else None,
                        "p95": pct(r.samples, 0.95) if r.samples else None,
                        "p99": pct(r.samples, 0.99) if r.samples else None,
                        "measured": r.measured,
                        "target": r.target,
                        "met": r.met,
                    }
                    for r in rows
                ],
                indent=1,
            )
        )
    return 0 if all(r.met is not False for r in rows) else 1
