"""What the ingest core hands the recorder: the source and policy it is given, the segments and
statistics it delivers, and the one failure it raises (with the gap reason it stands for)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from sparc_video.recording.reasons import GapReason
from sparc_video.security.address_policy import AddressPolicy


class ClockSource(StrEnum):
    """Where a segment's wall-clock times come from: the camera's RTCP sender reports (its own
    NTP-disciplined clock), or this host's clock when the packets arrived."""

    RTCP = "rtcp"
    RECEIVE = "receive"


@dataclass(frozen=True)
class IngestSource:
    url: str  # full rtsp:// URL, credentials composed in: never logged
    display_url: str  # safe to log and show
    # Written into each segment's init, so a segment names its camera/stream by itself.
    stream_id: str = ""
    # The camera address policy (CAMERA_ALLOWED_NETWORKS): checked, and the address pinned,
    # right before connecting, as for every other camera connection.
    policy: AddressPolicy = field(default_factory=AddressPolicy)


@dataclass(frozen=True)
class SegmentPolicy:
    target_s: float = 60.0  # cut at the first keyframe at or after this length
    part_s: float = 1.0  # fMP4 fragment length: a crash loses at most one part
    stall_timeout_s: float = 10.0  # no packet for this long: IngestFailure(STREAM_STALLED)
    open_timeout_s: float = 10.0
    # How long the first keyframe may take after the stream opened: IngestFailure(NO_KEYFRAME).
    keyframe_timeout_s: float = 10.0
    # How long packets wait (in memory) for the camera's first RTCP sender report before the
    # receive clock is used for the run; cameras send one right after PLAY or every few seconds.
    rtcp_wait_s: float = 3.0


@dataclass(frozen=True)
class SegmentFile:
    path: Path  # a finished fragmented MP4 in buffer_dir; the caller owns it now
    sequence: int  # 0, 1, 2 ... within one ingest run
    start_ns: int  # wall-clock ns since the epoch of its first packet
    end_ns: int  # == the next segment's start_ns within one run (no holes, no overlap)
    clock_source: ClockSource
    size_bytes: int
    sha256: str  # hex
    video_codec: str
    width: int
    height: int
    fps: float
    audio_codec: str | None  # carried audio, e.g. "aac"
    audio_note: str | None  # why the camera's audio is not carried, when it is not
    frames: int


@dataclass(frozen=True)
class IngestStats:
    last_packet_ns: int
    bitrate_bps: float
    fps: float


class IngestFailure(Exception):
    """The run ended for a reason other than `stop`; `message` is safe to show (no URL
    credentials)."""

    def __init__(self, reason: GapReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class PacketTap(Protocol):
    """Sees a run's video packets as they are read, before the segmenter (live view). Called
    in the ingest thread; it must not raise or block."""

    def begin(self, video: Any) -> None: ...

    def packet(self, packet: Any, capture_ns: int) -> None: ...

    def end(self) -> None: ...
