"""The recording catalogue in a real PostgreSQL: policies (audited), the cameras to record,
fenced segment registration with the gaps it closes, and timelines."""

from __future__ import annotations

import asyncio

import pytest

from sparc_video.audit import Action, AuditLog
from sparc_video.cameras.records import CameraRecord, CameraStore, RecordingRecord
from sparc_video.core.errors import InvalidArgument
from sparc_video.database.pool import Database
from sparc_video.evidence import manifest
from sparc_video.exports.holds import RecordingHolds
from sparc_video.exports.models import CameraRange, ExportRecord
from sparc_video.exports.sources import ExportSources
from sparc_video.media.probe import StreamInfo
from sparc_video.recording.fencing import (
    Fenced,
    PendingGap,
    register_refused,
    register_segment,
    release,
    take_over,
)
from sparc_video.recording.policy import (
    RecordingMode,
    RecordingPolicy,
    cameras_to_record,
    get_policy,
    set_policy,
)
from sparc_video.recording.reasons import GapReason
from sparc_video.recording.timeline import RecordedSpan, TimelineGap, timeline

S = 10**9
T0 = 1_700_000_000 * S


async def add_camera(database: Database, camera_id: str) -> None:
    store = CameraStore(database, RecordingHolds(database))
    await store.create_camera(CameraRecord(id=camera_id, stream_url="rtsp://cam/x"), "alice")


def segment(camera_id: str, start_s: float, end_s: float, recorder: str = "r1") -> RecordingRecord:
    start = T0 + round(start_s * S)
    return RecordingRecord(
        id=f"{camera_id}-{start}",
        camera_id=camera_id,
        object_key=f"cameras/{camera_id}/recorder/{start}.mp4",
        start_ns=start,
        duration_ns=T0 + round(end_s * S) - start,
        stream=StreamInfo("mp4", "h264", 320, 240, 25.0, ""),
        frame_count=25,
        size_bytes=1000,
        sha256="ab" * 32,
        recorder_id=recorder,
        clock_source="receive",
    )


async def test_policies_are_audited_and_list_the_cameras_to_record(database: Database) -> None:
    for camera_id in ("b", "a", "c"):
        await add_camera(database, camera_id)
    assert await get_policy(database, "a") == RecordingPolicy()
    assert await cameras_to_record(database) == []
    on = RecordingPolicy(RecordingMode.CONTINUOUS, segment_s=2.0, retention_days=7)
    await set_policy(database, "b", on, "alice")
    await set_policy(database, "a", RecordingPolicy(RecordingMode.CONTINUOUS), "bob")
    assert await get_policy(database, "b") == on
    assert [c.camera_id for c in await cameras_to_record(database)] == ["a", "b"]
    with pytest.raises(InvalidArgument):
        await set_policy(database, "c", RecordingPolicy(segment_s=0.01), "alice")
    trail = await AuditLog(database).trail(resource="cameras/b")
    changes = [r.entry for r in trail if r.entry.action == Action.CAMERA_UPDATE]
    assert len(changes) == 1 and changes[0].principal == "alice"
    assert changes[0].details["recording_policy"]["mode"] == "CONTINUOUS"


async def test_a_fenced_recorder_registers_nothing_and_the_failover_gap_is_exact(
    database: Database,
) -> None:
    await add_camera(database, "cam")
    first = await take_over(database, "cam", "r1")
    assert first.last_end_ns is None
    await register_segment(database, segment("cam", 0, 2), first.token, None, "system:recorder")
    await register_segment(database, segment("cam", 2, 4), first.token, None, "system:recorder")
    # r1 dies without releasing; r2 takes over: its token is newer, r1's no longer counts.
    second = await take_over(database, "cam", "r2")
    assert second.token > first.token
    assert second.last_end_ns == T0 + 4 * S
    assert second.gap_reason is GapReason.RECORDER_FAILOVER
    with pytest.raises(Fenced):
        await register_segment(database, segment("cam", 4, 6), first.token, None, "system:recorder")
    assert not await release(database, "cam", first.token, GapReason.POLICY_OFF)
    gap = PendingGap(second.gap_reason, "r1 stopped renewing")
    await register_segment(database, segment("cam", 9, 11, "r2"), second.token, gap, "system:r")
    found = await timeline(database, "cam", T0, T0 + 12 * S)
    assert found.spans == (
        RecordedSpan(T0, T0 + 4 * S, 2),
        RecordedSpan(T0 + 9 * S, T0 + 11 * S, 1),
    )
    assert found.gaps == (
        TimelineGap(
            T0 + 4 * S, T0 + 9 * S, GapReason.RECORDER_FAILOVER, "r1 stopped renewing", "r2"
        ),
        TimelineGap(T0 + 11 * S, T0 + 12 * S, None),
    )
    # A release says why: the next holder's first gap carries it.
    assert await release(database, "cam", second.token, GapReason.POLICY_OFF)
    third = await take_over(database, "cam", "r1")
    assert third.gap_reason is GapReason.POLICY_OFF


