"""The bytes a recorder catalogues are the bytes it recorded, through local storage's hard-link
path with the uploader driven directly: a segment stored right away is read once (by the
upload); one that has to wait for storage is hashed into its description when it starts
waiting, and if it changed on disk meanwhile it is not catalogued, its object is deleted and
the file kept aside for inspection, while the segments after it go up as usual."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sparc_video.core.errors import ObjectNotFound, Unavailable
from sparc_video.core.settings import Settings
from sparc_video.database.pool import Database
from sparc_video.recording import buffer as buffer_module
from sparc_video.recording import fencing
from sparc_video.recording.buffer import BufferedSegment, SegmentBuffer
from sparc_video.recording.reasons import GapReason
from sparc_video.recording.timeline import timeline
from sparc_video.recording.uploader import Uploader, object_key
from sparc_video.storage import LocalStorage, ObjectInfo
from tests.recorder_helpers import add_recorded_camera, wait_for

SECOND_NS = 1_000_000_000
SIZE = 10_000


class _Storage(LocalStorage):
    """Local storage that refuses uploads while `away` is set, as a full or unmounted disk."""

    away = False

    async def upload_file(
        self,
        path: Path,
        key: str,
        content_type: str,
        sha256: str | None = None,
        *,
        give_up: bool = False,
    ) -> ObjectInfo:
        if self.away:
            raise Unavailable("storage away (test)")
        return await super().upload_file(path, key, content_type, sha256, give_up=give_up)


def _segment(buffer: SegmentBuffer, index: int, token: int) -> BufferedSegment:
    source = buffer.incoming_dir("cam") / f"{index}.mp4"
    source.write_bytes(bytes([index]) * SIZE)
    start = (index + 1) * SECOND_NS
    placed = buffer.accept(
        BufferedSegment(
            camera_id="cam",
            path=source,
            start_ns=start,
            end_ns=start + SECOND_NS,
            clock_source="receive",
            size_bytes=SIZE,
            video_codec="h264",
            width=160,
            height=96,
            fps=10.0,
            audio_codec="",
            audio_note="",
            frames=10,
            recorder_id="rec",
            token=token,
        ),
        source,
    )
    assert placed is not None
    return placed


def _described_hash(segment: BufferedSegment) -> str:
    return str(json.loads(segment.path.with_suffix(".json").read_text()).get("sha256", ""))


async def test_a_segment_stored_right_away_is_read_once(
    service_settings: Callable[..., Settings],
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = service_settings(recorder_buffer_dir=tmp_path / "buffer")
    store = await add_recorded_camera(database, "cam", "rtsp://127.0.0.1:8554/none")
    takeover = await fencing.take_over(database, "cam", "rec")
    hashed: list[Path] = []
    monkeypatch.setattr(buffer_module, "file_sha256", lambda path: hashed.append(path) or "")
    buffer = SegmentBuffer(settings.recorder_buffer_dir, 1 << 30)
    uploader = Uploader(_Storage.from_settings(settings), database, buffer)
    uploader.hold("cam", takeover.token)
    uploader.put(_segment(buffer, 0, takeover.token))
    try:
        assert await uploader.drain("cam", 60)
    finally:
        await uploader.aclose()
    (found,) = await store.all_recordings("cam")
    assert found.sha256 == hashlib.sha256(bytes([0]) * SIZE).hexdigest()
    assert hashed == []  # the upload's read was the only one


async def test_a_segment_changed_while_storage_is_away_is_refused_and_kept(
    service_settings: Callable[..., Settings], database: Database, tmp_path: Path
) -> None:
    settings = service_settings(recorder_buffer_dir=tmp_path / "buffer")
    storage = _Storage.from_settings(settings)
    storage.away = True
    store = await add_recorded_camera(database, "cam", "rtsp://127.0.0.1:8554/none")
    takeover = await fencing.take_over(database, "cam", "rec")
    buffer = SegmentBuffer(settings.recorder_buffer_dir, 1 << 30)
    first, second = (_segment(buffer, n, takeover.token) for n in range(2))
    uploader = Uploader(storage, database, buffer)
    uploader.hold("cam", takeover.token)
    uploader.put(first)
    uploader.put(second)
    try:

        async def hashed_while_waiting() -> bool:
            return all(_described_hash(s) for s in (first, second))

        await wait_for(hashed_while_waiting, 30, "the waiting segments hashed")
        assert _described_hash(first) == hashlib.sha256(bytes([0]) * SIZE).hexdigest()
        second_hash = _described_hash(second)
        changed = bytearray(first.path.read_bytes())
        changed[SIZE // 2] ^= 0xFF
        first.path.write_bytes(changed)
        storage.away = False
        assert await uploader.drain("cam", 60)
    finally:
        await uploader.aclose()
    found = await store.all_recordings("cam")
    assert [r.start_ns for r in found] == [second.start_ns]
    assert found[0].sha256 == second_hash
    kept = buffer.root / "cam" / ".changed" / first.path.name
    assert kept.read_bytes() == changed and kept.with_suffix(".json").exists()
    with pytest.raises(ObjectNotFound):
        await storage.stat(object_key("cam", first.start_ns))
    # Out of the buffer's count, and not uploaded again by the next start.
    assert buffer.used_bytes == 0
    assert await asyncio.to_thread(buffer.leftovers) == []
    # Its time is explained: a gap of exactly its span, naming where the file is kept.
    line = await timeline(database, "cam", first.start_ns, second.end_ns)
    assert [(g.start_ns, g.end_ns, g.reason) for g in line.gaps] == [
        (first.start_ns, first.end_ns, GapReason.SEGMENT_CHANGED)
    ], line.gaps
    assert str(kept) in line.gaps[0].detail and line.gaps[0].recorder_id == "rec"
