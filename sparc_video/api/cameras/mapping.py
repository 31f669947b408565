"""Camera and recording records → protobuf messages (the other way is requests.py).

A camera's secrets never reach a message: the stream URL goes out in its public form, with
`***@` where a log-in is stored, and `credentials` is never set.
"""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2
from sparc.video.v1 import camera_pb2

from sparc_video.api.common import timestamp
from sparc_video.api.status import error_status
from sparc_video.cameras.records import CameraRecord, CameraStatus, RecordingRecord
from sparc_video.media.probe import StreamInfo
from sparc_video.security.stream_urls import display_url

_STATUSES = {
    CameraStatus.UNKNOWN: camera_pb2.Camera.STATUS_UNSPECIFIED,
    CameraStatus.ONLINE: camera_pb2.Camera.STATUS_ONLINE,
    CameraStatus.OFFLINE: camera_pb2.Camera.STATUS_OFFLINE,
}


def camera_to_proto(record: CameraRecord) -> camera_pb2.Camera:
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
    return message


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
        duration=duration_pb2.Duration(
            seconds=record.duration_ns // 10**9, nanos=record.duration_ns % 10**9
        ),
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


def timestamp_ns(ns: int) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(ns)
    return message
