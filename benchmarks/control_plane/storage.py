"""The storage figures: one object up and down through S3Storage and through boto3's managed
transfer, each transfer in a process of its own."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.control_plane.env import Env
from benchmarks.control_plane.results import Row
from benchmarks.control_plane.services import ACCESS_KEY, REGION, SECRET_KEY, s3_client

MIB = 1024 * 1024


def transfer_main(which: str, direction: str, args: dict[str, Any], out: Any) -> None:
    """One transfer in a fresh process, so its peak RSS is its own."""
    path = Path(args["path"])
    key = args["key"]
    if which == "boto3":
        client = s3_client(args["endpoint"])
        start = time.perf_counter()
        if direction == "upload":
            client.upload_file(str(path), args["bucket"], key)
        else:
            client.download_file(args["bucket"], key, str(path))
    else:
        from pydantic import SecretStr

        from sparc_video.core.settings import Settings
        from sparc_video.storage.s3 import S3Storage

        settings = Settings(
            s3_bucket=args["bucket"],
            s3_endpoint_url=args["endpoint"],
            aws_region=REGION,
            aws_access_key_id=SecretStr(ACCESS_KEY),
            aws_secret_access_key=SecretStr(SECRET_KEY),
        )

        async def go() -> float:
            # Clients are opened once per process in the service: not part of a transfer.
            storage = await S3Storage.open(settings)
            try:
                start = time.perf_counter()
                if direction == "upload":
                    await storage.upload_file(path, key, "application/octet-stream")
                else:
                    await storage.download_file(key, path)
                return time.perf_counter() - start
            finally:
                await storage.aclose()

        elapsed = asyncio.run(go())
    if which == "boto3":
        elapsed = time.perf_counter() - start
    out.put((elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run_transfer(which: str, direction: str, args: dict[str, Any]) -> tuple[float, float]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=transfer_main, args=(which, direction, args, out))
    proc.start()
    result = out.get(timeout=1800)
    proc.join(60)
    return result  # type: ignore[no-any-return]


def bench_storage(env: Env, size: int, repeats: int) -> list[Row]:
    client = s3_client(env.s3_endpoint)
    source = env.workdir / "blob.bin"
    block = os.urandom(8 * MIB)
    with source.open("wb") as f:
        for _ in range(size // len(block)):
            f.write(block[:-1] + os.urandom(1))  # no two parts identical
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for repeat in range(repeats):
        # Alternate who goes first: moto gets slower as it holds more, the machine is shared.
        for which in ("sparc", "boto3") if repeat % 2 == 0 else ("boto3", "sparc"):
            key = f"bench/blob-{which}.bin"
            up = run_transfer(
                which,
                "upload",
                {
                    "path": str(source),
                    "key": key,
                    "bucket": env.bucket,
                    "endpoint": env.s3_endpoint,
                },
            )
            results.setdefault((which, "upload"), []).append(up)
            target = env.workdir / f"down-{which}.bin"
            down = run_transfer(
                which,
                "download",
                {
                    "path": str(target),
                    "key": key,
                    "bucket": env.bucket,
                    "endpoint": env.s3_endpoint,
                },
            )
            results.setdefault((which, "download"), []).append(down)
            assert target.stat().st_size == size
            target.unlink()
            client.delete_object(Bucket=env.bucket, Key=key)
    source.unlink()
    rows = []
    size_mb = size / MIB
    for direction in ("upload", "download"):
        ours = [size_mb / t for t, _ in results[("sparc", direction)]]
        theirs = [size_mb / t for t, _ in results[("boto3", direction)]]
        ours_rss = max(r for _, r in results[("sparc", direction)])
        theirs_rss = max(r for _, r in results[("boto3", direction)])
        ratio = statistics.median(ours) / statistics.median(theirs)
        rows.append(
            Row(
                f"storage {direction}: {size_mb:,.0f} MiB through moto",
                [],
                f"S3Storage {statistics.median(ours):.0f} MiB/s (peak RSS {ours_rss:.0f} MB), "
                f"boto3 {statistics.median(theirs):.0f} MiB/s ({theirs_rss:.0f} MB): "
                f"{ratio:.2f}x",
                "≥ 0.8x boto3, bounded memory",
                ratio >= 0.8 and ours_rss < 200 + size / MIB / 8,
            )
        )
    return rows