async def test_a_refused_segment_is_a_gap_of_exactly_its_span_between_the_gaps_around_it(
    database: Database,
) -> None:
    """A segment refused because its file changed is stored as a segment_changed gap of its
    own span, after the gap it would have closed; the next segment's gap starts at its end
    (not at the last footage, which would cover it). Stored once, and fenced."""
    await add_camera(database, "cam")
    held = await take_over(database, "cam", "r1")
    await register_segment(database, segment("cam", 0, 2), held.token, None, "system:r")
    before = PendingGap(GapReason.STREAM_ENDED, "closed")
    changed = PendingGap(GapReason.SEGMENT_CHANGED, "kept as .changed/x.mp4")
    start, end = T0 + 3 * S, T0 + 5 * S
    args = ("cam", start, end, held.token, before, changed, "r1")
    assert await register_refused(database, *args) == S
    assert await register_refused(database, *args) is None  # a restart refusing it again
    after = PendingGap(GapReason.STREAM_STALLED, "no packet")
    # Stored from the refused span's end: the gap's length counts only the time it explains.
    assert await register_segment(database, segment("cam", 6, 8), held.token, after, "r") == S
    found = await timeline(database, "cam", T0, T0 + 8 * S)
    assert found.gaps == (
        TimelineGap(T0 + 2 * S, start, GapReason.STREAM_ENDED, "closed", "r1"),
        TimelineGap(start, end, GapReason.SEGMENT_CHANGED, changed.detail, "r1"),
        TimelineGap(end, T0 + 6 * S, GapReason.STREAM_STALLED, "no packet", "r1"),
    )
    await take_over(database, "cam", "r2")
    with pytest.raises(Fenced):
        await register_refused(
            database, "cam", T0 + 8 * S, T0 + 9 * S, held.token, None, changed, "r1"
        )


async def test_a_reason_this_release_does_not_know_reads_as_no_reason_naming_it(
    database: Database,
) -> None:
    """A newer recorder may store a reason an older server (mid rolling upgrade) lacks: its
    timeline still answers, the gap unexplained but naming the stored reason."""
    await add_camera(database, "cam")
    held = await take_over(database, "cam", "r1")
    await register_segment(database, segment("cam", 0, 1), held.token, None, "system:r")
    await database.execute(
        "ALTER TABLE recording_gaps DROP CONSTRAINT ck_recording_gaps_reason"
    )  # as the newer release's migration would have widened it
    await database.execute(
        "INSERT INTO recording_gaps (camera_id, start_ns, end_ns, reason, detail, recorder_id) "
        "VALUES ('cam', $1, $2, 'lens_on_fire', 'smoke', 'r9')",
        T0 + S,
        T0 + 2 * S,
    )
    found = await timeline(database, "cam", T0, T0 + 2 * S)
    assert found.gaps == (TimelineGap(T0 + S, T0 + 2 * S, None, "lens_on_fire: smoke", "r9"),)


async def test_registrations_racing_a_takeover_end_before_the_takeover_reads(
    database: Database,
) -> None:
    """Whatever the interleaving, the new holder's view of the last end includes every segment
    the old holder got registered, and none is registered after the takeover."""
    await add_camera(database, "race")
    old = await take_over(database, "race", "r1")

    async def old_holder() -> list[int]:
        registered: list[int] = []
        for i in range(40):
            try:
                await register_segment(
                    database, segment("race", i, i + 1), old.token, None, "system:r"
                )
            except Fenced:
                break
            registered.append(i)
        return registered

    task = asyncio.create_task(old_holder())
    await asyncio.sleep(0)
    new = await take_over(database, "race", "r2")
    registered = await task
    expected_end = T0 + (registered[-1] + 1) * S if registered else None
    assert new.last_end_ns == expected_end


