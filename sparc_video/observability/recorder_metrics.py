"""Metrics of continuous recording, counted by each recorder process (default registry: served
on the recorder's metrics port, or the server's /metrics under `sparc-video dev`). Counters
add up over recorders with sum(); the gauges are each recorder's own."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CAMERAS_RECORDING = Gauge(
    "video_recorder_cameras_recording",
    "Cameras this recorder holds, by live state (recording, connecting, failing).",
    ["state"],
)
BYTES_WRITTEN = Counter(
    "video_recorder_bytes_written_total", "Bytes of segments uploaded and registered."
)
SEGMENTS_WRITTEN = Counter(
    "video_recorder_segments_written_total", "Segments uploaded and registered."
)
GAP_SECONDS = Counter(
    "video_recorder_gap_seconds_total",
    "Seconds of recorded timelines without footage, by reason, as the gaps were stored.",
    ["reason"],
)
RECONNECTS = Counter(
    "video_recorder_reconnects_total",
    "Camera connections ended by a failure and retried, by reason.",
    ["reason"],
)
UPLOAD_LATENCY = Histogram(
    "video_recorder_segment_available_seconds",
    "From a segment's end to its registration in the catalogue.",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
)
UPLOAD_RETRIES = Counter(
    "video_recorder_upload_retries_total", "Segment uploads or registrations retried."
)
BUFFER_BYTES = Gauge(
    "video_recorder_buffer_bytes", "Bytes of segments waiting in RECORDER_BUFFER_DIR."
)
BUFFER_DROPPED = Counter(
    "video_recorder_segments_dropped_total",
    "Segments dropped because RECORDER_BUFFER_MAX was reached (a storage_unavailable gap).",
)
CHANGED_SEGMENTS = Counter(
    "video_recorder_segments_changed_total",
    "Buffered segments whose bytes no longer matched their SHA-256 taken when they were "
    "finished: not catalogued, kept in RECORDER_BUFFER_DIR/<camera>/.changed.",
)
FENCED_SEGMENTS = Counter(
    "video_recorder_fenced_total",
    "Times a recorder found its camera taken over and discarded its unregistered segments.",
)
