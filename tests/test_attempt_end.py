"""An attempt that has written its outcome is not stopped by its own lease keeper.

The outcome write (SUCCEEDED, RETRYING, FAILED) releases the attempt's lease; the cleanup after
it (deleting earlier attempts' or this attempt's objects) can take longer than one keeper tick on
a slow store. Found through `video_storage_used_bytes` reading 0 for a succeeded export.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from sparc.video.v1 import export_pb2

from sparc_video.core.settings import Settings
from sparc_video.media.synth import make_sample_clip
from tests.fixtures.redis import free_port
from tests.fixtures.s3 import s3_client
from tests.fixtures.service import start_service
from tests.test_export_e2e import create_request, thumbnail
from tests.test_observability import (
    arq_finished,
    denying_s3,
    observed_settings,
    wait_for_state,
)
from tests.web_server import serving_app

State = export_pb2.Export
# Longer than the keeper's 0.5 s tick.
SLOW_S = 1.2


@contextlib.asynccontextmanager
async def slow_listing_s3(upstream: str) -> AsyncIterator[str]:
    """A pass-through to `upstream` S3 whose object listings (what a prefix delete starts with)
    take SLOW_S, as on a loaded store."""

    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def forward(request: web.Request) -> web.StreamResponse:
            if request.method == "GET" and "list-type" in request.query:
                await asyncio.sleep(SLOW_S)
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            async with session.request(
                request.method,
                f"{upstream}{request.rel_url}",
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as reply:
                body = await reply.read()
                drop = {"transfer-encoding", "content-encoding", "connection"}
                if request.method != "HEAD":
                    drop.add("content-length")  # set again from the body
                kept = {k: v for k, v in reply.headers.items() if k.lower() not in drop}
                if request.method == "HEAD":
                    return web.Response(status=reply.status, headers=kept)
                return web.Response(status=reply.status, headers=kept, body=body)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", forward)
        async with serving_app(app) as url:
            yield url


async def test_a_succeeded_retry_keeps_its_outputs_when_cleanup_is_slow(
    s3_service_settings: Callable[..., Settings], s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    good = observed_settings(s3_service_settings)
    clip = tmp_path / "clip.mp4"
    make_sample_clip(clip, width=160, height=90, duration_s=0.5)
    async with start_service(good, worker=False) as service:
        await service.app.storage.upload_file(clip, "in/clip.mp4", "video/mp4")
        created = await service.exports.CreateExport(
            create_request("in/clip.mp4", thumbnail("50%"))
        )
        # Attempt 1 fails transiently, so attempt 2 has an earlier attempt to clean up.
        async with (
            denying_s3() as denying,
            start_service(good.replace(s3_endpoint_url=denying, http_port=free_port())),
        ):
            await wait_for_state(service, created.name, State.STATE_RETRYING)
            await arq_finished(service, created.name)
        async with (
            slow_listing_s3(s3_endpoint) as slow,
            start_service(good.replace(s3_endpoint_url=slow, http_port=free_port())),
        ):
            done = await wait_for_state(service, created.name, State.STATE_SUCCEEDED)
            await arq_finished(service, created.name)
            record = await service.app.store.get(created.name.removeprefix("exports/"))
            assert record.state.value == "SUCCEEDED" and record.attempt == 2
            stored = await service.app.redis.get(service.app.store.keys.stored_bytes)

    client = s3_client(s3_endpoint)
    for output in done.outputs:
        head = client.head_object(Bucket=s3_bucket, Key=output.storage_key)
        assert head["ContentLength"] == output.size_bytes
    # The outputs, and the signed manifest and its signature stored with them.
    manifest_keys = (done.manifest.storage_key, done.manifest.signature_storage_key)
    manifest_bytes = sum(
        client.head_object(Bucket=s3_bucket, Key=key)["ContentLength"] for key in manifest_keys
    )
    assert int(stored) == sum(o.size_bytes for o in done.outputs) + manifest_bytes
