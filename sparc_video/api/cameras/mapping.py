"""Camera and recording records → protobuf messages (the other way is requests.py).

A camera's secrets never reach a message: the stream URL goes out in its public form, with
`***@` where a log-in is stored, and `credentials` is never set.
"""

from __future__ import annotations

from sparc.video.v1 import camera_pb2, camera_service_pb2

from sparc_video.api.common import duration_ns, timestamp, timestamp_ns
from sparc_video.api.status import error_status
from sparc_video.cameras.records import CameraRecord, CameraStatus, RecordingRecord
from sparc_video.exports.enums import ProtoEnum
from sparc_video.media.probe import StreamInfo
from sparc_video.recording.control import RecordingView
from sparc_video.recording.policy import RecordingMode
from sparc_video.recording.reasons import GapReason
from sparc_video.recording.status import RecordingState, RecordingStatus
from sparc_video.recording.timeline import Timeline
from sparc_video.security.stream_urls import display_url

_STATUSES = {
    CameraStatus.UNKNOWN: camera_pb2.Camera.STATUS_UNSPECIFIED,
    CameraStatus.ONLINE: camera_pb2.Camera.STATUS_ONLINE,
    CameraStatus.OFFLINE: camera_pb2.Camera.STATUS_OFFLINE,
}

# Each recording enum and its domain values, declared once and read both ways.
RECORDING_MODES: ProtoEnum[camera_pb2.RecordingPolicy.Mode.ValueType, RecordingMode] = ProtoEnum(
    {
        RecordingMode.OFF: camera_pb2.RecordingPolicy.MODE_OFF,
        RecordingMode.CONTINUOUS: camera_pb2.RecordingPolicy.MODE_CONTINUOUS,
    },
    unspecified=RecordingMode.OFF,
)
RECORDING_STATES: ProtoEnum[camera_pb2.RecordingStatus.State.ValueType, RecordingState] = ProtoEnum(
    {
        RecordingState.OFF: camera_pb2.RecordingStatus.STATE_OFF,
        RecordingState.CONNECTING: camera_pb2.RecordingStatus.STATE_CONNECTING,
        RecordingState.RECORDING: camera_pb2.RecordingStatus.STATE_RECORDING,
        RecordingState.FAILING: camera_pb2.RecordingStatus.STATE_FAILING,
    }
)
_Gap = camera_service_pb2.TimelineGap
GAP_REASONS: ProtoEnum[camera_service_pb2.TimelineGap.Reason.ValueType, GapReason] = ProtoEnum(
    {
        GapReason.CAMERA_UNREACHABLE: _Gap.REASON_CAMERA_UNREACHABLE,
        GapReason.AUTHENTICATION_FAILED: _Gap.REASON_AUTHENTICATION_FAILED,
        GapReason.STREAM_ENDED: _Gap.REASON_STREAM_ENDED,
        GapReason.STREAM_STALLED: _Gap.REASON_STREAM_STALLED,
        GapReason.NO_KEYFRAME: _Gap.REASON_NO_KEYFRAME,
        GapReason.RECORDER_FAILOVER: _Gap.REASON_RECORDER_FAILOVER,
        GapReason.STORAGE_UNAVAILABLE: _Gap.REASON_STORAGE_UNAVAILABLE,
        GapReason.POLICY_OFF: _Gap.REASON_POLICY_OFF,
        GapReason.SEGMENT_CHANGED: _Gap.REASON_SEGMENT_CHANGED,
    }
)


def camera_to_proto(
    record: CameraRecord, recording: RecordingView | None = None
) -> camera_pb2.Camera:
    message = camera_pb2.Camera(
        name=record.name,
        display_name=record.display_name,
        site=record.site,
        location=record.location,
        labels=record.labels,
        enabled=record.enabled,
        stream_url=display_url(record.stream_url, record.has_userinfo),
        has_credentials=bool(record.secrets),
        status=_STATUSES[record.status],
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
    )
    if record.last_seen_time is not None:
        message.last_seen_time.CopyFrom(timestamp(record.last_seen_time))
    if record.last_probe_time is not None:
        message.last_probe_time.CopyFrom(timestamp(record.last_probe_time))
    if record.stream is not None:
        message.stream_info.CopyFrom(stream_info_to_proto(record.stream))
    if record.last_error is not None:
        message.last_error.CopyFrom(error_status(record.last_error))
    if recording is not None:
        message.recording_policy.CopyFrom(recording_policy_to_proto(recording))
        message.recording_status.CopyFrom(recording_status_to_proto(recording))
    return message


def recording_policy_to_proto(view: RecordingView) -> camera_pb2.RecordingPolicy:
    policy = view.policy
    return camera_pb2.RecordingPolicy(
        mode=RECORDING_MODES.to_proto[policy.mode],
        segment_duration=duration_ns(round(policy.segment_s * 10**9)),
        retention_days=policy.retention_days or 0,
    )


def recording_status_to_proto(view: RecordingView) -> camera_pb2.RecordingStatus:
    return status_to_proto(view.status)


def status_to_proto(status: RecordingStatus) -> camera_pb2.RecordingStatus:
    message = camera_pb2.RecordingStatus(
        state=RECORDING_STATES.to_proto[status.state],
        last_error=status.last_error,
        bitrate_bps=status.bitrate_bps,
        fps=status.fps,
        recorder=status.recorder_id,
    )
    if status.last_packet_ns is not None:
        message.last_packet_time.CopyFrom(timestamp_ns(status.last_packet_ns))
    return message


def timeline_to_proto(found: Timeline) -> camera_service_pb2.GetCameraTimelineResponse:
    return camera_service_pb2.GetCameraTimelineResponse(
        spans=[
            camera_service_pb2.TimelineSpan(
                start_time=timestamp_ns(span.start_ns),
                end_time=timestamp_ns(span.end_ns),
                segment_count=span.segments,
            )
            for span in found.spans
        ],
        gaps=[
            camera_service_pb2.TimelineGap(
                start_time=timestamp_ns(gap.start_ns),
                end_time=timestamp_ns(gap.end_ns),
                reason=_Gap.REASON_UNSPECIFIED
                if gap.reason is None
                else GAP_REASONS.to_proto[gap.reason],
                detail=gap.detail,
                recorder=gap.recorder_id,
            )
            for gap in found.gaps
        ],
    )


def stream_info_to_proto(stream: StreamInfo) -> camera_pb2.StreamInfo:
    return camera_pb2.StreamInfo(
        format=stream.format,
        video_codec=stream.video_codec,
        width=stream.width,
        height=stream.height,
        fps=stream.fps,
        audio_codec=stream.audio_codec,
    )


def recording_to_proto(record: RecordingRecord) -> camera_pb2.Recording:
    return camera_pb2.Recording(
        name=record.name,
        object_key=record.object_key,
        start_time=timestamp_ns(record.start_ns),
        end_time=timestamp_ns(record.end_ns),
        duration=duration_ns(record.duration_ns),
        format=record.stream.format,
        video_codec=record.stream.video_codec,
        audio_codec=record.stream.audio_codec,
        width=record.stream.width,
        height=record.stream.height,
        fps=record.stream.fps,
        frame_count=record.frame_count,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        create_time=timestamp(record.create_time),
    )
