"""Python client of `sparc.video.v1.CameraService`: cameras and their recordings.

```python
async with AsyncCameraClient("localhost:50051") as client:
    camera = await client.create_camera(
        Camera(display_name="Gate 7", stream_url="rtsp://gate7/stream"), camera_id="gate-7"
    )
    recording = await client.create_recording(camera.name, "nvr/gate-7/0001.mp4", start_time)
```

It shares `ChannelClient`'s channel (TLS, bearer token, service config retries of the reads),
default deadline and `ServiceError` mapping with `AsyncExportClient`. Camera credentials are
write-only: the server never returns them (`has_credentials` says whether some are stored).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Sequence

import grpc
from google.protobuf import field_mask_pb2
from sparc.video.v1 import camera_pb2, camera_service_pb2, camera_service_pb2_grpc

from sparc_video.client.channel import ChannelClient, all_pages
from sparc_video.client.errors import streamed, unary
from sparc_video.client.operations import duration as _duration
from sparc_video.client.operations import timestamp as _timestamp

Camera = camera_pb2.Camera
CameraCredentials = camera_pb2.CameraCredentials
Recording = camera_pb2.Recording
RecordingPolicy = camera_pb2.RecordingPolicy


def camera_name(name_or_id: str) -> str:
    """`cameras/{id}` from either that name or the bare id."""
    return name_or_id if "/" in name_or_id else f"cameras/{name_or_id}"


class AsyncCameraClient(ChannelClient):
    """Typed async client of CameraService. Use as `async with`, or call `close()`.

    Every call takes `timeout` (seconds; the client's default when None)."""

    def _open_stubs(self, channel: grpc.aio.Channel) -> None:
        self._stub = camera_service_pb2_grpc.CameraServiceStub(channel)

    # -- cameras ------------------------------------------------------------------------------

    async def create_camera(
        self, camera: Camera, *, camera_id: str = "", timeout: float | None = None
    ) -> Camera:
        """Register a camera; `camera_id` names it `cameras/{camera_id}` (server's choice when
        empty)."""
        request = camera_service_pb2.CreateCameraRequest(camera=camera, camera_id=camera_id)
        return await unary(self._stub.CreateCamera(request, timeout=self._deadline(timeout)))

    async def get_camera(self, name: str, *, timeout: float | None = None) -> Camera:
        request = camera_service_pb2.GetCameraRequest(name=camera_name(name))
        return await unary(self._stub.GetCamera(request, timeout=self._deadline(timeout)))

    async def list_cameras(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter: str = "",
        timeout: float | None = None,
    ) -> camera_service_pb2.ListCamerasResponse:
        """One page; `filter` e.g. `site = "hq" AND labels.zone = "north"`."""
        request = camera_service_pb2.ListCamerasRequest(
            page_size=page_size, page_token=page_token, filter=filter
        )
        return await unary(self._stub.ListCameras(request, timeout=self._deadline(timeout)))

    def iter_cameras(self, *, filter: str = "", page_size: int = 0) -> AsyncIterator[Camera]:
        """Every camera (matching the filter), following page tokens."""
        return all_pages(
            lambda token: self.list_cameras(page_size=page_size, page_token=token, filter=filter),
            lambda page: page.cameras,
        )

    async def update_camera(
        self, camera: Camera, update_mask: Sequence[str], *, timeout: float | None = None
    ) -> Camera:
        """Change the fields named in `update_mask` (`display_name`, `labels`, `credentials`,
        ...) to their values in `camera`; a named field left unset is cleared."""
        request = camera_service_pb2.UpdateCameraRequest(
            camera=camera, update_mask=field_mask_pb2.FieldMask(paths=list(update_mask))
        )
        return await unary(self._stub.UpdateCamera(request, timeout=self._deadline(timeout)))

    async def delete_camera(
        self, name: str, *, force: bool = False, timeout: float | None = None
    ) -> None:
        """FailedPreconditionError while it has recordings, unless `force` (deletes them)."""
        request = camera_service_pb2.DeleteCameraRequest(name=camera_name(name), force=force)
        await unary(self._stub.DeleteCamera(request, timeout=self._deadline(timeout)))

    async def probe_camera(
        self,
        name: str,
        *,
        probe_timeout: float | datetime.timedelta | None = None,
        timeout: float | None = None,
    ) -> camera_service_pb2.ProbeCameraResponse:
        """Connect to the stream now. An unreachable camera is an answer (`reachable` false,
        `error` set), not an exception. `probe_timeout` bounds the probe on the server."""
        request = camera_service_pb2.ProbeCameraRequest(name=camera_name(name))
        if probe_timeout is not None:
            request.timeout.CopyFrom(_duration(probe_timeout))
        return await unary(self._stub.ProbeCamera(request, timeout=self._deadline(timeout)))

    async def capture_snapshot(
        self,
        name: str,
        *,
        capture_timeout: float | datetime.timedelta | None = None,
        url_ttl: float | datetime.timedelta | None = None,
        timeout: float | None = None,
    ) -> camera_service_pb2.CaptureSnapshotResponse:
        """Grab one frame from the stream into storage; an expiring URL to fetch it."""
        request = camera_service_pb2.CaptureSnapshotRequest(name=camera_name(name))
        if capture_timeout is not None:
            request.timeout.CopyFrom(_duration(capture_timeout))
        if url_ttl is not None:
            request.url_ttl.CopyFrom(_duration(url_ttl))
        return await unary(self._stub.CaptureSnapshot(request, timeout=self._deadline(timeout)))

    # -- continuous recording -----------------------------------------------------------------

    async def set_recording_policy(
        self,
        name: str,
        *,
        continuous: bool | None = None,
        segment_duration: float | datetime.timedelta | None = None,
        retention_days: int | None = None,
        timeout: float | None = None,
    ) -> Camera:
        """Change the parts of the camera's recording policy given (None: keep them):
        recorded continuously or not, the segment length, the days kept (0: the service
        default). Returns the camera with its policy and recording status."""
        policy = RecordingPolicy()
        paths: list[str] = []
        if continuous is not None:
            policy.mode = (
                RecordingPolicy.MODE_CONTINUOUS if continuous else RecordingPolicy.MODE_OFF
            )
            paths.append("recording_policy.mode")
        if segment_duration is not None:
            policy.segment_duration.CopyFrom(_duration(segment_duration))
            paths.append("recording_policy.segment_duration")
        if retention_days is not None:
            policy.retention_days = retention_days
            paths.append("recording_policy.retention_days")
        if not paths:
            raise ValueError(
                "nothing to change: give continuous, segment_duration or retention_days"
            )
        camera = Camera(name=camera_name(name), recording_policy=policy)
        return await self.update_camera(camera, paths, timeout=timeout)

    async def get_camera_timeline(
        self,
        name: str,
        start_time: datetime.datetime,
        end_time: datetime.datetime,
        *,
        timeout: float | None = None,
    ) -> camera_service_pb2.GetCameraTimelineResponse:
        """The camera's recorded spans and the gaps between them (with their reasons) over
        [start_time, end_time), both timezone-aware."""
        request = camera_service_pb2.GetCameraTimelineRequest(
            name=camera_name(name),
            start_time=_timestamp(start_time),
            end_time=_timestamp(end_time),
        )
        return await unary(self._stub.GetCameraTimeline(request, timeout=self._deadline(timeout)))

    def watch_camera(
        self, name: str, *, after_event_id: str = ""
    ) -> AsyncIterator[camera_service_pb2.WatchCameraResponse]:
        """The camera's recording status now (unless resuming after `after_event_id`), then
        every change its recorder reports, until the caller stops iterating. Not resumed
        after an error: call again with the last `event_id` seen."""
        return streamed(
            lambda: self._stub.WatchCamera(
                camera_service_pb2.WatchCameraRequest(
                    name=camera_name(name), after_event_id=after_event_id
                )
            )
        )

    # -- live view ----------------------------------------------------------------------------

    async def get_camera_live_stream(
        self, name: str, *, timeout: float | None = None
    ) -> camera_pb2.CameraLiveStream:
        """Where to watch camera `name` live: the gRPC target and signed browser links (they
        expire after a few minutes). FailedPreconditionError while it is not being recorded."""
        request = camera_service_pb2.GetCameraLiveStreamRequest(
            name=camera_name(name) + "/liveStream"
        )
        return await unary(self._stub.GetCameraLiveStream(request, timeout=self._deadline(timeout)))

    def stream_camera_live(
        self, name: str, *, after_sequence: int = 0
    ) -> AsyncIterator[camera_service_pb2.StreamCameraLiveResponse]:
        """Camera `name`'s live video as fragmented MP4: an init segment, then one fragment
        per frame (an init again when the camera's stream restarts), until the caller stops
        iterating. Not resumed after an error: call again with the last `sequence` seen."""
        return streamed(
            lambda: self._stub.StreamCameraLive(
                camera_service_pb2.StreamCameraLiveRequest(
                    name=camera_name(name), after_sequence=after_sequence
                )
            )
        )

    # -- recordings ---------------------------------------------------------------------------

    async def create_recording(
        self,
        camera: str,
        object_key: str,
        start_time: datetime.datetime,
        *,
        timeout: float | None = None,
    ) -> Recording:
        """Register the stored video `object_key`, whose first frame was captured at
        `start_time` (timezone-aware), as a recording of `camera`; the server reads its
        duration, codecs, size and SHA-256."""
        request = camera_service_pb2.CreateRecordingRequest(
            parent=camera_name(camera),
            recording=Recording(object_key=object_key, start_time=_timestamp(start_time)),
        )
        return await unary(self._stub.CreateRecording(request, timeout=self._deadline(timeout)))

    async def get_recording(self, name: str, *, timeout: float | None = None) -> Recording:
        request = camera_service_pb2.GetRecordingRequest(name=name)
        return await unary(self._stub.GetRecording(request, timeout=self._deadline(timeout)))

    async def list_recordings(
        self,
        camera: str,
        *,
        start_time: datetime.datetime | None = None,
        end_time: datetime.datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> camera_service_pb2.ListRecordingsResponse:
        """One page of `camera`'s recordings, optionally only those within the time range."""
        request = camera_service_pb2.ListRecordingsRequest(
            parent=camera_name(camera),
            page_size=page_size,
            page_token=page_token,
        )
        if start_time is not None:
            request.start_time.CopyFrom(_timestamp(start_time))
        if end_time is not None:
            request.end_time.CopyFrom(_timestamp(end_time))
        return await unary(self._stub.ListRecordings(request, timeout=self._deadline(timeout)))

    def iter_recordings(
        self,
        camera: str,
        *,
        start_time: datetime.datetime | None = None,
        end_time: datetime.datetime | None = None,
        page_size: int = 0,
    ) -> AsyncIterator[Recording]:
        return all_pages(
            lambda token: self.list_recordings(
                camera,
                start_time=start_time,
                end_time=end_time,
                page_size=page_size,
                page_token=token,
            ),
            lambda page: page.recordings,
        )

    async def delete_recording(self, name: str, *, timeout: float | None = None) -> None:
        """Delete the recording and its stored object."""
        request = camera_service_pb2.DeleteRecordingRequest(name=name)
        await unary(self._stub.DeleteRecording(request, timeout=self._deadline(timeout)))

    async def create_recording_upload_url(
        self,
        camera: str,
        size_bytes: int,
        *,
        content_type: str = "",
        ttl: float | datetime.timedelta | None = None,
        timeout: float | None = None,
    ) -> camera_service_pb2.CreateRecordingUploadUrlResponse:
        """An expiring URL to PUT a recording of `size_bytes` to (with the returned headers);
        register it afterwards with `create_recording(camera, response.object_key, ...)`."""
        request = camera_service_pb2.CreateRecordingUploadUrlRequest(
            parent=camera_name(camera), size_bytes=size_bytes, content_type=content_type
        )
        if ttl is not None:
            request.ttl.CopyFrom(_duration(ttl))
        return await unary(
            self._stub.CreateRecordingUploadUrl(request, timeout=self._deadline(timeout))
        )


__all__ = [
    "AsyncCameraClient",
    "Camera",
    "CameraCredentials",
    "Recording",
    "RecordingPolicy",
    "camera_name",
]
