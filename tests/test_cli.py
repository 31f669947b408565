"""`sparc-video export|queue ...` run as real processes against a real server and worker."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pty
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sparc.video.v1 import export_pb2

import sparc_video.cli.main as cli
from sparc_video.cli.exports import given_operations
from sparc_video.cli.operations import (
    OPERATION_KINDS,
    describe_operation,
    parse_operation,
    parse_operations,
)
from sparc_video.cli.runner import UsageError
from sparc_video.client import AsyncExportClient, thumbnail
from sparc_video.core.settings import Settings
from tests.fixtures.redis import free_port
from tests.fixtures.service import start_service
from tests.test_client import put_clip

SPARC_VIDEO = Path(sys.executable).parent / "sparc-video"
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
TRANSCODE = "codec=h264,resolution=160x90,preset=ultrafast"
THUMBNAIL = "at=50%,size=80x45"


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def client_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARC_VIDEO_")}
    return {**env, **extra}


async def sparc_video(*args: str, env: dict[str, str] | None = None) -> Result:
    # An asyncio subprocess, so the server in this event loop keeps answering meanwhile.
    proc = await asyncio.create_subprocess_exec(
        str(SPARC_VIDEO),
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or client_env(),
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def no_redraws(result: Result) -> None:
    assert "\r" not in result.stdout + result.stderr
    assert "\x1b[" not in result.stdout + result.stderr


async def test_create_watch_get_list_download_and_stats(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with start_service(service_settings()) as service:
        await put_clip(service, tmp_path, "in/clip.mp4")
        target = ["--target", service.target]

        created = await sparc_video(
            "export", "create", "in/clip.mp4", "--transcode", TRANSCODE,
            "--thumbnail", THUMBNAIL, "--watch", *target,
        )  # fmt: skip
        assert created.rc == 0, created.stderr
        name = created.stdout.splitlines()[0]
        assert name.startswith("exports/")
        no_redraws(created)
        # Consecutive progress events may be coalesced for a slow reader, so not every pass
        # is sure to show; at least the last one is.
        assert re.search(r"^\[[12]/2 (transcode|thumbnail)\] +\d+\.\d%", created.stderr, re.M)
        # The watch starts after the create, by when a worker may already have the export.
        assert re.search(rf"^{name}: (QUEUED|RUNNING)", created.stderr, re.M)
        assert f"{name}: SUCCEEDED" in created.stderr
        assert "SUCCEEDED" in created.stdout and "outputs:" in created.stdout

        got = await sparc_video("export", "get", name, "--format", "json", *target)
        assert got.rc == 0 and got.json["name"] == name
        assert got.json["state"] == "STATE_SUCCEEDED"
        outputs = got.json["outputs"]
        text = await sparc_video("export", "get", name.removeprefix("exports/"), *target)
        assert "transcode codec=h264,resolution=160x90,preset=ultrafast" in text.stdout
        assert "thumbnail at=50%,size=80x45" in text.stdout

        # The target from the environment, as scripts would set it.
        env = client_env(SPARC_VIDEO_TARGET=service.target)
        listed = await sparc_video(
            "export", "list", "--state", "succeeded", "--format", "json", env=env
        )
        assert [e["name"] for e in listed.json["exports"]] == [name]
        table = await sparc_video("export", "list", env=env)
        assert table.stdout.splitlines()[0].split() == [
            "NAME", "STATE", "PROGRESS", "CREATED", "SOURCE"
        ]  # fmt: skip
        assert name in table.stdout and "SUCCEEDED" in table.stdout

        out = tmp_path / "downloads"
        fetched = await sparc_video(
            "export", "download", name, "-o", str(out), "--format", "json", *target
        )
        assert fetched.rc == 0, fetched.stderr
        files = fetched.json["files"]
        # The outputs, then the signed manifest and its signature.
        assert [f["sha256"] for f in files[: len(outputs)]] == [o["sha256"] for o in outputs]
        assert [Path(f["path"]).name for f in files[len(outputs) :]] == [
            "manifest.json",
            "manifest.json.sig",
        ]
        for file in files:
            assert hashlib.sha256(Path(file["path"]).read_bytes()).hexdigest() == file["sha256"]
        on_disk = sorted(str(p) for p in out.rglob("*") if p.is_file())
        assert on_disk == sorted(str(Path(f["path"])) for f in files)
        again = await sparc_video("export", "download", name, "-o", str(out), *target)
        again_json = await sparc_video(
            "export", "download", name, "-o", str(out), "--format", "json", *target
        )
        assert again.rc == 0 and again.stderr.count("already present") == len(outputs)
        assert all(f["alreadyPresent"] for f in again_json.json["files"])
        no_redraws(again)

        stats = await sparc_video("queue", "stats", "--format", "json", *target)
        assert stats.json["succeeded"] == "1" and stats.json["workers"] == 1
        stats_text = await sparc_video("queue", "stats", *target)
        assert "succeeded  1" in stats_text.stdout

        lines = await sparc_video(
            "export", "create", "in/clip.mp4", "--thumbnail", "--watch", "--format", "json", *target
        )
        assert lines.rc == 0, lines.stderr
        events = [json.loads(line) for line in lines.stdout.splitlines()]
        assert events[0]["kind"] == "EVENT_KIND_SNAPSHOT"
        assert events[-1]["export"]["state"] == "STATE_SUCCEEDED"

        await service.app.storage.put_bytes("in/bad.mp4", b"not a video", "video/mp4")
        failed = await sparc_video(
            "export", "create", "in/bad.mp4", "--thumbnail", "--watch", *target
        )
        assert failed.rc == 1, failed.stderr
        assert "FAILED: NOT_A_VIDEO" in failed.stderr


async def test_download_refuses_bytes_that_do_not_match_sha256(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings()
    async with start_service(settings) as service, AsyncExportClient(service.target) as client:
        await put_clip(service, tmp_path, "in/clip.mp4")
        created = await client.create_export("in/clip.mp4", [thumbnail("50%", size="80x45")])
        export = await client.wait_export(created.name)
        key = export.outputs[0].storage_key
        # Same size, one byte different: only the checksum can tell.
        original = bytearray((settings.local_storage_dir / key).read_bytes())
        original[len(original) // 2] ^= 0xFF
        await service.app.storage.put_bytes(key, bytes(original), "image/jpeg")

        out = tmp_path / "downloads"
        result = await sparc_video(
            "export", "download", created.name, "-o", str(out), "--target", service.target
        )
    assert result.rc == 6, result.stderr
    assert "sha256" in result.stderr and export.outputs[0].sha256 in result.stderr
    assert [p for p in out.rglob("*") if p.is_file()] == []


async def test_exit_codes_and_errors(service_settings: Callable[..., Settings]) -> None:
    async with start_service(service_settings(), worker=False) as service:
        target = ["--target", service.target]
        await service.app.storage.put_bytes("in/a.mp4", b"x", "video/mp4")

        usages = (
            ["export", "create", "in/a.mp4"],
            ["export", "create", "in/a.mp4", "--transcode", "bogus=1"],
            ["export", "create", "in/a.mp4", "--thumbnail", "size"],
            ["export", "create", "in/a.mp4", "--transcode", "preset=fast,preset=slow"],
            ["export", "create", "in/a.mp4", "--thumbnail", "format=gif"],
            ["export", "frobnicate"],
        )
        results = await asyncio.gather(*(sparc_video(*usage, *target) for usage in usages))
        for usage, result in zip(usages, results, strict=True):
            assert result.rc == 2, (usage, result)
            assert "usage:" in result.stderr.lower()

        created = await sparc_video("export", "create", "in/a.mp4", "--thumbnail", *target)
        assert created.rc == 0, created.stderr
        name = created.stdout.strip()
        cancelled = await sparc_video("export", "cancel", name, *target)
        assert cancelled.rc == 0 and "CANCELLED" in cancelled.stdout
        watched = await sparc_video("export", "watch", name, *target)
        assert watched.rc == 3 and "CANCELLED" in watched.stderr

        again = await sparc_video("export", "cancel", name, "--format", "json", *target)
        assert again.rc == 5
        assert again.json["error"]["code"] == "FAILED_PRECONDITION"
        assert again.json["error"]["reason"] == "EXPORT_FINISHED"

        missing = await sparc_video("export", "get", "exports/0123456789abcdef0123", *target)
        assert missing.rc == 5 and "EXPORT_NOT_FOUND" in missing.stderr
        invalid = await sparc_video(
            "export", "create", "../a.mp4", "--transcode", "codec=nope", "--format", "json", *target
        )
        assert invalid.rc == 5
        fields = {v["field"] for v in invalid.json["error"]["fieldViolations"]}
        assert {"export.source.object_key", "export.operations[0].transcode.codec"} <= fields

    unreachable = await sparc_video(
        "queue", "stats", "--target", f"127.0.0.1:{free_port()}", "--timeout", "3"
    )
    assert unreachable.rc == 4 and "UNAVAILABLE" in unreachable.stderr
    token = await sparc_video("queue", "stats", env=client_env(SPARC_VIDEO_TOKEN="t"))
    assert token.rc == 2 and "TLS" in token.stderr


class Terminal:
    """A pseudo-terminal for a child's stdout and stderr, read in the background."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(self.master, 65536):
                self._chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def close(self) -> None:
        os.close(self.slave)
        self._reader.join(5)
        os.close(self.master)


