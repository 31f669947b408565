"""Hostile and broken sources through the real service: each ends quickly, classified, contained.

No case may read a local file or open a network connection besides storage: the playlists point
at a FIFO (opening it would hang the job) and at a loopback listener that counts connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sparc.video.v1 import export_pb2, export_service_pb2

from sparc_video.core.settings import Settings
from tests.fixtures.service import start_service
from tests.hostile_media import FILE_CASES, Case, ConnectionCanary, FifoWatch, playlist_cases
from tests.test_export_e2e import create_request, thumbnail, transcode

State = export_pb2.Export


@pytest.fixture
def canary() -> Iterator[ConnectionCanary]:
    listener = ConnectionCanary()
    yield listener
    listener.close()


async def test_hostile_corpus_fails_fast_classified_and_contained(
    service_settings: Callable[..., Settings], tmp_path: Path, canary: ConnectionCanary
) -> None:
    watch = FifoWatch(tmp_path / "canary.fifo")
    fifo = watch.path
    cases: list[Case] = [*FILE_CASES, *playlist_cases(canary.url, fifo)]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    async with start_service(service_settings(worker_concurrency=2)) as service:
        names: dict[str, Case] = {}
        for case in cases:
            path = await asyncio.to_thread(case.make, corpus / f"{case.name}.mp4")
            key = f"hostile/{case.name}.mp4"
            await service.app.storage.upload_file(path, key, "video/mp4")
            created = await service.exports.CreateExport(
                create_request(
                    key,
                    transcode(resolution="160x0", preset="ultrafast"),
                    thumbnail("50%", size="80x0"),
                )
            )
            names[created.name] = case
        started = time.monotonic()
        results: dict[str, export_pb2.Export] = {}
        while len(results) < len(names):
            assert time.monotonic() - started < 60, f"unfinished: {set(names) - set(results)}"
            for name in names:
                if name in results:
                    continue
                export = await service.exports.GetExport(
                    export_service_pb2.GetExportRequest(name=name)
                )
                if export.state in (State.STATE_SUCCEEDED, State.STATE_FAILED):
                    results[name] = export
            await asyncio.sleep(0.1)

        for name, export in results.items():
            case = names[name]
            reason = ""
            if export.state == State.STATE_FAILED:
                from google.rpc import error_details_pb2

                info = error_details_pb2.ErrorInfo()
                assert export.error.details[0].Unpack(info)
                reason = info.reason
                assert reason in case.reasons, (case.name, reason, export.error.message)
                assert export.error.message
            else:
                assert case.may_succeed, (case.name, "should have failed")
        # The worker is still healthy: a normal clip goes through after the corpus.
        from sparc_video.media.synth import make_sample_clip

        good = corpus / "good.mp4"
        await asyncio.to_thread(make_sample_clip, good, width=320, height=180, duration_s=1.0)
        await service.app.storage.upload_file(good, "hostile/good.mp4", "video/mp4")
        created = await service.exports.CreateExport(
            create_request("hostile/good.mp4", thumbnail("50%"))
        )
        while True:
            export = await service.exports.GetExport(
                export_service_pb2.GetExportRequest(name=created.name)
            )
            if export.state == State.STATE_SUCCEEDED:
                break
            assert export.state in (State.STATE_QUEUED, State.STATE_RUNNING), export
            await asyncio.sleep(0.05)
        assert not list(service.settings.temp_dir.iterdir())
    assert canary.connections == 0
    assert not watch.close(), "a file a playlist or data reference names was opened"
