"""What a video pass is asked to make (the planner builds these, the render runs them)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from sparc_video.media.codecs import Container
from workers.pipeline.encoders import AudioEncoder, VideoEncoder
from workers.pipeline.filters import FilterStep
from workers.pipeline.media import MediaInfo


@dataclass(frozen=True)
class VideoEncode:
    """Re-encode the pictures: `size` is the displayed size going into the filters."""

    encoder: VideoEncoder
    size: tuple[int, int]
    steps: tuple[FilterStep, ...]
    fps: Fraction | None = None


@dataclass(frozen=True)
class VideoPass:
    """Make `dst` from [start_s, end_s) of `src` (source seconds; end None: to the end)."""

    src: Path
    dst: Path
    container: Container
    start_s: float
    end_s: float | None
    video: VideoEncode | None  # None: copy the video stream
    audio: AudioEncoder | Literal["copy"] | None  # None: no audio
    operations: tuple[int, ...]
    label: str
    weight: float


@dataclass(frozen=True)
class VideoResult:
    info: MediaInfo
    first_keyframe_s: float | None  # a stream copy's first source keyframe
    encoder: str  # "" when the video was copied