@contextlib.contextmanager
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    try:
        yield term
    finally:
        term.close()


async def test_watch_draws_a_bar_on_a_terminal_and_survives_a_server_restart(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = service_settings()
    with terminal() as term:
        async with start_service(settings, worker=False) as first:
            port = first.server.grpc_port
            await put_clip(first, tmp_path, "in/clip.mp4")
            async with AsyncExportClient(first.target) as client:
                created = await client.create_export(
                    "in/clip.mp4", [parse_operation("transcode", TRANSCODE)]
                )
            watch = await asyncio.create_subprocess_exec(
                str(SPARC_VIDEO), "export", "watch", created.name, "--target", first.target,
                stdin=subprocess.DEVNULL, stdout=term.slave, stderr=term.slave,
                env=client_env(TERM="xterm", COLUMNS="100"),
            )  # fmt: skip
            await wait_for_text(term, f"{created.name}: QUEUED")
            await first.server.stop(grace_s=5)
        await wait_for_text(term, "connection lost (UNAVAILABLE")

        restarted = settings.replace(grpc_port=port, http_port=free_port())
        async with start_service(restarted) as second:
            assert second.server.grpc_port == port
            async with asyncio.timeout(60):
                rc = await watch.wait()
        output = term.text
    assert rc == 0, output
    assert f"{created.name}: RUNNING (attempt 1)" in output
    assert f"{created.name}: SUCCEEDED" in output
    # Redrawn in place (by rich): carriage return, erase the line, a 40-wide bar.
    assert "\r\x1b[2K[1/1 transcode]" in output
    assert "100.0%" in output and ("━" * 40 in output or "-" * 40 in output)


async def wait_for_text(term: Terminal, text: str) -> None:
    async with asyncio.timeout(30):
        while text not in term.text:
            await asyncio.sleep(0.02)


def test_help_lists_environment_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for command, expected in (
        (["serve"], ["REDIS_URL", "GRPC_PORT", "S3_BUCKET", "WORKER_SHUTDOWN_GRACE"]),
        (["worker"], ["REDIS_URL", "VIDEO_WORKER_CONCURRENCY"]),
        (["dev"], ["REDIS_URL", "--data-dir"]),
        (["export", "watch"], ["SPARC_VIDEO_TARGET", "Exit codes:", "CANCELLED", "--progress"]),
        (["export", "create"], ["--transcode", "--thumbnail", "at=50%", "SPARC_VIDEO_TOKEN"]),
        (["queue", "stats"], ["--format", "Exit codes:"]),
    ):
        assert cli.main([*command, "--help"]) == 0
        text = capsys.readouterr().out
        for word in expected:
            assert word in text, (command, word)


def test_operation_flags_follow_the_proto() -> None:
    op = parse_operation("transcode", "codec=h264,bitrate=1000k,resolution=1280x720")
    assert (op.transcode.codec, op.transcode.bitrate) == ("h264", "1000k")
    assert op.transcode.resolution == "1280x720"
    thumb = parse_operation("thumbnail", "at=10%,at=00:00:02.5,size=320x240")
    assert list(thumb.thumbnail.timestamps) == ["10%", "00:00:02.5"]
    assert parse_operation("thumbnail", "").HasField("thumbnail")


def test_redact_and_clock_flags() -> None:
    """Repeated regions and timestamps are single values on the command line."""
    text = "region=0.1:0.2:0.3:0.4,region=0:0:0.5:0.5,mode=pixelate,start=1.5,duration=2"
    redact = parse_operation("redact", text)
    assert [(r.x, r.height) for r in redact.redact.regions] == [(0.1, 0.4), (0.0, 0.5)]
    assert redact.redact.mode == export_pb2.RedactOptions.MODE_PIXELATE
    assert describe_operation(redact) == f"redact {text}"
    clock = "text=Cam 7,clock.format=%H:%M:%S,clock.base_time=2024-05-01T12:00:00Z"
    watermark = parse_operation("watermark", clock)
    assert watermark.watermark.clock.base_time.seconds == 1714564800
    assert describe_operation(watermark) == f"watermark {clock}"
    for kind, bad in (("redact", "region=0.1:0.2"), ("watermark", "clock.base_time=yesterday")):
        with pytest.raises(UsageError):
            parse_operation(kind, bad)


def test_readme_cli_examples_parse() -> None:
    section = re.search(r"^## Command-line client\n(.*?)(?=^## )", README, re.M | re.S)
    assert section
    blocks = re.findall(r"```sh\n(.*?)```", section[1], re.S)
    commands = []
    for line in "".join(blocks).replace("\\\n", " ").splitlines():
        line = line.split(" # ")[0].strip()
        match = re.search(r"(?:^|\$\()sparc-video (.*?)\)?$", line)
        if match:
            commands.append(shlex.split(match[1]))
    assert len(commands) >= 8
    assert {tuple(argv[:2]) for argv in commands} >= {("camera", "create"), ("recording", "list")}
    for argv in commands:
        ctx = cli.parse_args(argv)
        if argv[:2] == ["export", "create"]:
            kinds = [name for name in ctx.meta["order"] if name in OPERATION_KINDS]
            assert kinds and parse_operations(given_operations(ctx, dict(ctx.params)))
