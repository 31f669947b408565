"""The recorder's ingest core: one camera's RTSP stream, by stream copy, into self-describing
fragmented MP4 segments with exact wall-clock times."""

from sparc_video.recording.ingest.aio import ingest
from sparc_video.recording.ingest.models import (
    ClockSource,
    IngestFailure,
    IngestSource,
    IngestStats,
    PacketTap,
    SegmentFile,
    SegmentPolicy,
)
from sparc_video.recording.ingest.run import run_ingest

__all__ = [
    "ClockSource",
    "IngestFailure",
    "IngestSource",
    "IngestStats",
    "PacketTap",
    "SegmentFile",
    "SegmentPolicy",
    "ingest",
    "run_ingest",
]
