"""The per-watcher mailbox: bounded for slow consumers, lossless for state changes."""

from __future__ import annotations

from sparc_video.exports.event_log import EventKind, ExportEvent
from sparc_video.exports.events import Mailbox
from sparc_video.exports.models import ExportRecord, ExportState, ThumbnailOp


def event(seq: int, kind: str, state: ExportState = ExportState.RUNNING) -> ExportEvent:
    record = ExportRecord(id="0" * 20, source_key="k", operations=[ThumbnailOp()], state=state)
    record.progress.percent = seq
    return ExportEvent(event_id=f"1000-{seq}", kind=kind, time=0.0, record=record)


async def test_slow_consumer_gets_latest_progress_and_every_state_change() -> None:
    mailbox = Mailbox("0-0")
    mailbox.put(event(1, EventKind.STATE_CHANGED))
    for seq in range(2, 10_002):
        mailbox.put(event(seq, EventKind.PROGRESS))
    mailbox.put(event(10_002, EventKind.STATE_CHANGED, ExportState.SUCCEEDED))
    delivered = await mailbox.get()
    assert [(e.kind, e.record.progress.percent) for e in delivered] == [
        (EventKind.STATE_CHANGED, 1),
        (EventKind.PROGRESS, 10_001),
        (EventKind.STATE_CHANGED, 10_002),
    ]


async def test_events_at_or_before_the_resume_point_are_not_delivered_twice() -> None:
    mailbox = Mailbox("1000-5")
    for seq in (3, 5, 6, 6, 7):
        mailbox.put(event(seq, EventKind.STATE_CHANGED))
    assert [e.event_id for e in await mailbox.get()] == ["1000-6", "1000-7"]
