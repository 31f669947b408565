"""CameraService requests → validated domain values (the other direction is mapping.py).

Every problem is collected as a FieldViolation naming the field (AIP-193 paths such as
`camera.labels`), so one call reports everything wrong at once. No description quotes a stream
URL other than in its redacted form.
"""

from __future__ import annotations

import re
import time

from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from sparc.video.v1 import camera_pb2, camera_service_pb2

from sparc_video.api.cameras.mapping import RECORDING_MODES
from sparc_video.api.common import parse_camera_name as parse_camera_name
from sparc_video.api.common import parse_recording_name as parse_recording_name
from sparc_video.api.common import raise_if_any as raise_if_any
from sparc_video.api.common import required_key
from sparc_video.cameras.records import TimeRange
from sparc_video.cameras.service import (
    DEFAULT_STREAM_TIMEOUT_S,
    MAX_STREAM_TIMEOUT_S,
    UPDATABLE,
    CameraFields,
    CameraFilter,
    Credentials,
)
from sparc_video.core.errors import FieldViolation, InvalidArgument
from sparc_video.recording.control import MAX_TIMELINE_S, PolicyChange
from sparc_video.recording.policy import RecordingMode, RecordingPolicy
from sparc_video.security.stream_urls import ParsedStreamUrl, parse_stream_url

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_DISPLAY_NAME = 200
MAX_SITE = 100
MAX_LOCATION = 500
MAX_LABELS = 64
MAX_LABEL_VALUE = 255
MAX_CREDENTIAL = 256
# A recording may be registered with a start time a little ahead of this server's clock (the
# recorder's clock may run ahead); a day ahead is a mistake.
MAX_FUTURE_START_S = 24 * 3600

# AIP-122: ids chosen by clients start with a letter; generated ones are hex.
_CAMERA_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_OUTPUT_ONLY = frozenset(
    {
        "name", "has_credentials", "status", "last_seen_time", "last_probe_time",
        "stream_info", "last_error", "create_time", "update_time", "recording_status",
    }
)  # fmt: skip
# Update mask paths that change the recording policy, not the camera's record.
_POLICY = "recording_policy"
_POLICY_FIELDS = ("mode", "segment_duration", "retention_days")
POLICY_PATHS = frozenset({_POLICY, *(f"{_POLICY}.{name}" for name in _POLICY_FIELDS)})
_TERM_RE = re.compile(
    r'\s*(?P<field>[A-Za-z_][\w.-]*)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"]+))\s*'
)
_AND_RE = re.compile(r"AND(?:\s+|$)")
_FILTER_HELP = 'use e.g. site = "hq" AND enabled = true AND labels.zone = "perimeter"'


def validate_camera_id(camera_id: str, violations: list[FieldViolation]) -> str:
    if camera_id and not _CAMERA_ID_RE.fullmatch(camera_id):
        violations.append(
            FieldViolation(
                "camera_id",
                f"{camera_id[:100]!r}: 1 to 63 lowercase letters, digits or '-', starting with a "
                "letter and not ending with '-'",
            )
        )
    return camera_id


def camera_fields(
    camera: camera_pb2.Camera,
    violations: list[FieldViolation],
    paths: frozenset[str] | None = None,
) -> CameraFields:
    """The fields to write; `paths` None for a creation (every field, stream_url required)."""
    wanted = UPDATABLE if paths is None else paths
    # Fields outside the mask are ignored, so they are not validated either.
    limits = {"display_name": MAX_DISPLAY_NAME, "site": MAX_SITE, "location": MAX_LOCATION}
    texts = {
        name: _text(getattr(camera, name), f"camera.{name}", limit, violations)
        if name in wanted
        else ""
        for name, limit in limits.items()
    }
    labels = _labels(dict(camera.labels), violations) if "labels" in wanted else {}
    enabled = camera.enabled if camera.HasField("enabled") or paths is not None else True
    url: ParsedStreamUrl | None = None
    if "stream_url" in wanted:
        if not camera.stream_url:
            violations.append(
                FieldViolation(
                    "camera.stream_url",
                    "required: the camera's rtsp://, rtsps://, http:// or https:// stream URL",
                )
            )
        else:
            try:
                url = parse_stream_url(camera.stream_url)
            except ValueError as exc:
                violations.append(FieldViolation("camera.stream_url", str(exc)))
    credentials: Credentials | None = None
    if "credentials" in wanted and (paths is not None or camera.HasField("credentials")):
        username = _text(
            camera.credentials.username, "camera.credentials.username", MAX_CREDENTIAL, violations
        )
        password = camera.credentials.password
        if len(password) > MAX_CREDENTIAL:
            violations.append(
                FieldViolation(
                    "camera.credentials.password", f"at most {MAX_CREDENTIAL} characters"
                )
            )
        if username or password or paths is not None:
            credentials = Credentials(username, password)
    return CameraFields(
        display_name=texts["display_name"],
        site=texts["site"],
        location=texts["location"],
        labels=labels,
        enabled=enabled,
        stream_url=url,
        credentials=credentials,
    )


