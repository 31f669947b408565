"""The README's service command for real: `sparc-video dev` as a process, driven like a user would.

It starts its own redis-server and PostgreSQL when REDIS_URL and DATABASE_URL do not answer, takes
a sample clip from `sparc-video sample`, runs an export over gRPC and serves the result over HTTP,
then starts again on the same data.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from sparc.video.v1 import export_pb2, export_service_pb2, export_service_pb2_grpc

from sparc_video.core.settings import Settings
from sparc_video.database.migrations import head_revision
from sparc_video.evidence import signing
from tests.fixtures.redis import free_port
from workers.commands import loopback_unless_configured

ROOT = Path(__file__).resolve().parent.parent


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # The kernel writes each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, width // 2, 4))
            ip = ipaddress.ip_address(words)
            # gRPC listens for 127.0.0.1 on an IPv6 socket, as ::ffff:127.0.0.1.
            mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
            found.add(str(mapped or ip))
    return found


def test_dev_listens_on_loopback_unless_told_otherwise() -> None:
    settings = Settings()
    assert settings.grpc_host != "127.0.0.1"  # serve's default: every interface
    dev = loopback_unless_configured(settings, {})
    assert (dev.grpc_host, dev.http_host) == ("127.0.0.1", "127.0.0.1")
    container = loopback_unless_configured(settings, {"GRPC_HOST": "x", "HTTP_HOST": "y"})
    assert (container.grpc_host, container.http_host) == (settings.grpc_host, settings.http_host)


def wait_for_line(path: Path, text: str, timeout_s: float) -> str:
    """The first line of the file at `path` that contains `text`, once it is written."""
    deadline = time.monotonic() + timeout_s
    while True:
        for line in path.read_text().splitlines():
            if text in line:
                return line
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.1)


@pytest.mark.timeout(300)
def test_dev_runs_an_export_on_embedded_defaults(world_traversable_dir: Path) -> None:
    # Not pytest's tmp_path: as root, the embedded PostgreSQL runs as its own user, which must
    # enter the directories above ./var (pgserver would open pytest's private ones to everyone).
    tmp_path = world_traversable_dir
    tmp_path.chmod(0o755)
    grpc_port, http_port, dead_port, dead_pg_port = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    )
    env = {
        **os.environ,
        "GRPC_PORT": str(grpc_port),
        "HTTP_PORT": str(http_port),
        # Nothing listens here: dev must start its own Redis and PostgreSQL.
        "REDIS_URL": f"redis://127.0.0.1:{dead_port}/0",
        "DATABASE_URL": f"postgresql://sparc:hunter2@127.0.0.1:{dead_pg_port}/sparc_video",
        "VIDEO_TEMP_DIR": str(tmp_path / "work"),
    }
    cli = [sys.executable, "-m", "sparc_video.cli"]
    sample = subprocess.run(
        [*cli, "sample", "samples/clip.mp4", "--duration", "2", "--size", "320x180"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sample.returncode == 0, sample.stderr
    assert (tmp_path / "var" / "storage" / "samples" / "clip.mp4").exists()

    log = (tmp_path / "dev.log").open("w")
    dev = subprocess.Popen([*cli, "dev"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = export_service_pb2_grpc.ExportServiceStub(channel)
        created = stub.CreateExport(
            export_service_pb2.CreateExportRequest(
                export=export_pb2.Export(
                    source=export_pb2.ExportSource(object_key="samples/clip.mp4"),
                    operations=[
                        export_pb2.Operation(
                            transcode=export_pb2.TranscodeOptions(
                                resolution="160x90", preset="ultrafast"
                            )
                        )
                    ],
                )
            ),
            timeout=30,
        )
        states = [
            m.export.state
            for m in stub.WatchExport(
                export_service_pb2.WatchExportRequest(name=created.name), timeout=120
            )
        ]
        assert states[-1] == export_pb2.Export.STATE_SUCCEEDED
        urls = stub.GetExportDownloadUrl(
            export_service_pb2.GetExportDownloadUrlRequest(name=created.name), timeout=30
        )
        with urllib.request.urlopen(urls.urls[0].url, timeout=30) as response:
            body = response.read()
        assert body[4:8] == b"ftyp"
        # Authentication is off, so dev listens on this machine only.
        assert listening_addresses(grpc_port) == {"127.0.0.1"}
        assert listening_addresses(http_port) == {"127.0.0.1"}
        # The manifest signing key dev made and keeps in its data directory is the one the
        # server publishes and the worker signed with.
        key_file = tmp_path / "var" / "storage" / signing.KEY_FILE
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        kept = signing.parse_private_key(key_file.read_bytes())
        published = stub.GetManifestSigningKey(
            export_service_pb2.GetManifestSigningKeyRequest(), timeout=30
        )
        assert published.key_id == signing.key_id(kept.public_key())
        finished = stub.GetExport(export_service_pb2.GetExportRequest(name=created.name))
        assert finished.manifest.key_id == published.key_id
        channel.close()
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(30)
        log.close()
    dev_log = (tmp_path / "dev.log").read_text()
    assert code == 0, dev_log
    assert f"gRPC on 127.0.0.1:{grpc_port}, HTTP on 127.0.0.1:{http_port}" in dev_log
    # No credentials were needed, and dev said why.
    assert "Authentication is disabled: every caller is an admin" in dev_log
    assert "AUTH_DISABLED=true: no authentication" in dev_log
    # It says which PostgreSQL it uses: the one it started under ./var, migrated from empty; the
    # password of the DATABASE_URL that did not answer is never shown.
    banner = next(line for line in dev_log.splitlines() if "sparc-video dev:" in line)
    pg_data = tmp_path / "var" / "postgres"
    assert f"PostgreSQL postgresql://postgres:@/sparc_video?host={pg_data}" in banner, banner
    assert f"(embedded in var/postgres, schema {head_revision()}, upgraded from empty)" in banner
    assert "hunter2" not in dev_log and "running as root" not in dev_log
    # ...and stopped it on the way out.
    assert not (pg_data / "postmaster.pid").exists()

    # A second start reuses its data: the schema is already there.
    log = (tmp_path / "dev2.log").open("w")
    dev = subprocess.Popen([*cli, "dev"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        banner = wait_for_line(tmp_path / "dev2.log", "sparc-video dev:", 120)
        # Serving (its Ctrl-C handler installed) before it is interrupted.
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
        assert f"schema {head_revision()}, already there" in banner, banner
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(30)
        log.close()
    assert code == 0, (tmp_path / "dev2.log").read_text()
    assert not (pg_data / "postmaster.pid").exists()

    # The embedded Redis it started is gone with it.
    deadline = time.monotonic() + 5
    while True:
        ps = subprocess.run(["pgrep", "-f", f"--port {dead_port}"], capture_output=True)
        if ps.returncode != 0:
            break
        assert time.monotonic() < deadline, "embedded redis-server still running"
        time.sleep(0.1)
