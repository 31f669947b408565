"""Exports from recordings and camera time ranges, end to end: a real server, Redis, worker and
PyAV. Three 2 s recordings of a clip whose frames carry their index (0-2 s, 2-4 s, then a gap,
10-12 s) are cut and joined; the outputs are decoded and their frames read back.

Also: the coverage report, the retention hold on the recordings an unfinished export reads,
and CreateExport's validation of the new sources."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import av
import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from sparc.video.v1 import camera_pb2, camera_service_pb2_grpc, export_pb2
from sparc.video.v1 import camera_service_pb2 as svc
from sparc.video.v1 import export_service_pb2 as esvc

from sparc_video.cameras.records import RecordingRecord
from sparc_video.core.settings import Settings
from sparc_video.evidence import manifest
from sparc_video.exports.catalog import ExportFilter
from sparc_video.exports.models import CameraRange
from sparc_video.exports.sources import plan_coverage
from sparc_video.media.probe import StreamInfo
from sparc_video.media.synth import make_sample_clip, read_frame_index
from tests.camera_helpers import expect_error, reason_of, status_of, violations_of
from tests.fixtures.service import RunningService, start_service
from tests.test_cli import sparc_video
from workers.pipeline.join import SLATE_GREY
from workers.pipeline.wall_clock import ClockPart, WallClock, cues, output_parts

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z
FPS = 25
Range = export_pb2.CameraTimeRange
State = export_pb2.Export


def at(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round((T0 + seconds) * 1e9))
    return stamp


def rfc3339(offset_s: float) -> str:
    """The manifest's form of the time `offset_s` after T0."""
    return manifest.rfc3339(T0 + offset_s)


async def stored(service: RunningService, key: str, tmp_path: Path) -> bytes:
    path = tmp_path / "stored" / key.replace("/", "_")
    await service.app.storage.download_file(key, path)
    return path.read_bytes()


def seconds(value: duration_pb2.Duration) -> float:
    return float(value.ToNanoseconds() / 1e9)


def convert_to_mp4() -> export_pb2.Operation:
    # A remux: the output's frames are the joined video's, untouched.
    return export_pb2.Operation(
        convert=export_pb2.ConvertOptions(container=export_pb2.ConvertOptions.CONTAINER_MP4)
    )


@dataclass
class Footage:
    service: RunningService
    cameras: camera_service_pb2_grpc.CameraServiceStub
    camera: str
    recordings: list[camera_pb2.Recording]


@contextlib.asynccontextmanager
async def footage(
    settings: Settings, tmp_path: Path, *, worker: bool, gop: int | None = None
) -> AsyncIterator[Footage]:
    """Without `gop` the recordings' only keyframe is their first frame, so a range starting
    inside one is re-encoded; with `gop=FPS` a keyframe every second allows a stream copy."""
    async with start_service(settings, worker=worker) as service:
        cameras = camera_service_pb2_grpc.CameraServiceStub(service.channel)
        camera = await cameras.CreateCamera(
            svc.CreateCameraRequest(
                camera_id="gate", camera=camera_pb2.Camera(stream_url="rtsp://gate/")
            )
        )
        clip = await asyncio.to_thread(
            make_sample_clip,
            tmp_path / "segment.mp4",
            width=320,
            height=240,
            duration_s=2.0,
            fps=FPS,
            audio=True,
            gop=gop,
        )
        recordings = []
        for index, start in enumerate((0, 2, 10)):
            key = f"nvr/gate/{index}.mp4"
            await service.app.storage.upload_file(clip, key, "video/mp4")
            recordings.append(
                await cameras.CreateRecording(
                    svc.CreateRecordingRequest(
                        parent=camera.name,
                        recording=camera_pb2.Recording(object_key=key, start_time=at(start)),
                    )
                )
            )
        yield Footage(service, cameras, camera.name, recordings)


def range_source(
    camera: str,
    start_s: float,
    end_s: float,
    gap_mode: int = Range.GAP_MODE_CLOSE,
    subtitles: bool = False,
) -> export_pb2.ExportSource:
    return export_pb2.ExportSource(
        camera_range=Range(
            camera=camera,
            start_time=at(start_s),
            end_time=at(end_s),
            gap_mode=gap_mode,  # type: ignore[arg-type]
            wall_clock_subtitles=subtitles,
        )
    )


