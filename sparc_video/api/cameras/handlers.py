"""gRPC handlers of sparc.video.v1.CameraService: convert, call the domain, convert back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc
from google.protobuf import empty_pb2
from sparc.video.v1 import camera_pb2, camera_service_pb2, camera_service_pb2_grpc

from sparc_video.api.cameras import requests as validation
from sparc_video.api.cameras.live import LiveEndpoints, parse_live_stream_name
from sparc_video.api.cameras.mapping import (
    camera_to_proto,
    recording_to_proto,
    status_to_proto,
    stream_info_to_proto,
    timeline_to_proto,
)
from sparc_video.api.common import duration, timestamp
from sparc_video.api.status import error_status
from sparc_video.cameras.recordings import Recordings
from sparc_video.cameras.service import Cameras
from sparc_video.exports.event_log import parse_event_id
from sparc_video.recording.control import RecordingControl
from sparc_video.security.auth import current_principal

Context = grpc.aio.ServicerContext[Any, Any]
svc = camera_service_pb2


class CameraServicer(camera_service_pb2_grpc.CameraServiceServicer):
    def __init__(
        self,
        cameras: Cameras,
        recordings: Recordings,
        recording: RecordingControl,
        live: LiveEndpoints,
    ) -> None:
        self._cameras = cameras
        self._recordings = recordings
        self._recording = recording
        self._live = live

    async def CreateCamera(
        self, request: svc.CreateCameraRequest, context: Context
    ) -> camera_pb2.Camera:
        camera_id, fields = validation.create_camera_args(request)
        caller = current_principal().id
        record = await self._cameras.create(fields, camera_id, caller)
        return camera_to_proto(record, await self._recording.view(record.id))

    async def GetCamera(self, request: svc.GetCameraRequest, context: Context) -> camera_pb2.Camera:
        camera_id = validation.parse_camera_name(request.name)
        record = await self._cameras.get(camera_id)
        return camera_to_proto(record, await self._recording.view(camera_id))

    async def ListCameras(
        self, request: svc.ListCamerasRequest, context: Context
    ) -> svc.ListCamerasResponse:
        size = validation.page_size(request.page_size)
        condition = validation.camera_filter(request.filter)
        records, next_token = await self._cameras.page(size, request.page_token, condition)
        views = await self._recording.views([r.id for r in records])
        return svc.ListCamerasResponse(
            cameras=[camera_to_proto(r, views.get(r.id)) for r in records],
            next_page_token=next_token,
        )

    async def UpdateCamera(
        self, request: svc.UpdateCameraRequest, context: Context
    ) -> camera_pb2.Camera:
        camera_id, fields, paths, change = validation.update_camera_args(request)
        caller = current_principal().id
        # The policy first: its check refuses a bad one before the record changes.
        if change is not None:
            await self._recording.update(camera_id, change, caller)
        if paths or change is None:
            record = await self._cameras.update(camera_id, fields, paths, caller)
        else:
            record = await self._cameras.get(camera_id)
        return camera_to_proto(record, await self._recording.view(camera_id))

    async def DeleteCamera(
        self, request: svc.DeleteCameraRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._cameras.delete(
            validation.parse_camera_name(request.name), request.force, current_principal().id
        )
        return empty_pb2.Empty()

    async def ProbeCamera(
        self, request: svc.ProbeCameraRequest, context: Context
    ) -> svc.ProbeCameraResponse:
        camera_id = validation.parse_camera_name(request.name)
        timeout_s = validation.stream_timeout(request.timeout, request.HasField("timeout"))
        outcome = await self._cameras.probe(camera_id, timeout_s)
        response = svc.ProbeCameraResponse(
            reachable=outcome.read.ok,
            probe_time=timestamp(outcome.start_time),
            camera=camera_to_proto(outcome.camera, await self._recording.view(outcome.camera.id)),
        )
        if outcome.read.ok and outcome.read.info is not None:
            response.stream_info.CopyFrom(stream_info_to_proto(outcome.read.info))
            response.connect_latency.CopyFrom(duration(outcome.read.connect_s))
            response.latency.CopyFrom(duration(outcome.read.first_frame_s))
        if outcome.error is not None:
            response.error.CopyFrom(error_status(outcome.error))
        return response

    async def CaptureSnapshot(
        self, request: svc.CaptureSnapshotRequest, context: Context
    ) -> svc.CaptureSnapshotResponse:
        camera_id = validation.parse_camera_name(request.name)
        timeout_s = validation.stream_timeout(request.timeout, request.HasField("timeout"))
        ttl_s = validation.url_ttl(request.url_ttl, request.HasField("url_ttl"), "url_ttl")
        snapshot = await self._cameras.snapshot(camera_id, timeout_s, ttl_s)
        return svc.CaptureSnapshotResponse(
            storage_key=snapshot.storage_key,
            download_url=snapshot.url,
            expire_time=timestamp(snapshot.expire_time),
            capture_time=timestamp(snapshot.capture_time),
            width=snapshot.width,
            height=snapshot.height,
            size_bytes=snapshot.size_bytes,
        )

    async def GetCameraTimeline(
        self, request: svc.GetCameraTimelineRequest, context: Context
    ) -> svc.GetCameraTimelineResponse:
        camera_id, start_ns, end_ns = validation.timeline_range(request)
        return timeline_to_proto(await self._recording.timeline(camera_id, start_ns, end_ns))

    async def WatchCamera(
        self, request: svc.WatchCameraRequest, context: Context
    ) -> AsyncIterator[svc.WatchCameraResponse]:
        camera_id = validation.parse_camera_name(request.name)
        after = parse_event_id(request.after_event_id) if request.after_event_id else ""
        async for event_id, status in self._recording.watch(camera_id, after):
            yield svc.WatchCameraResponse(
                recording_status=status_to_proto(status), event_id=event_id
            )

    async def GetCameraLiveStream(
        self, request: svc.GetCameraLiveStreamRequest, context: Context
    ) -> camera_pb2.CameraLiveStream:
        camera_id = parse_live_stream_name(request.name)
        await self._cameras.get(camera_id)
        recorder_id, address = await self._recording.live_holder(camera_id)
        return await self._live.describe(camera_id, recorder_id, address)

    async def StreamCameraLive(
        self, request: svc.StreamCameraLiveRequest, context: Context
    ) -> AsyncIterator[svc.StreamCameraLiveResponse]:
        camera_id = validation.parse_camera_name(request.name)
        await self._cameras.get(camera_id)
        async with aclosing(self._live.stream(camera_id, request.after_sequence)) as messages:
            async for message in messages:
                yield message

    async def CreateRecording(
        self, request: svc.CreateRecordingRequest, context: Context
    ) -> camera_pb2.Recording:
        camera_id, key, start_ns = validation.create_recording_args(request)
        caller = current_principal().id
        return recording_to_proto(await self._recordings.create(camera_id, key, start_ns, caller))

    async def GetRecording(
        self, request: svc.GetRecordingRequest, context: Context
    ) -> camera_pb2.Recording:
        camera_id, recording_id = validation.parse_recording_name(request.name)
        return recording_to_proto(await self._recordings.get(camera_id, recording_id))

    async def ListRecordings(
        self, request: svc.ListRecordingsRequest, context: Context
    ) -> svc.ListRecordingsResponse:
        camera_id = validation.parse_camera_name(request.parent, "parent")
        size = validation.page_size(request.page_size)
        window = validation.time_range(
            request.start_time if request.HasField("start_time") else None,
            request.end_time if request.HasField("end_time") else None,
        )
        records, next_token = await self._recordings.page(
            camera_id, window, size, request.page_token
        )
        return svc.ListRecordingsResponse(
            recordings=[recording_to_proto(r) for r in records], next_page_token=next_token
        )

    async def DeleteRecording(
        self, request: svc.DeleteRecordingRequest, context: Context
    ) -> empty_pb2.Empty:
        camera_id, recording_id = validation.parse_recording_name(request.name)
        await self._recordings.delete(camera_id, recording_id, current_principal().id)
        return empty_pb2.Empty()

    async def CreateRecordingUploadUrl(
        self, request: svc.CreateRecordingUploadUrlRequest, context: Context
    ) -> svc.CreateRecordingUploadUrlResponse:
        camera_id = validation.parse_camera_name(request.parent, "parent")
        ttl_s = validation.url_ttl(request.ttl, request.HasField("ttl"), "ttl")
        link = await self._recordings.upload_link(
            camera_id, request.size_bytes, request.content_type, ttl_s
        )
        return svc.CreateRecordingUploadUrlResponse(
            object_key=link.object_key,
            upload_url=link.url,
            headers=link.headers,
            expire_time=timestamp(link.expire_time),
        )
