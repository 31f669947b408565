"""The recorder's live view: each recorded camera's packets, as they are read, into its hub.

The ingest thread hands every video packet to a `LiveTap` before the segmenter takes it (the
segmenter rewrites packets as it muxes them); the tap fragments it there, in the thread (PyAV
stays off the event loop), and publishes the init and each fragment to the camera's hub on the
loop. Viewers therefore never open a camera connection of their own. A failure of the tap (a
bug, a stream the muxer refuses) ends live view for the run, never the recording.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from av.packet import Packet
from av.stream import Stream

from sparc_video.live.fragmenter import Fragmenter
from sparc_video.live.fragments import Fragment, InitSegment
from sparc_video.live.hub import LiveHub

log = logging.getLogger(__name__)


class LiveTap:
    def __init__(self, hub: LiveHub, loop: asyncio.AbstractEventLoop) -> None:
        self._hub = hub
        self._loop = loop
        self._fragmenter: Fragmenter | None = None

    def begin(self, video: Stream) -> None:
        self._guard(lambda: self._start(video))

    def packet(self, packet: Packet[Any], capture_ns: int) -> None:
        fragmenter = self._fragmenter
        if fragmenter is not None:
            self._guard(lambda: fragmenter.feed(packet, capture_ns))

    def end(self) -> None:
        fragmenter, self._fragmenter = self._fragmenter, None
        if fragmenter is not None:
            self._guard(fragmenter.close)

    def _start(self, video: Stream) -> None:
        self._fragmenter = Fragmenter(video, self._on_init, self._on_fragment)

    def _guard(self, step: Any) -> None:
        try:
            step()
        except Exception:
            log.warning(
                "camera %s: live view stopped for this run", self._hub.camera_id, exc_info=True
            )
            self._fragmenter = None

    def _on_init(self, init: InitSegment) -> None:
        self._loop.call_soon_threadsafe(self._hub.publish_init, init)

    def _on_fragment(self, fragment: Fragment) -> None:
        self._loop.call_soon_threadsafe(self._hub.publish, fragment)