def update_paths(
    mask: field_mask_pb2.FieldMask, camera: camera_pb2.Camera, violations: list[FieldViolation]
) -> frozenset[str]:
    """The fields an UpdateCamera changes (AIP-134). Output-only fields are ignored."""
    if not mask.paths:
        populated = {
            "display_name": bool(camera.display_name),
            "site": bool(camera.site),
            "location": bool(camera.location),
            "labels": bool(camera.labels),
            "enabled": camera.HasField("enabled"),
            "stream_url": bool(camera.stream_url),
            "credentials": camera.HasField("credentials"),
            _POLICY: camera.HasField("recording_policy"),
        }
        paths = frozenset(name for name, present in populated.items() if present)
        if not paths:
            violations.append(
                FieldViolation("update_mask", "names no field, and the camera sets none")
            )
        return paths
    chosen: set[str] = set()
    for index, path in enumerate(mask.paths):
        if path == "*":
            chosen |= UPDATABLE | {_POLICY}
        elif path in UPDATABLE or path in POLICY_PATHS:
            chosen.add(path)
        elif path not in _OUTPUT_ONLY:
            violations.append(
                FieldViolation(
                    f"update_mask.paths[{index}]",
                    f"{path[:100]!r} is not a field of Camera that can be updated; use "
                    f"{', '.join(sorted(UPDATABLE | POLICY_PATHS))} or *",
                )
            )
    return frozenset(chosen)


def policy_change(
    policy: camera_pb2.RecordingPolicy, paths: frozenset[str], violations: list[FieldViolation]
) -> PolicyChange | None:
    """What an update changes of the recording policy; None when its mask names none of it.
    The whole `recording_policy` replaces the policy: what it leaves out takes the defaults."""
    whole = _POLICY in paths
    named = {name for name in _POLICY_FIELDS if whole or f"{_POLICY}.{name}" in paths}
    if not named:
        return None
    mode: RecordingMode | None = None
    if "mode" in named:
        mode = RECORDING_MODES.from_proto.get(policy.mode)
        if mode is None:
            violations.append(
                FieldViolation("camera.recording_policy.mode", f"unknown mode {policy.mode}")
            )
    segment_s: float | None = None
    if "segment_duration" in named:
        if policy.HasField("segment_duration"):
            segment_s = policy.segment_duration.ToNanoseconds() / 1e9
        elif whole:
            segment_s = RecordingPolicy().segment_s
        else:
            violations.append(
                FieldViolation("camera.recording_policy.segment_duration", "required")
            )
    retention_days = policy.retention_days if "retention_days" in named else None
    return PolicyChange(mode, segment_s, retention_days)


def timeline_range(
    request: camera_service_pb2.GetCameraTimelineRequest,
) -> tuple[str, int, int]:
    """(camera id, start ns, end ns): both times required, in order, at most 31 days apart."""
    camera_id = parse_camera_name(request.name)
    violations: list[FieldViolation] = []
    for field in ("start_time", "end_time"):
        if not request.HasField(field):
            violations.append(FieldViolation(field, "required"))
    raise_if_any(violations)
    time_range(request.start_time, request.end_time)
    start_ns, end_ns = request.start_time.ToNanoseconds(), request.end_time.ToNanoseconds()
    if end_ns - start_ns > MAX_TIMELINE_S * 10**9:
        raise InvalidArgument(
            [FieldViolation("end_time", f"at most {MAX_TIMELINE_S // 86400} days after start_time")]
        )
    return camera_id, start_ns, end_ns


def camera_filter(text: str) -> CameraFilter:
    """`site = "hq" AND enabled = true AND labels.zone = "perimeter"` (AIP-160 subset)."""
    if not text.strip():
        return CameraFilter()
    site: str | None = None
    enabled: bool | None = None
    labels: list[tuple[str, str]] = []
    position = 0
    while True:
        term = _TERM_RE.match(text, position)
        if term is None:
            raise _bad_filter(text, f"expected `field = value` at character {position + 1}")
        name = term.group("field")
        quoted = term.group("quoted")
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else term.group("bare")
        if name == "site":
            site = value
        elif name == "enabled":
            if value not in ("true", "false"):
                raise _bad_filter(text, f"enabled is true or false, not {value!r}")
            enabled = value == "true"
        elif name.startswith("labels.") and _LABEL_KEY_RE.fullmatch(name[len("labels.") :]):
            labels.append((name[len("labels.") :], value))
        else:
            raise _bad_filter(text, f"cannot filter on {name!r}")
        position = term.end()
        if position == len(text):
            break
        conjunction = _AND_RE.match(text, position)
        if conjunction is None or conjunction.end() == len(text):
            raise _bad_filter(
                text, f"expected AND and another condition at character {position + 1}"
            )
        position = conjunction.end()
    return CameraFilter(text.strip(), site, enabled, tuple(labels))


