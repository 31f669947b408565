"""Why a continuously recorded camera's timeline has a gap: one declaration, used by the
recorder (which detects them), the catalogue (which stores them) and the API (which maps them)."""

from __future__ import annotations

from enum import StrEnum


class GapReason(StrEnum):
    CAMERA_UNREACHABLE = "camera_unreachable"
    AUTHENTICATION_FAILED = "authentication_failed"
    STREAM_ENDED = "stream_ended"
    STREAM_STALLED = "stream_stalled"
    NO_KEYFRAME = "no_keyframe"
    RECORDER_FAILOVER = "recorder_failover"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    POLICY_OFF = "policy_off"
    # The recorded segment was refused: its file changed on disk before it was uploaded (kept
    # under RECORDER_BUFFER_DIR/<camera>/.changed for inspection).
    SEGMENT_CHANGED = "segment_changed"
