"""The camera address policy: which hosts a stream URL may point at, checked at CreateCamera and
UpdateCamera and again in the media child right before it connects, redirects included."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sparc.video.v1 import camera_pb2
from sparc.video.v1 import camera_service_pb2 as svc

from sparc_video.core.settings import Settings
from sparc_video.media.probe import MediaProber
from sparc_video.security.address_policy import AddressPolicy, AddressRefused
from tests.camera_helpers import (
    LOOPBACK_CAMERAS,
    camera_service,
    expect_error,
    in_thread,
    live_stream,
    make_ts_clip,
    reason_of,
    status_of,
    violations_of,
)
from tests.hostile_media import ConnectionCanary
from tests.rtsp_server import rtsp_camera

Camera = camera_pb2.Camera


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.1.1", "link-local"),
    ],
)
def test_refused_addresses(address: str, kind: str) -> None:
    problem = AddressPolicy().refusal(ipaddress.ip_address(address), 554)
    assert problem is not None and f"a {kind} address" in problem
    assert "CAMERA_ALLOWED_NETWORKS" in problem


def test_allowed_addresses_and_networks() -> None:
    strict = AddressPolicy()
    for address in ("10.1.2.3", "192.168.1.64", "172.16.0.9", "203.0.113.7", "fd00::5"):
        assert strict.refusal(ipaddress.ip_address(address), 554) is None, address
    lab = AddressPolicy(allowed_networks=("127.0.0.0/8", "169.254.10.0/24"))
    assert lab.refusal(ipaddress.ip_address("127.0.0.1"), 554) is None
    assert lab.refusal(ipaddress.ip_address("169.254.10.20"), 554) is None
    # The metadata endpoint is outside the allowed /24.
    assert lab.refusal(ipaddress.ip_address("169.254.169.254"), 80) is not None
    # Names are resolved: "localhost" is loopback.
    with pytest.raises(AddressRefused, match=r"localhost \((127\.0\.0\.1|::1)\) is a loopback"):
        strict.check_url("rtsp://localhost:554/stream")


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "169.254.170.2",
        "100.100.100.200",
    ],
)
def test_cloud_metadata_endpoints_are_refused_whatever_network_is_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    everything = AddressPolicy(allowed_networks=("0.0.0.0/0", "::/0", "fd00::/8", "169.254.0.0/16"))
    problem = everything.refusal(ip, 80)
    assert problem is not None and "metadata" in problem and "CAMERA_ALLOWED_NETWORKS" in problem
    with pytest.raises(AddressRefused, match="metadata"):
        everything.check_url(f"http://{'[' + address + ']' if ':' in address else address}/latest/")
    # Named on its own, an operator means it.
    named = ipaddress.ip_address(address)
    if isinstance(named, ipaddress.IPv6Address) and named.ipv4_mapped is not None:
        named = named.ipv4_mapped
    assert AddressPolicy(allowed_networks=(str(named),)).refusal(ip, 80) is None


def test_own_endpoints_are_refused_even_when_their_network_is_allowed() -> None:
    settings = Settings(
        redis_url="redis://127.0.0.1:6390/0",
        s3_endpoint_url="http://127.0.0.1:9000",
        camera_allowed_networks=("127.0.0.0/8",),
    )
    policy = AddressPolicy.from_settings(settings)
    with pytest.raises(AddressRefused, match="the service's Redis"):
        policy.check_url("rtsp://127.0.0.1:6390/")
    with pytest.raises(AddressRefused, match="the service's S3 endpoint"):
        policy.check_url("http://localhost:9000/bucket/x.ts")
    assert policy.check_url("rtsp://127.0.0.1:8554/") == ["127.0.0.1"]


async def test_create_and_update_refuse_addresses_naming_the_policy(
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings()
    async with camera_service(settings) as cams:
        for url in (
            "rtsp://127.0.0.1:8554/live",
            "http://169.254.169.254/latest/meta-data/",
            "rtsp://[::1]/s",
            "rtsp://0.0.0.0/s",
            "rtsp://localhost/s",
            "rtsp://224.1.1.1/s",
            "http://[fd00:ec2::254]/latest/meta-data/",
        ):
            error = await expect_error(
                cams.stub.CreateCamera(svc.CreateCameraRequest(camera=Camera(stream_url=url))),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            description = violations_of(error)["camera.stream_url"]
            assert "CAMERA_ALLOWED_NETWORKS" in description, (url, description)
            assert reason_of(status_of(error)) == "ADDRESS_REFUSED"
        # A name that does not resolve now is accepted; it is checked again before opening.
        camera = await cams.stub.CreateCamera(
            svc.CreateCameraRequest(camera=Camera(stream_url="rtsp://gate.invalid/s"))
        )
        redis_port = int(settings.redis_url.rsplit(":", 1)[1].split("/")[0])
        for url in ("rtsp://127.0.0.1/s", f"rtsp://127.0.0.1:{redis_port}/"):
            error = await expect_error(
                cams.stub.UpdateCamera(
                    svc.UpdateCameraRequest(
                        camera=Camera(name=camera.name, stream_url=url),
                        update_mask=field_mask_pb2.FieldMask(paths=["stream_url"]),
                    )
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            assert "camera.stream_url" in violations_of(error)
        assert (await cams.stub.GetCamera(svc.GetCameraRequest(name=camera.name))).stream_url == (
            "rtsp://gate.invalid/s"
        )


async def test_probe_and_snapshot_check_the_policy_again_before_connecting(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A camera registered while its network was allowed, opened by a server that no longer
    allows it: refused before any connection, FAILED_PRECONDITION naming the policy."""
    clip = await in_thread(make_ts_clip, tmp_path / "live.ts")
    allowed = service_settings(**LOOPBACK_CAMERAS)
    async with live_stream(clip, "u", "p") as live:
        async with camera_service(allowed) as cams:
            camera = await cams.stub.CreateCamera(
                svc.CreateCameraRequest(
                    camera=Camera(
                        stream_url=live.url("/private.ts"),
                        credentials=camera_pb2.CameraCredentials(username="u", password="p"),
                    )
                )
            )
            probe = await cams.stub.ProbeCamera(svc.ProbeCameraRequest(name=camera.name))
            assert probe.reachable
        requests = len(live.authorizations)
        assert requests >= 1
        strict = allowed.replace(camera_allowed_networks=())
        async with camera_service(strict) as cams:
            for call in (
                cams.stub.ProbeCamera(svc.ProbeCameraRequest(name=camera.name)),
                cams.stub.CaptureSnapshot(svc.CaptureSnapshotRequest(name=camera.name)),
            ):
                error = await expect_error(call, grpc.StatusCode.FAILED_PRECONDITION)
                assert "CAMERA_ALLOWED_NETWORKS" in (error.details() or "")
                assert reason_of(status_of(error)) == "ADDRESS_REFUSED"
            stored = await cams.stub.GetCamera(svc.GetCameraRequest(name=camera.name))
            assert stored.last_error.message
        # The camera was not asked again.
        assert len(live.authorizations) == requests


