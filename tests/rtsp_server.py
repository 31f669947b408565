"""The RTSP camera of the older tests, now the product's test camera (`sparc_video.simulator`):
160x96 H.264 over interleaved RTP, recording the requests it gets so tests can see which URL and
transport a client asked for."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sparc_video.simulator import TestCamera


class RtspCamera:
    def __init__(self, camera: TestCamera) -> None:
        self.camera = camera

    @property
    def port(self) -> int:
        return self.camera.port

    @property
    def requests(self) -> list[str]:
        return self.camera.requests

    def url(self, host: str = "127.0.0.1") -> str:
        return self.camera.url_at(host)


@contextlib.contextmanager
def rtsp_camera() -> Iterator[RtspCamera]:
    with TestCamera(size=(160, 96)) as camera:
        yield RtspCamera(camera)
