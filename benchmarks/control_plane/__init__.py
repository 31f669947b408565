"""Control-plane benchmark: how much the queue, the streams and the API add to an export.

    .venv/bin/python -m benchmarks.control_plane [--quick] [--only pickup,progress,...]

Starts the real service as separate processes (`sparc-video serve`, and `sparc-video worker`
where a figure needs one) against a local Redis (its own key prefix), a PostgreSQL database of
its own (the system of record, created and migrated for the run, dropped at its end) and moto's
S3 server, drives load from this process with grpc.aio clients (progress events are published
from another process, as a worker would), and prints each figure with p50/p95/p99 beside its
target.

PostgreSQL: the server at $DATABASE_URL when it answers, else the one on 127.0.0.1:5432 (trust
auth, user postgres or root), else an embedded PostgreSQL 16 (pgserver) started for the run.

Figures (targets from issue 9):

- pickup: CreateExport returned → the worker's job started (the record's start_time), idle
  worker, one export at a time.
- progress: an event written to Redis → received by each of 100 WatchExport clients.
- CreateExport / GetExport: calls per second and latency from one client process, beside a
  grpc.health Check on the same server (the floor cost of one Python gRPC call here).
- memory: Redis bytes per 100,000 finished exports while they are retained and after their
  retention (finished records expire from Redis), and PostgreSQL bytes per 100,000 exports.
- watchers: 2,000 WatchExport streams over 200 exports on one server process: its RSS, its Redis
  connections, and whether every stream saw every event in order.
- queue overhead: 1,000 tiny exports through one worker with 4 slots; per export, the time its
  slot sat between the previous export's end and this export's start.
- priority: an interactive export created behind a queue of batch exports: how long it waits and
  how many batch exports start before it.
- storage: upload and download of one object through S3Storage (aioboto3) and through boto3's
  managed transfer in the same run, with each side's peak RSS.
"""

from __future__ import annotations

# The helpers other benchmarks use, under the name they had when this package was one module.
from benchmarks.control_plane.processes import PYTHON, ROOT, Processes, cpu_s, rss_mb
from benchmarks.control_plane.results import pct
from benchmarks.control_plane.services import local_redis, run_database

__all__ = ["PYTHON", "ROOT", "Processes", "cpu_s", "local_redis", "pct", "rss_mb", "run_database"]