def page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def stream_timeout(duration: duration_pb2.Duration, present: bool, field: str = "timeout") -> float:
    if not present:
        return DEFAULT_STREAM_TIMEOUT_S
    seconds = duration.ToNanoseconds() / 1e9
    if not 1.0 <= seconds <= MAX_STREAM_TIMEOUT_S:
        raise InvalidArgument(
            [FieldViolation(field, f"must be between 1 and {MAX_STREAM_TIMEOUT_S:g} seconds")]
        )
    return seconds


def url_ttl(duration: duration_pb2.Duration, present: bool, field: str) -> int:
    """Whole seconds; 0 when absent (the default applies)."""
    if not present:
        return 0
    seconds = duration.seconds
    if seconds <= 0:
        raise InvalidArgument([FieldViolation(field, "must be at least 1 second")])
    return seconds


def start_time_ns(
    timestamp: timestamp_pb2.Timestamp, present: bool, violations: list[FieldViolation]
) -> int:
    field = "recording.start_time"
    if not present:
        violations.append(FieldViolation(field, "required: the capture time of the first frame"))
        return 0
    ns = timestamp.ToNanoseconds()
    if ns < 0:
        violations.append(FieldViolation(field, "must not be before 1970"))
    elif ns > time.time_ns() + MAX_FUTURE_START_S * 10**9:
        violations.append(FieldViolation(field, "is more than a day ahead of the server's clock"))
    return ns


def time_range(
    start: timestamp_pb2.Timestamp | None, end: timestamp_pb2.Timestamp | None
) -> TimeRange:
    start_ns = start.ToNanoseconds() if start is not None else None
    end_ns = end.ToNanoseconds() if end is not None else None
    violations = []
    for field, value in (("start_time", start_ns), ("end_time", end_ns)):
        if value is not None and value < 0:
            violations.append(FieldViolation(field, "must not be before 1970"))
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        violations.append(FieldViolation("end_time", "must be after start_time"))
    raise_if_any(violations)
    return TimeRange(start_ns, end_ns)


def _text(value: str, field: str, limit: int, violations: list[FieldViolation]) -> str:
    if len(value) > limit:
        violations.append(FieldViolation(field, f"at most {limit} characters"))
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        violations.append(FieldViolation(field, "must not contain control characters"))
    return value


def _labels(labels: dict[str, str], violations: list[FieldViolation]) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        violations.append(FieldViolation("camera.labels", f"at most {MAX_LABELS} labels"))
    for key, value in sorted(labels.items()):
        if not _LABEL_KEY_RE.fullmatch(key):
            violations.append(
                FieldViolation(
                    f"camera.labels[{key[:63]!r}]",
                    "keys are 1 to 63 lowercase letters, digits, '_' or '-', starting with a "
                    "letter",
                )
            )
        _text(value, f"camera.labels[{key[:63]!r}]", MAX_LABEL_VALUE, violations)
    return labels


def _bad_filter(text: str, problem: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation("filter", f"{text[:200]!r}: {problem}; {_FILTER_HELP}")])


# Whole requests → the arguments of their one domain call: everything wrong, raised at once.


def create_camera_args(request: camera_service_pb2.CreateCameraRequest) -> tuple[str, CameraFields]:
    """(camera id or "" for a generated one, fields)."""
    violations: list[FieldViolation] = []
    camera_id = validate_camera_id(request.camera_id, violations)
    fields = camera_fields(request.camera, violations)
    raise_if_any(violations)
    return camera_id, fields


def update_camera_args(
    request: camera_service_pb2.UpdateCameraRequest,
) -> tuple[str, CameraFields, frozenset[str], PolicyChange | None]:
    """(camera id, fields, the paths of the record to change, the policy change if any)."""
    camera_id = parse_camera_name(request.camera.name, "camera.name")
    violations: list[FieldViolation] = []
    paths = update_paths(request.update_mask, request.camera, violations)
    record_paths = paths - POLICY_PATHS
    fields = camera_fields(request.camera, violations, record_paths)
    change = policy_change(request.camera.recording_policy, paths, violations)
    raise_if_any(violations)
    return camera_id, fields, record_paths, change


def create_recording_args(
    request: camera_service_pb2.CreateRecordingRequest,
) -> tuple[str, str, int]:
    """(camera id, object key, start time in ns)."""
    camera_id = parse_camera_name(request.parent, "parent")
    violations: list[FieldViolation] = []
    key = required_key(
        request.recording.object_key, "recording.object_key", "the video", violations
    )
    start_ns = start_time_ns(
        request.recording.start_time, request.recording.HasField("start_time"), violations
    )
    raise_if_any(violations)
    return camera_id, key, start_ns
