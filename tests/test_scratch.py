"""The scratch sweep (workers.job.scratch) never removes a directory an attempt is still
working in, even when Redis has no lease for it (restarted empty), and removes the others once
nothing can own them."""

from __future__ import annotations

from collections.abc import Callable

from sparc_video.core.settings import Settings
from sparc_video.exports.event_log import EventKind
from sparc_video.exports.models import ExportRecord, ExportState
from tests.fixtures.service import start_service
from tests.test_export_e2e import create_request, thumbnail
from workers.job import scratch


async def test_an_unleased_running_attempt_keeps_its_scratch_while_it_may_be_alive(
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings()
    async with start_service(settings, worker=False) as service:
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")
        store = service.app.store
        names = []
        for _ in range(2):
            created = await service.exports.CreateExport(create_request("in/a.mp4", thumbnail("1")))
            export_id = created.name.split("/")[1]

            def to_running(current: ExportRecord) -> str:
                current.state = ExportState.RUNNING
                current.attempt += 1
                return EventKind.STATE_CHANGED

            record = await store.update(export_id, to_running)
            folder = scratch.attempt_dir(settings.temp_dir, export_id, record.attempt)
            folder.mkdir(parents=True)
            (folder / "source.mp4").write_bytes(b"partial")
            names.append(folder.name)
        ours, other = names
        # RUNNING with no lease anywhere: Redis restarted empty. `ours` is an attempt of this
        # process; `other` may be another process's, whose keeper stops it within the TTL.
        assert [await store.lease_holder(n.split(".")[0]) for n in names] == [None, None]
        unleased: dict[str, float] = {}
        removed = await scratch.sweep(
            settings.temp_dir, store, in_use={ours}, unleased_since=unleased, lease_ttl_s=3600
        )
        assert removed == []
        assert (settings.temp_dir / ours / "source.mp4").exists()
        assert set(unleased) == {other}
        # A lease TTL after it was first seen unleased, the other one goes; ours stays.
        unleased[other] -= 3600
        removed = await scratch.sweep(
            settings.temp_dir, store, in_use={ours}, unleased_since=unleased, lease_ttl_s=3600
        )
        assert removed == [other]
        assert (settings.temp_dir / ours).is_dir()
        # Once no attempt of ours works in it (as after our worker died), no grace: swept.
        removed = await scratch.sweep(settings.temp_dir, store)
        assert removed == [ours]
        assert list(settings.temp_dir.iterdir()) == []
