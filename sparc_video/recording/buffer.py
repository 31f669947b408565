"""The recorder's local buffer: finished segments wait here until storage and the catalogue
have them, so a storage outage loses nothing and a restart uploads what was left.

Layout: RECORDER_BUFFER_DIR/<camera>/<start_ns>.mp4 with <start_ns>.json beside it (what the
catalogue needs: times, clock source, codecs, the gap the segment closes, and, once the
segment has to wait for storage, its SHA-256 (`pin_hash`): the upload must then store exactly
those bytes). The JSON is written first and the video renamed into place last, so a video with its
description is complete; anything else found at start (the ingest's unfinished files in
`.incoming`, halves of a pair) is removed. A segment whose bytes changed while it waited is
moved to `<camera>/.changed` for inspection, never deleted. Only RECORDER_BUFFER_MAX bounds
the buffer: past it a new segment is dropped and the camera's next segment records a
storage_unavailable gap.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sparc_video.core.file_hashes import file_sha256
from sparc_video.recording.fencing import PendingGap
from sparc_video.recording.reasons import GapReason

log = logging.getLogger(__name__)
INCOMING = ".incoming"
CHANGED = ".changed"


@dataclass(frozen=True)
class BufferedSegment:
    camera_id: str
    path: Path
    start_ns: int
    end_ns: int
    clock_source: str
    size_bytes: int
    video_codec: str
    width: int
    height: int
    fps: float
    audio_codec: str
    audio_note: str
    frames: int
    recorder_id: str
    gap: PendingGap | None = None
    # The camera's fence while it was recorded (`fencing.py`); 0: unknown (an older buffer).
    token: int = 0
    # Hex SHA-256 taken when it started waiting for storage (`pin_hash`), as a restart reads
    # it from the description; "": not hashed before its upload.
    sha256: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["path"] = self.path.name
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, folder: Path, raw: str) -> BufferedSegment:
        data: dict[str, Any] = json.loads(raw)
        data["path"] = folder / data["path"]
        gap = data.get("gap")
        data["gap"] = PendingGap(GapReason(gap["reason"]), gap["detail"]) if gap else None
        return cls(**data)


class SegmentBuffer:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        return self._used

    def incoming_dir(self, camera_id: str) -> Path:
        """Where the camera's ingest writes the segment in progress."""
        folder = self.root / camera_id / INCOMING
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def accept(self, segment: BufferedSegment, source: Path) -> BufferedSegment | None:
        """Move the finished file `source` into the buffer as `segment`; None (the file
        deleted) when that would pass RECORDER_BUFFER_MAX."""
        with self._lock:
            if self._used + segment.size_bytes > self.max_bytes:
                source.unlink(missing_ok=True)
                return None
            self._used += segment.size_bytes
        folder = self.root / segment.camera_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{segment.start_ns}.mp4"
        placed = replace(segment, path=path)
        description = path.with_suffix(".json")
        partial = description.with_suffix(".json.part")
        partial.write_text(placed.to_json())
        os.replace(partial, description)
        os.replace(source, path)
        return placed

    def remove(self, segment: BufferedSegment) -> None:
        segment.path.unlink(missing_ok=True)
        segment.path.with_suffix(".json").unlink(missing_ok=True)
        with self._lock:
            self._used = max(0, self._used - segment.size_bytes)

    def pin_hash(self, segment: BufferedSegment) -> str:
        """The SHA-256 of the segment's bytes now, written into its description (one read, of
        a file finished moments ago) so a restart checks the upload against it too."""
        digest = file_sha256(segment.path)
        description = segment.path.with_suffix(".json")
        partial = description.with_suffix(".json.part")
        partial.write_text(replace(segment, sha256=digest).to_json())
        os.replace(partial, description)
        return digest

    def changed_dir(self, camera_id: str) -> Path:
        """Where the camera's segments whose bytes changed while buffered are kept."""
        return self.root / camera_id / CHANGED

    def set_aside(self, segment: BufferedSegment) -> Path:
        """Move a segment whose bytes changed while buffered, with its description, out of the
        way to `<camera>/.changed` (no longer counted in the buffer's use); the folder."""
        folder = self.changed_dir(segment.camera_id)
        folder.mkdir(parents=True, exist_ok=True)
        description = segment.path.with_suffix(".json")
        os.replace(description, folder / description.name)
        os.replace(segment.path, folder / segment.path.name)
        with self._lock:
            self._used = max(0, self._used - segment.size_bytes)
        return folder

    def leftovers(self) -> list[BufferedSegment]:
        """What an earlier run left, oldest first per camera (counted in the buffer's use);
        unfinished files are removed."""
        found: list[BufferedSegment] = []
        if not self.root.is_dir():
            return found
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            shutil.rmtree(folder / INCOMING, ignore_errors=True)
            for entry in folder.iterdir():
                if entry.suffix == ".part":
                    entry.unlink(missing_ok=True)
            for video in sorted(folder.glob("*.mp4")):
                description = video.with_suffix(".json")
                try:
                    segment = BufferedSegment.from_json(folder, description.read_text())
                except (OSError, ValueError, KeyError, TypeError):
                    log.warning("removing %s: no readable description beside it", video)
                    video.unlink(missing_ok=True)
                    description.unlink(missing_ok=True)
                    continue
                found.append(segment)
            for description in folder.glob("*.json"):
                if not description.with_suffix(".mp4").exists():
                    description.unlink(missing_ok=True)
        with self._lock:
            self._used = sum(s.size_bytes for s in found)
        return sorted(found, key=lambda s: (s.camera_id, s.start_ns))