def chapters_and_cues(path: Path) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    with av.open(str(path)) as container:
        chapters = [
            (float(c["start"] * c["time_base"]), c["metadata"]["title"])
            for c in container.chapters()
            if c["time_base"] is not None
        ]
        texts = [s for s in container.streams if s.type == "subtitle"]
        cues = []
        if texts:
            for packet in container.demux(texts[0]):
                body = bytes(packet)
                if len(body) > 2 and packet.pts is not None and packet.time_base is not None:
                    cues.append((float(packet.pts * packet.time_base), body[2:].decode()))
    return chapters, cues


async def create(
    service: RunningService, source: export_pb2.ExportSource, *ops: export_pb2.Operation
) -> export_pb2.Export:
    return await service.exports.CreateExport(
        esvc.CreateExportRequest(
            export=export_pb2.Export(source=source, operations=list(ops or [convert_to_mp4()]))
        )
    )


async def finish(
    service: RunningService, name: str, operations: list[str] | None = None
) -> export_pb2.Export:
    async with asyncio.timeout(120):
        async for message in service.exports.WatchExport(esvc.WatchExportRequest(name=name)):
            last = message.export
            if operations is not None and last.progress.current_operation:
                operations.append(last.progress.current_operation)
    assert last.state == State.STATE_SUCCEEDED, last.error
    return last


async def frames_of(service: RunningService, export: export_pb2.Export, tmp_path: Path) -> list:  # type: ignore[type-arg]
    video = export.outputs[0]
    path = tmp_path / f"out-{export.name.rsplit('/', 1)[1]}.mp4"
    await service.app.storage.download_file(video.storage_key, path)

    def decode() -> list[tuple[float, np.ndarray]]:  # type: ignore[type-arg]
        with av.open(str(path)) as container:
            return [
                (float(frame.time), frame.to_ndarray(format="rgb24"))
                for frame in container.decode(video=0)
            ]

    return await asyncio.to_thread(decode)


