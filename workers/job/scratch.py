"""Each attempt's scratch directory under VIDEO_TEMP_DIR, and the sweep of those no attempt owns.

An attempt removes its own directory in every outcome it lives to see; one whose worker was
SIGKILLed or OOM-killed never does, and the next attempt runs in a directory of its own. So
every worker sweeps the temp dir at start and then every reconcile interval, on its own host
(workers on other machines have other disks, so this is not the reconciler's cluster-wide
round): a directory goes when its export is gone or finished, or has moved to a later attempt,
or its attempt has held no lease for a whole lease TTL (the lease expires a few seconds after its
worker died). A directory whose attempt is still RUNNING under a held lease is kept: it may
belong to another worker process sharing this temp dir. So is one an attempt of this process is
running, whatever Redis says: a Redis restarted empty has no leases at all, and sweeping then
deleted a live attempt's files under its encoder (the export FAILED, INTERNAL, instead of being
handed back when its lease keeper noticed the loss). The TTL's wait covers the same moment for
other processes' attempts: their keepers stop them within a third of it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections.abc import Collection
from pathlib import Path

from sparc_video.core.errors import ExportNotFound
from sparc_video.exports.models import ExportState
from sparc_video.exports.records import ExportStore

log = logging.getLogger(__name__)

_NAME = re.compile(r"(?P<export_id>[0-9a-zA-Z_-]+)\.(?P<attempt>[0-9]+)")


def attempt_dir(temp_dir: Path, export_id: str, attempt: int) -> Path:
    return temp_dir / f"{export_id}.{attempt}"


async def sweep(
    temp_dir: Path,
    store: ExportStore,
    *,
    in_use: Collection[str] = (),
    unleased_since: dict[str, float] | None = None,
    lease_ttl_s: float = 0.0,
) -> list[str]:
    """Remove the scratch of attempts that are over; the names removed. `in_use`: the
    directories this process's attempts are running in; `unleased_since` (kept between
    sweeps): when each RUNNING attempt's directory was first seen without a lease, removed once
    that is `lease_ttl_s` ago."""
    try:
        entries = await asyncio.to_thread(lambda: sorted(temp_dir.iterdir()))
    except FileNotFoundError:
        return []
    unleased = {} if unleased_since is None else unleased_since
    removed: list[str] = []
    now = time.monotonic()
    for path in entries:
        match = _NAME.fullmatch(path.name)
        if match is None or path.name in in_use:
            unleased.pop(path.name, None)
            continue
        verdict = await _abandoned(store, match["export_id"], int(match["attempt"]))
        if verdict == "running":
            unleased.pop(path.name, None)
            continue
        if verdict == "unleased" and now - unleased.setdefault(path.name, now) < lease_ttl_s:
            continue
        unleased.pop(path.name, None)
        await asyncio.to_thread(_remove, path)
        removed.append(path.name)
    if removed:
        log.info("swept scratch of %d finished attempt(s): %s", len(removed), ", ".join(removed))
    return removed


async def sweep_forever(
    temp_dir: Path,
    store: ExportStore,
    interval_s: float,
    in_use: Collection[str],
    lease_ttl_s: float,
) -> None:
    unleased_since: dict[str, float] = {}
    while True:
        try:
            await sweep(
                temp_dir,
                store,
                in_use=in_use,
                unleased_since=unleased_since,
                lease_ttl_s=lease_ttl_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis down: the scratch waits for the next round
            log.warning("scratch sweep failed: %s", exc)
        await asyncio.sleep(interval_s)


async def _abandoned(store: ExportStore, export_id: str, attempt: int) -> str:
    """ "over" (the attempt ended), "unleased" (RUNNING at it, no lease) or "running"."""
    try:
        record = await store.get(export_id)
    except ExportNotFound:
        return "over"
    if record.state != ExportState.RUNNING or record.attempt != attempt:
        # QUEUED/RETRYING: the attempt is over and a later one gets its own directory.
        return "over"
    # RUNNING at this attempt: ours to sweep only once its lease has lapsed.
    return "unleased" if await store.lease_holder(export_id) is None else "running"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