async def test_an_ongoing_failure_explains_the_time_after_the_newest_segment_up_to_now(
    database: Database,
) -> None:
    await add_camera(database, "down")
    held = await take_over(database, "down", "r1")
    await register_segment(database, segment("down", 0, 2), held.token, None, "system:r")
    await register_segment(database, segment("down", 2, 4), held.token, None, "system:r")
    failing = PendingGap(GapReason.AUTHENTICATION_FAILED, "the camera refused the log-in")
    now = T0 + 10 * S
    found = await timeline(database, "down", T0, T0 + 20 * S, failing, now)
    assert found.gaps == (
        TimelineGap(T0 + 4 * S, now, GapReason.AUTHENTICATION_FAILED, failing.detail),
        TimelineGap(now, T0 + 20 * S, None),
    )
    # A range after the newest segment: all of it up to now is the open gap.
    later = await timeline(database, "down", T0 + 6 * S, T0 + 8 * S, failing, now)
    assert [(g.start_ns, g.end_ns, g.reason) for g in later.gaps] == [
        (T0 + 6 * S, T0 + 8 * S, GapReason.AUTHENTICATION_FAILED)
    ]
    # A range before the newest segment's end is not explained by a failure after it.
    earlier = await timeline(database, "down", T0 - 2 * S, T0 + 3 * S, failing, now)
    assert earlier.gaps == (TimelineGap(T0 - 2 * S, T0, None),)


async def test_a_camera_range_coverage_names_the_reasons_of_its_gaps(database: Database) -> None:
    await add_camera(database, "cov")
    held = await take_over(database, "cov", "r1")
    await register_segment(database, segment("cov", 0, 2), held.token, None, "system:r")
    gap = PendingGap(GapReason.CAMERA_UNREACHABLE, "connection refused")
    await register_segment(database, segment("cov", 5, 7), held.token, gap, "system:r")
    sources = ExportSources(
        CameraStore(database, RecordingHolds(database)), 3600, database=database
    )
    resolved = await sources.camera_range(CameraRange("cov", T0, T0 + 8 * S))
    assert resolved.coverage is not None
    assert [(g.start_ns - T0, g.end_ns - T0, g.reason) for g in resolved.coverage.gaps] == [
        (2 * S, 5 * S, "camera_unreachable"),
        (7 * S, 8 * S, ""),
    ]


async def test_the_evidence_manifest_names_the_reasons_of_a_camera_range_gaps(
    database: Database,
) -> None:
    """The reasons the coverage found go into the signed manifest's gaps, as the worker
    writes them (`manifest.coverage_gaps`)."""
    await add_camera(database, "man")
    held = await take_over(database, "man", "r1")
    await register_segment(database, segment("man", 0, 2), held.token, None, "system:r")
    gap = PendingGap(GapReason.AUTHENTICATION_FAILED, "the camera refused the log-in")
    await register_segment(database, segment("man", 4, 6), held.token, gap, "system:r")
    sources = ExportSources(
        CameraStore(database, RecordingHolds(database)), 3600, database=database
    )
    wanted = CameraRange("man", T0, T0 + 7 * S)
    resolved = await sources.camera_range(wanted)
    record = ExportRecord(
        id="x", source_key="", operations=[], camera_range=wanted, coverage=resolved.coverage
    )
    context = manifest.ManifestContext(
        sources=[],
        gaps=manifest.coverage_gaps(record),
        outputs=[],
        storage_prefix="exports/x/1/",
        end_time=record.create_time,
        worker_id="w",
        key_id="k",
    )
    assert manifest.build(record, context)["gaps"] == [
        {
            "camera": "cameras/man",
            "start_time": manifest.rfc3339((T0 + 2 * S) / S),
            "end_time": manifest.rfc3339((T0 + 4 * S) / S),
            "reason": "authentication_failed",
        },
        {
            "camera": "cameras/man",
            "start_time": manifest.rfc3339((T0 + 6 * S) / S),
            "end_time": manifest.rfc3339((T0 + 7 * S) / S),
        },
    ]
