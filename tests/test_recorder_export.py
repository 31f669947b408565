"""What a recorder recorded exports like any footage: a camera-range export over the recorded
seconds, through the real server and worker, succeeds and its video decodes for the range."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import aiohttp
import av
import pytest
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.client import camera_range, convert
from sparc_video.core.settings import Settings
from sparc_video.simulator import TestCamera
from sparc_video.storage import LocalStorage
from tests.fixtures.service import start_service
from tests.recorder_helpers import FAST, add_recorded_camera, running_recorder, wait_for
from tests.test_export_e2e import watch_to_end

State = export_pb2.Export


@pytest.mark.timeout(240)
async def test_a_camera_range_export_of_recorded_footage_succeeds(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings(**FAST, recorder_buffer_dir=tmp_path / "buffer")
    with TestCamera(size=(160, 96), fps=10) as camera:
        async with start_service(settings) as service:
            database = service.app.database
            storage = service.app.storage
            assert isinstance(storage, LocalStorage)
            store = await add_recorded_camera(database, "gate", camera.url)
            async with running_recorder(settings, database, storage, "rec"):

                async def enough() -> bool:
                    return len(await store.all_recordings("gate")) >= 5

                await wait_for(enough, 90, "five recorded segments")
            found = await store.all_recordings("gate")
            start = found[0].start_ns + 200_000_000
            end = found[-1].end_ns - 200_000_000

            def at(ns: int) -> datetime.datetime:
                return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC)

            created = await service.exports.CreateExport(
                export_service_pb2.CreateExportRequest(
                    export=export_pb2.Export(
                        source=camera_range("gate", at(start), at(end)),
                        operations=[convert("mp4")],
                    )
                )
            )
            final = (await watch_to_end(service, created.name))[-1].export
            assert final.state == State.STATE_SUCCEEDED, final.error
            urls = await service.exports.GetExportDownloadUrl(
                export_service_pb2.GetExportDownloadUrlRequest(name=created.name)
            )
            async with aiohttp.ClientSession() as session, session.get(urls.urls[0].url) as got:
                (tmp_path / "out.mp4").write_bytes(await got.read())
    with av.open(str(tmp_path / "out.mp4")) as result:
        frames = sum(1 for _ in result.decode(video=0))
    seconds = (end - start) / 1e9
    # 10 fps over the range, give or take the frames at its two cuts.
    assert abs(frames - seconds * 10) <= 3, (frames, seconds)