def is_slate(rgb: np.ndarray) -> bool:  # type: ignore[type-arg]
    # The slate is flat grey outside its text; the clip's bottom band is colour bars.
    band = rgb[-rgb.shape[0] // 8 :].reshape(-1, 3).astype(np.float32)
    flat = bool(band.std(axis=0).max() < 8)
    return flat and bool(np.all(np.abs(band.mean(axis=0) - np.array(SLATE_GREY)) < 12))


async def test_time_range_across_three_recordings_with_a_gap(
    service_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workers.job.export_job")
    async with footage(service_settings(), tmp_path, worker=True) as f:
        second = f.recordings[1]
        # 1 s into the first recording to 1 s into the third: 4 s of footage, a 6 s gap.
        created = await create(f.service, range_source(f.camera, 1, 11))
        coverage = created.coverage
        assert [s.recording for s in coverage.spans] == [r.name for r in f.recordings]
        assert [(s.start_time, s.end_time) for s in coverage.spans] == [
            (at(1), at(2)),
            (at(2), at(4)),
            (at(10), at(11)),
        ]
        assert [seconds(s.source_offset) for s in coverage.spans] == [1, 0, 0]
        assert [seconds(s.output_offset) for s in coverage.spans] == [0, 1, 3]
        assert [(g.start_time, g.end_time) for g in coverage.gaps] == [(at(4), at(10))]
        assert seconds(coverage.gaps[0].output_offset) == 3
        assert (seconds(coverage.covered_duration), seconds(coverage.gap_duration)) == (4, 6)
        assert created.capture_start_time == at(1)
        assert created.source.camera_range.gap_mode == Range.GAP_MODE_CLOSE

        phases: list[str] = []
        done = await finish(f.service, created.name, phases)
        # The join is reported as a phase of its own before the operations' passes; its
        # start 1 s into a recording without a keyframe there makes it a re-encode.
        assert phases[0] == "join" and "convert" in phases
        assert "join:re-encode" in phases and "join:copy" not in phases
        # The worker's log says why.
        assert (
            f"export {created.name.rsplit('/', 1)[1]}: join:re-encode (the cut at 1.000 s into "
            "recording-0.mp4 is not at a keyframe)"
        ) in caplog.messages
        assert phases[phases.index("convert") :] == ["convert"] * (
            len(phases) - phases.index("convert")
        )
        assert done.coverage == coverage
        assert abs(seconds(done.outputs[0].duration) - 4.0) <= 1 / FPS
        frames = await frames_of(f.service, done, tmp_path)
        assert abs(len(frames) - 4 * FPS) <= 1
        indexes = [read_frame_index(rgb) for _, rgb in frames]
        # Cut exactly: frame 25 (1 s) of the first recording starts it, frame 24 of the third
        # (just before 1 s) ends it; the second recording follows the first directly and the
        # third follows the second where the gap was closed.
        assert indexes[0] == FPS and indexes[-1] == FPS - 1
        assert indexes[FPS - 1 : FPS + 1] == [2 * FPS - 1, 0]
        assert indexes[3 * FPS - 1 : 3 * FPS + 1] == [2 * FPS - 1, 0]
        # A chapter per recording span, titled with when it was captured.
        chapters, cues = chapters_and_cues(tmp_path / f"out-{done.name.rsplit('/', 1)[1]}.mp4")
        assert chapters == [
            (0.0, "2023-11-14 22:13:21 UTC"),
            (1.0, "2023-11-14 22:13:22 UTC"),
            (3.0, "2023-11-14 22:13:30 UTC"),
        ]
        assert cues == []

        # The signed manifest names every recording read, with the hash of its stored bytes
        # and the part of the timeline it served, and the gap.
        signed = json.loads(await stored(f.service, done.manifest.storage_key, tmp_path))
        clip = await stored(f.service, f.recordings[0].object_key, tmp_path)
        assert [
            (s["recording"], s["storage_key"], s["sha256"], s["start_time"], s["end_time"])
            for s in signed["sources"]
        ] == [
            (r.name, r.object_key, hashlib.sha256(clip).hexdigest(), rfc3339(a), rfc3339(b))
            for r, (a, b) in zip(f.recordings, [(1, 2), (2, 4), (10, 11)], strict=True)
        ]
        assert {s["camera"] for s in signed["sources"]} == {f.camera}
        assert signed["gaps"] == [
            {"camera": f.camera, "start_time": rfc3339(4), "end_time": rfc3339(10)}
        ]

        # Finished: the hold is gone with it.
        await f.cameras.DeleteRecording(svc.DeleteRecordingRequest(name=second.name))


async def test_time_range_on_keyframes_is_joined_by_stream_copy(
    service_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Recordings with a keyframe every second, a range from 1 s to 11 s: every cut is at a
    keyframe or a recording's end, so the packets are copied, not re-encoded."""
    caplog.set_level(logging.INFO, logger="workers.job.export_job")
    async with footage(service_settings(), tmp_path, worker=True, gop=FPS) as f:
        created = await create(f.service, range_source(f.camera, 1, 11))
        phases: list[str] = []
        done = await finish(f.service, created.name, phases)
        assert "join:copy" in phases and "join:re-encode" not in phases
        assert f"export {created.name.rsplit('/', 1)[1]}: join:copy" in caplog.messages
        out = tmp_path / f"out-{done.name.rsplit('/', 1)[1]}.mp4"
        frames = await frames_of(f.service, done, tmp_path)
        assert len(frames) == 4 * FPS
        indexes = [read_frame_index(rgb) for _, rgb in frames]
        assert indexes == list(range(FPS, 2 * FPS)) + list(range(2 * FPS)) + list(range(FPS))
        assert [t for t, _ in frames] == pytest.approx([n / FPS for n in range(4 * FPS)])

        def packets(path: Path) -> list[bytes]:
            with av.open(str(path)) as container:
                return [bytes(p) for p in container.demux(video=0) if p.size]

        # The recording's own packets, byte for byte, through the join and the remux.
        clip = tmp_path / "segment.mp4"
        source = await asyncio.to_thread(packets, clip)
        with av.open(str(clip)) as container:
            keyframes = [p.is_keyframe for p in container.demux(video=0) if p.size]
        second = keyframes.index(True, 1)  # the packet of the keyframe at 1 s
        assert await asyncio.to_thread(packets, out) == (source[second:] + source + source[:second])
        chapters, _ = chapters_and_cues(out)
        assert chapters == [
            (0.0, "2023-11-14 22:13:21 UTC"),
            (1.0, "2023-11-14 22:13:22 UTC"),
            (3.0, "2023-11-14 22:13:30 UTC"),
        ]


async def test_time_range_with_slates_keeps_wall_clock_time(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with footage(service_settings(), tmp_path, worker=True) as f:
        created = await create(
            f.service, range_source(f.camera, 1, 11, Range.GAP_MODE_SLATE, subtitles=True)
        )
        assert seconds(created.coverage.gaps[0].output_offset) == 3
        assert [seconds(s.output_offset) for s in created.coverage.spans] == [0, 1, 9]
        done = await finish(f.service, created.name)
        assert abs(seconds(done.outputs[0].duration) - 10.0) <= 1 / FPS
        frames = await frames_of(f.service, done, tmp_path)
        assert abs(len(frames) - 10 * FPS) <= 1
        slates = [t for t, rgb in frames if is_slate(rgb)]
        # The slate fills 3 s to 9 s of the video: the gap's 6 s.
        assert abs(len(slates) - 6 * FPS) <= 1
        assert abs(slates[0] - 3.0) <= 1 / FPS and abs(slates[-1] - (9.0 - 1 / FPS)) <= 1 / FPS
        assert read_frame_index(frames[0][1]) == FPS
        assert read_frame_index(frames[-1][1]) == FPS - 1
        with av.open(str(tmp_path / f"out-{done.name.rsplit('/', 1)[1]}.mp4")) as container:
            # Silence under the slate, not a hole: the clip's tone elsewhere.
            audio = np.concatenate([a.to_ndarray()[0] for a in container.decode(audio=0)])
        loudness = [
            float(np.sqrt((audio[n * 48000 : (n + 1) * 48000] ** 2).mean())) for n in range(10)
        ]
        assert [level > 0.05 for level in loudness] == [True] * 3 + [False] * 6 + [True]
        chapters, cues = chapters_and_cues(tmp_path / f"out-{done.name.rsplit('/', 1)[1]}.mp4")
        assert [t for t, _ in chapters] == [0.0, 1.0, 3.0, 9.0]
        assert chapters[2][1] == "2023-11-14 22:13:24 UTC (no recording)"
        # The capture time, a cue per second: the video's time runs with the wall clock.
        assert [t for t, _ in cues] == [float(n) for n in range(10)]
        assert cues[0][1] == "2023-11-14 22:13:21 UTC" and cues[-1][1] == "2023-11-14 22:13:30 UTC"


async def test_recording_source(service_settings: Callable[..., Settings], tmp_path: Path) -> None:
    async with footage(service_settings(), tmp_path, worker=True) as f:
        third = f.recordings[2]
        created = await create(f.service, export_pb2.ExportSource(recording=third.name))
        assert created.source.recording == third.name
        assert created.capture_start_time == at(10)
        assert [s.recording for s in created.coverage.spans] == [third.name]
        assert not created.coverage.gaps
        done = await finish(f.service, created.name)
        frames = await frames_of(f.service, done, tmp_path)
        assert len(frames) == 2 * FPS
        assert read_frame_index(frames[0][1]) == 0
        assert read_frame_index(frames[-1][1]) == 2 * FPS - 1


async def test_recordings_are_held_until_the_export_ends(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # No worker: the exports stay QUEUED until cancelled.
    async with footage(service_settings(), tmp_path, worker=False) as f:
        first, second, third = f.recordings
        ranged = await create(f.service, range_source(f.camera, 3, 11))
        single = await create(f.service, export_pb2.ExportSource(recording=first.name))

        for held, export in ((second, ranged), (third, ranged), (first, single)):
            error = await expect_error(
                f.cameras.DeleteRecording(svc.DeleteRecordingRequest(name=held.name)),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            assert reason_of(status_of(error)) == "RECORDING_IN_USE"
            assert export.name in (error.details() or "")
        error = await expect_error(
            f.cameras.DeleteCamera(svc.DeleteCameraRequest(name=f.camera, force=True)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert reason_of(status_of(error)) == "RECORDING_IN_USE"
        # Nothing was deleted by the refused calls.
        for recording in f.recordings:
            await f.cameras.GetRecording(svc.GetRecordingRequest(name=recording.name))
            await f.service.app.storage.stat(recording.object_key)

        await f.service.exports.CancelExport(esvc.CancelExportRequest(name=ranged.name))
        await f.cameras.DeleteRecording(svc.DeleteRecordingRequest(name=second.name))
        await expect_error(
            f.cameras.DeleteRecording(svc.DeleteRecordingRequest(name=first.name)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        # A deleted recording is no longer footage: the range now has less of it.
        again = await create(f.service, range_source(f.camera, 3, 11))
        assert [s.recording for s in again.coverage.spans] == [third.name]
        await f.service.exports.CancelExport(esvc.CancelExportRequest(name=again.name))
        await f.service.exports.CancelExport(esvc.CancelExportRequest(name=single.name))
        await f.cameras.DeleteCamera(svc.DeleteCameraRequest(name=f.camera, force=True))


async def test_a_recording_being_deleted_is_not_held(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # DeleteRecording marks the recording before it removes anything: an export created in
    # between is refused in the transaction that would add its hold.
    async with footage(service_settings(), tmp_path, worker=False) as f:
        first = f.recordings[0]
        recording_id = first.name.rsplit("/", 1)[1]
        app = f.service.app
        await app.database.execute(
            "UPDATE recordings SET deleting_until = now() + interval '60 seconds' WHERE id = $1",
            recording_id,
        )
        error = await expect_error(
            create(f.service, export_pb2.ExportSource(recording=first.name)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert reason_of(status_of(error)) == "RECORDING_DELETED"
        assert recording_id in (error.details() or "")
        assert await app.queue.depth() == 0
        held = "SELECT count(*) FROM retention_holds WHERE recording_id = $1"
        assert await app.database.fetchval(held, recording_id) == 0
        assert (await app.store.page(page_size=10, page_token="", keep=ExportFilter()))[0] == []


async def test_source_validation(service_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = service_settings(max_export_range_s=60)
    async with footage(settings, tmp_path, worker=False) as f:
        refused = await expect_error(
            create(f.service, range_source(f.camera, 5, 9)), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert reason_of(status_of(refused)) == "NO_FOOTAGE"
        assert "no footage" in (refused.details() or "")
        # Before all footage, and after it: nothing either.
        await expect_error(
            create(f.service, range_source(f.camera, -30, -1)), grpc.StatusCode.FAILED_PRECONDITION
        )

        field = "export.source.camera_range"
        for source, bad in (
            (range_source(f.camera, 4, 4), f"{field}.end_time"),
            (range_source(f.camera, 4, 1), f"{field}.end_time"),
            (range_source(f.camera, 0, 61), f"{field}.end_time"),  # over MAX_EXPORT_RANGE
            (range_source("gate", 0, 4), f"{field}.camera"),
            (
                export_pb2.ExportSource(camera_range=Range(camera=f.camera, end_time=at(1))),
                f"{field}.start_time",
            ),
            (export_pb2.ExportSource(recording="gate/0"), "export.source.recording"),
        ):
            error = await expect_error(create(f.service, source), grpc.StatusCode.INVALID_ARGUMENT)
            assert bad in violations_of(error), (bad, violations_of(error))

        await expect_error(
            create(f.service, range_source("cameras/nowhere", 0, 4)), grpc.StatusCode.NOT_FOUND
        )
        missing = f.recordings[0].name.rsplit("/", 1)[0] + "/" + "0" * 20
        await expect_error(
            create(f.service, export_pb2.ExportSource(recording=missing)),
            grpc.StatusCode.NOT_FOUND,
        )
        await expect_error(
            create(
                f.service,
                export_pb2.ExportSource(
                    recording=f.recordings[0].name.replace("cameras/gate", "cameras/yard")
                ),
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        # Nothing was queued by the refused calls.
        listed = await f.service.exports.ListExports(esvc.ListExportsRequest())
        assert not listed.exports


async def test_cli_creates_recording_and_range_exports(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with footage(service_settings(), tmp_path, worker=False) as f:
        target = ["--target", f.service.target]
        ranged = await sparc_video(
            "export", "create", "--camera", "gate", "--from", "2023-11-14T22:13:21Z",
            "--to", "2023-11-14T22:13:31Z", "--gaps", "slate", "--convert", "container=mp4",
            "--format", "json", *target,
        )  # fmt: skip
        assert ranged.rc == 0, ranged.stderr
        body = ranged.json
        assert body["source"]["cameraRange"]["gapMode"] == "GAP_MODE_SLATE"
        assert body["captureStartTime"] == "2023-11-14T22:13:21Z"
        assert [g["startTime"] for g in body["coverage"]["gaps"]] == ["2023-11-14T22:13:24Z"]

        shown = await sparc_video("export", "get", body["name"], *target)
        assert shown.rc == 0, shown.stderr
        assert "cameras/gate 2023-11-14 22:13:21Z - 2023-11-14 22:13:31Z (gaps: slate)" in (
            shown.stdout
        )
        assert "22:13:24Z - 2023-11-14 22:13:30Z  NO RECORDING" in shown.stdout

        single = await sparc_video(
            "export", "create", "--recording", f.recordings[0].name, "--convert",
            "container=mp4", *target,
        )  # fmt: skip
        assert single.rc == 0, single.stderr
        got = await f.service.exports.GetExport(esvc.GetExportRequest(name=single.stdout.strip()))
        assert got.source.recording == f.recordings[0].name

        for argv in (
            ["clip.mp4", "--recording", f.recordings[0].name],
            ["--camera", "gate", "--from", "2023-11-14T22:13:21Z"],
            ["--recording", f.recordings[0].name, "--gaps", "slate"],
            [],
        ):
            refused = await sparc_video("export", "create", *argv, "--convert", "container=mp4")
            assert refused.rc == 2, (argv, refused.stderr)
        # Refused by the server: no footage then.
        empty = await sparc_video(
            "export", "create", "--camera", "gate", "--from", "2023-11-14T22:13:25Z",
            "--to", "2023-11-14T22:13:29Z", "--convert", "container=mp4", *target,
        )  # fmt: skip
        assert empty.rc == 5 and "no footage" in empty.stdout + empty.stderr


def _recording(rid: str, start_s: float, end_s: float) -> RecordingRecord:
    return RecordingRecord(
        id=rid,
        camera_id="gate",
        object_key=f"nvr/{rid}.mp4",
        start_ns=round((T0 + start_s) * 1e9),
        duration_ns=round((end_s - start_s) * 1e9),
        stream=StreamInfo("mp4", "h264", 320, 240, 25.0, ""),
        frame_count=0,
        size_bytes=1,
        sha256="",
    )


def test_coverage_of_overlapping_recordings_and_edge_gaps() -> None:
    def ns(s: float) -> int:
        return round((T0 + s) * 1e9)

    recordings = [_recording("b", 3, 8), _recording("a", 2, 5), _recording("c", 6, 7)]
    for mode, offsets in (("close", [0, 3]), ("slate", [1, 4])):
        coverage = plan_coverage(recordings, CameraRange("gate", ns(1), ns(10), mode))  # type: ignore[arg-type]
        # The earlier recording serves until it ends; the one inside another adds nothing.
        assert [(s.recording_id, s.start_ns, s.end_ns) for s in coverage.spans] == [
            ("a", ns(2), ns(5)),
            ("b", ns(5), ns(8)),
        ]
        assert [s.source_offset_ns for s in coverage.spans] == [0, 2 * 10**9]
        assert [s.output_offset_ns / 1e9 for s in coverage.spans] == offsets
        assert [(g.start_ns, g.end_ns) for g in coverage.gaps] == [(ns(1), ns(2)), (ns(8), ns(10))]
        assert coverage.covered_ns + coverage.gap_ns == 9 * 10**9


def test_wall_clock_follows_a_trim() -> None:
    clock = WallClock(
        (ClockPart(0.0, 2.0, 10**18), ClockPart(2.0, 3.0, 10**18 + 60 * 10**9, gap=True))
    )
    parts = output_parts(clock, 1.5, 4.0)
    assert [(p.start_s, p.end_s, p.gap) for p in parts] == [(0.0, 0.5, False), (0.5, 2.5, True)]
    assert parts[0].start_ns == 10**18 + 1_500_000_000
    assert [c[0] for c in cues(parts, 2.5)] == [0.0, 0.5, 1.5]
    start = clock.capture_time(1.5)
    assert start is not None and start.timestamp() == 10**9 + 1.5
    assert clock.capture_time(5.0) is None
