"""Operators' view: the real grpcurl binary against a running server, through reflection."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
from sparc.video.v1 import export_pb2

from sparc_video.core.settings import Settings
from tests.fixtures.service import start_service
from tests.test_export_e2e import create_request, put_clip, thumbnail, watch_to_end


async def grpcurl(*args: str) -> tuple[int, str]:
    binary = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"
    process = await asyncio.create_subprocess_exec(
        binary,
        "-plaintext",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode()


async def test_grpcurl_list_describe_health_and_create(
    service_settings: Callable[..., Settings],
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        target = service.target
        code, out = await grpcurl(target, "list")
        assert code == 0, out
        assert "sparc.video.v1.ExportService" in out.split()
        assert "grpc.health.v1.Health" in out.split()

        code, out = await grpcurl(target, "describe", "sparc.video.v1.ExportService")
        assert code == 0, out
        assert "rpc WatchExport ( .sparc.video.v1.WatchExportRequest ) returns ( stream" in out

        code, out = await grpcurl(target, "grpc.health.v1.Health/Check")
        assert code == 0, out
        assert json.loads(out) == {"status": "SERVING"}

        await service.app.storage.put_bytes("samples/clip.mp4", b"x", "video/mp4")
        body = {
            "export": {
                "source": {"objectKey": "samples/clip.mp4"},
                "operations": [
                    {"transcode": {"codec": "h264", "resolution": "1280x720", "bitrate": "1000k"}},
                    {"thumbnail": {"timestamps": ["50%"], "size": "320x240"}},
                ],
            },
            "requestId": "grpcurl-1",
        }
        code, out = await grpcurl(
            "-d", json.dumps(body), target, "sparc.video.v1.ExportService/CreateExport"
        )
        assert code == 0, out
        created = json.loads(out)
        assert created["state"] == "STATE_QUEUED"
        assert created["operations"][0]["transcode"]["resolution"] == "1280x720"

        code, out = await grpcurl(
            "-d",
            json.dumps({"export": {"source": {"objectKey": "samples/clip.mp4"}}}),
            target,
            "sparc.video.v1.ExportService/CreateExport",
        )
        assert code != 0
        assert "InvalidArgument" in out and "at least one operation" in out


async def test_a_download_url_from_grpcurl_works_once_read_as_json(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The walk-through's way: grpcurl prints JSON, so `&` arrives as \\u0026; read as JSON the
    URL works, pasted as printed it gets a 403 that says the link is malformed."""
    async with start_service(service_settings()) as service:
        await put_clip(service, tmp_path, "samples/clip.mp4", width=160, height=90, duration_s=1)
        created = await service.exports.CreateExport(
            create_request("samples/clip.mp4", thumbnail("50%"))
        )
        final = (await watch_to_end(service, created.name))[-1].export
        assert final.state == export_pb2.Export.STATE_SUCCEEDED
        code, out = await grpcurl(
            "-d",
            json.dumps({"name": created.name}),
            service.target,
            "sparc.video.v1.ExportService/GetExportDownloadUrl",
        )
        assert code == 0, out
        assert "\\u0026" in out
        url = json.loads(out)["urls"][0]["url"]
        pasted = url.replace("&", "\\u0026")
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as good:
                assert good.status == 200
                assert (await good.read())[:3] == b"\xff\xd8\xff"  # a JPEG
            async with session.get(pasted) as bad:
                assert bad.status == 403
                assert "malformed" in await bad.text()