@pytest.fixture
def canary() -> Iterator[ConnectionCanary]:
    listener = ConnectionCanary("127.0.0.2")
    yield listener
    listener.close()


@pytest.fixture
def redirector(canary: ConnectionCanary) -> Iterator[tuple[str, list[str]]]:
    """An HTTP "camera" on 127.0.0.1 that redirects every request to the canary."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(f"{self.path} Host={self.headers.get('Host')}")
            self.send_response(302)
            self.send_header("Location", f"http://{canary.host}:{canary.port}/stream.ts")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_port}/cam.ts", requests
    server.shutdown()
    server.server_close()


async def test_redirects_are_not_followed(
    canary: ConnectionCanary, redirector: tuple[str, list[str]]
) -> None:
    url, requests = redirector
    # Only the camera's own address is allowed, not the canary's (127.0.0.2).
    read = await MediaProber().read_stream(
        url, 5.0, policy=AddressPolicy(allowed_networks=("127.0.0.1/32", "::1/128"))
    )
    assert not read.ok
    assert "redirects are not followed" in read.message
    # The camera was asked once, under its own name although the child connected to the
    # address it checked, and the redirect target never saw a connection.
    assert len(requests) == 1 and requests[0].startswith("/cam.ts Host=localhost:")
    assert canary.connections == 0
    # Allowing the target changes nothing: no redirect is followed.
    read = await MediaProber().read_stream(
        url, 5.0, policy=AddressPolicy(allowed_networks=("127.0.0.0/8", "::1/128"))
    )
    assert not read.ok and canary.connections == 0
    # Opened directly, the canary's address is refused before any connection.
    direct = f"http://{canary.host}:{canary.port}/stream.ts"
    read = await MediaProber().read_stream(
        direct, 5.0, policy=AddressPolicy(allowed_networks=("127.0.0.1/32",))
    )
    assert (read.ok, read.reason) == (False, "ADDRESS_REFUSED")
    assert canary.connections == 0


@pytest.fixture
def rtsp_redirector(canary: ConnectionCanary) -> Iterator[str]:
    """An RTSP "camera" on 127.0.0.1 answering every request with a redirect to the canary."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                request = conn.recv(4096).decode(errors="replace")
                cseq = next(
                    (
                        line.split(":", 1)[1].strip()
                        for line in request.splitlines()
                        if line.lower().startswith("cseq:")
                    ),
                    "1",
                )
                location = f"rtsp://{canary.host}:{canary.port}/stream"
                conn.sendall(
                    f"RTSP/1.0 302 Moved\r\nCSeq: {cseq}\r\nLocation: {location}\r\n\r\n".encode()
                )
                stop.wait(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"rtsp://127.0.0.1:{server.getsockname()[1]}/cam"
    stop.set()
    thread.join()
    server.close()


async def test_rtsp_redirects_are_not_followed(
    canary: ConnectionCanary, rtsp_redirector: str
) -> None:
    """FFmpeg's RTSP client follows redirects on its own; the child stops before it connects."""
    read = await MediaProber().read_stream(
        rtsp_redirector, 5.0, policy=AddressPolicy(allowed_networks=("127.0.0.1/32",))
    )
    assert (read.ok, read.reason) == (False, "REDIRECT_REFUSED")
    assert "register the camera with the final URL" in read.message
    await asyncio.sleep(0.2)
    assert canary.connections == 0


async def test_rtsp_camera_is_read_over_tcp_at_the_checked_address(
    service_settings: Callable[..., Settings],
) -> None:
    settings = service_settings(camera_allowed_networks=("127.0.0.0/8", "::1/128"))
    with rtsp_camera() as rtsp:
        async with camera_service(settings) as cams:
            camera = await cams.stub.CreateCamera(
                svc.CreateCameraRequest(
                    camera=Camera(
                        stream_url=rtsp.url("localhost"),
                        credentials=camera_pb2.CameraCredentials(username="u", password="pw"),
                    )
                )
            )
            probe = await cams.stub.ProbeCamera(svc.ProbeCameraRequest(name=camera.name))
            assert probe.reachable, probe.error.message
            assert (probe.stream_info.width, probe.stream_info.height) == (160, 96)
            snapshot = await cams.stub.CaptureSnapshot(svc.CaptureSnapshotRequest(name=camera.name))
            assert snapshot.size_bytes > 0
    # The name was resolved and checked once; FFmpeg was handed that address, not the name.
    described = [r for r in rtsp.requests if r.startswith("DESCRIBE ")]
    assert described and all(r.startswith("DESCRIBE rtsp://127.0.0.1:") for r in described)
    # Interleaved over the RTSP connection, never UDP.
    transports = [r for r in rtsp.requests if r.startswith("Transport: ")]
    assert transports and all("RTP/AVP/TCP" in t and "UDP" not in t for t in transports)
