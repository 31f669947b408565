"""How many threads one export's media work may use: the cores this worker may run on (CPU
affinity and, in a container, the cgroup CPU quota, not the host's core count) shared by the
VIDEO_WORKER_CONCURRENCY jobs it runs at once.

FFmpeg's "auto" thread counts follow the affinity only: in a container limited to 4 of a
16-core host's CPUs it would start 16 to 24 threads per codec, per job.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Up to this many cores a pass runs its stages one after another: with two cores the codecs'
# own threads already keep both busy, and stage threads only add switching (see
# docs/performance.md, "Media benchmarks").
SERIAL_UP_TO_CORES = 2


def quota_from_cpu_max(text: str) -> float | None:
    """Cores a cgroup v2 `cpu.max` ("QUOTA PERIOD", QUOTA "max": no limit) allows; None for
    no limit or a line that does not parse."""
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _quota(fields[0], fields[1])


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in cores (cgroup v2, else v1); None: no quota.

    A container sees its own cgroup at the root of its cgroup filesystem, which is where this
    looks; a missing or unreadable file means no quota.
    """
    try:
        return quota_from_cpu_max((root / "cpu.max").read_text())
    except OSError:
        pass
    for folder in ("cpu", "cpu,cpuacct"):
        try:
            quota = (root / folder / "cpu.cfs_quota_us").read_text()
            period = (root / folder / "cpu.cfs_period_us").read_text()
        except OSError:
            continue
        return _quota(quota, period)  # v1 says -1 for no quota
    return None


def _quota(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def usable_cores(root: Path = CGROUP_ROOT) -> int:
    """Cores this process may keep busy: its CPU affinity, capped by the cgroup quota (a
    fractional quota rounds up: the part of a core still gets work done)."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_quota(root)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


@dataclass(frozen=True)
class ThreadBudget:
    """The threads one job's media work may use: `cores` of the `usable` cores."""

    cores: int
    usable: int

    @property
    def codec_threads(self) -> int:
        """For decoders, encoders and filter graphs: 0 (FFmpeg's own choice, from the
        affinity) when the job has every usable core, else the budget."""
        return 0 if self.cores >= self.usable else self.cores

    @property
    def x264_threads(self) -> int:
        """x264 runs best with half again as many frame threads as cores (its own "auto")."""
        return 0 if self.cores >= self.usable else max(1, self.cores * 3 // 2)

    @property
    def pipelined(self) -> bool:
        """Whether decoding, filtering and encoding run in threads of their own."""
        return self.cores > SERIAL_UP_TO_CORES


def job_budget(concurrency: int = 1, root: Path = CGROUP_ROOT) -> ThreadBudget:
    """The usable cores shared by `concurrency` jobs (VIDEO_WORKER_CONCURRENCY), at least one
    each."""
    usable = usable_cores(root)
    return ThreadBudget(max(1, usable // max(1, concurrency)), usable)
