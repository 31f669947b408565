"""A camera's timeline over [start, end): recorded spans merged where segments meet, and the
gaps between them with the reason the recorder stored (`reasons.py`); a hole nobody explained
(the recorder is down, or footage was deleted) is a gap without a reason.

A gap is stored only with the segment that ends it, or as the span of a recorded segment
refused because its file changed on disk (`fencing.register_refused`). While a camera is still
down, its recorder's live status names the failure: given as `ongoing`, it explains the time
from the camera's last recorded second up to now.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparc_video.database.pool import Database
from sparc_video.recording.fencing import PendingGap, newest_end
from sparc_video.recording.reasons import GapReason


@dataclass(frozen=True)
class RecordedSpan:
    start_ns: int
    end_ns: int
    segments: int


@dataclass(frozen=True)
class TimelineGap:
    start_ns: int
    end_ns: int
    # None: no stored gap explains this part.
    reason: GapReason | None
    detail: str = ""
    recorder_id: str = ""


@dataclass(frozen=True)
class Timeline:
    camera_id: str
    start_ns: int
    end_ns: int
    spans: tuple[RecordedSpan, ...]
    gaps: tuple[TimelineGap, ...]


async def stored_gaps(
    database: Database, camera_id: str, start_ns: int, end_ns: int
) -> list[TimelineGap]:
    """The stored gaps overlapping [start_ns, end_ns), clipped to it, in time order."""
    rows = await database.fetch(
        "SELECT start_ns, end_ns, reason, detail, recorder_id FROM recording_gaps "
        "WHERE camera_id = $1 AND end_ns > $2 AND start_ns < $3 ORDER BY start_ns, id",
        camera_id,
        start_ns,
        end_ns,
    )
    return [
        TimelineGap(
            max(row["start_ns"], start_ns),
            min(row["end_ns"], end_ns),
            *_explained(row["reason"], row["detail"]),
            row["recorder_id"],
        )
        for row in rows
    ]


def _explained(reason: str, detail: str) -> tuple[GapReason | None, str]:
    """A stored reason this release does not know (a newer recorder wrote it during a rolling
    upgrade) reads as no reason, named in the detail, rather than failing the whole timeline."""
    try:
        return GapReason(reason), detail
    except ValueError:
        return None, f"{reason}: {detail}" if detail else reason


async def timeline(
    database: Database,
    camera_id: str,
    start_ns: int,
    end_ns: int,
    ongoing: PendingGap | None = None,
    now_ns: int = 0,
) -> Timeline:
    """`ongoing`: why the camera is not recorded now (its recorder's last failure); it explains
    the time after the camera's newest segment up to `now_ns`."""
    rows = await database.fetch(
        "SELECT start_ns, end_ns FROM recordings WHERE camera_id = $1 AND start_ns < $3 "
        "AND end_ns > $2 AND start_ns >= $2 - "
        "(SELECT longest_recording_ns FROM cameras WHERE id = $1) ORDER BY start_ns, id",
        camera_id,
        start_ns,
        end_ns,
    )
    spans: list[RecordedSpan] = []
    for row in rows:
        start, end = max(row["start_ns"], start_ns), min(row["end_ns"], end_ns)
        if spans and start <= spans[-1].end_ns:
            last = spans[-1]
            spans[-1] = RecordedSpan(last.start_ns, max(last.end_ns, end), last.segments + 1)
        else:
            spans.append(RecordedSpan(start, end, 1))
    explained = await stored_gaps(database, camera_id, start_ns, end_ns)
    if ongoing is not None:
        since = await newest_end(database, camera_id)
        start, end = max(since or start_ns, start_ns), min(now_ns, end_ns)
        if since is not None and start < end:
            explained.append(TimelineGap(start, end, ongoing.reason, ongoing.detail))
    return Timeline(
        camera_id, start_ns, end_ns, tuple(spans), tuple(_gaps(spans, explained, start_ns, end_ns))
    )


def _gaps(
    spans: list[RecordedSpan], explained: list[TimelineGap], start_ns: int, end_ns: int
) -> list[TimelineGap]:
    """The holes between spans, each cut into the stored gaps that explain its parts."""
    holes: list[tuple[int, int]] = []
    cursor = start_ns
    for span in spans:
        if span.start_ns > cursor:
            holes.append((cursor, span.start_ns))
        cursor = max(cursor, span.end_ns)
    if cursor < end_ns:
        holes.append((cursor, end_ns))
    found: list[TimelineGap] = []
    for hole_start, hole_end in holes:
        at = hole_start
        for gap in explained:
            start, end = max(gap.start_ns, at), min(gap.end_ns, hole_end)
            if end <= start:
                continue
            if start > at:
                found.append(TimelineGap(at, start, None))
            found.append(TimelineGap(start, end, gap.reason, gap.detail, gap.recorder_id))
            at = end
        if at < hole_end:
            found.append(TimelineGap(at, hole_end, None))
    return found
