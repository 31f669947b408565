"""Live view's parts without a server: the fragmenter turning a test camera's packets into
decodable fMP4, the hub's ring, sequences, slow and late viewers, and the signed links."""

from __future__ import annotations

import asyncio
import contextlib
import time

import av
import pytest

from sparc_video.live.fragmenter import Fragmenter
from sparc_video.live.fragments import Fragment, InitSegment
from sparc_video.live.hub import LiveEnded, LiveHub, LiveHubs, NotRecordingHere
from sparc_video.live.links import LinkSessions, LiveLinkSigner
from sparc_video.simulator import TestCamera
from tests.live_helpers import consecutive, frame_indices

OPEN_TIMEOUT_S = 30


def fragment_camera(count: int) -> tuple[list[InitSegment], list[Fragment]]:
    inits: list[InitSegment] = []
    fragments: list[Fragment] = []
    with (
        TestCamera(size=(160, 96)) as camera,
        av.open(camera.url, options={"rtsp_transport": "tcp"}, timeout=OPEN_TIMEOUT_S) as source,
    ):
        video = source.streams.video[0]
        fragmenter = Fragmenter(video, inits.append, fragments.append)
        for packet in source.demux(video):
            fragmenter.feed(packet, time.time_ns())
            if len(fragments) >= count:
                break
        fragmenter.close()
    return inits, fragments


def test_fragmenter_makes_one_init_and_a_decodable_fragment_per_frame() -> None:
    inits, fragments = fragment_camera(60)
    assert len(inits) == 1
    assert inits[0].codecs.startswith("avc1.")
    assert fragments[0].keyframe
    assert all(f.data[4:8] == b"moof" for f in fragments)
    indices = frame_indices(inits[0].data + b"".join(f.data for f in fragments))
    assert len(indices) == len(fragments)
    assert consecutive(indices), indices
    # Starting at a later keyframe decodes too (what a late viewer gets).
    later = next(i for i, f in enumerate(fragments) if f.keyframe and i > 0)
    rest = frame_indices(inits[0].data + b"".join(f.data for f in fragments[later:]))
    assert consecutive(rest) and rest[0] == indices[later]


def frames(count: int, gop: int = 10) -> list[Fragment]:
    return [Fragment(f"frame {i}".encode(), i % gop == 0, i) for i in range(count)]


INIT = InitSegment(b"init", "avc1.42C01E")


async def collect(hub: LiveHub, count: int, after: int = 0) -> list[object]:
    got: list[object] = []
    async with contextlib.aclosing(hub.watch(after)) as viewer:
        async for item in viewer:
            got.append(item)
            if len(got) == count:
                break
    return got


async def test_a_viewer_gets_the_init_then_starts_at_the_newest_keyframe() -> None:
    hub = LiveHub("cam")
    hub.publish_init(INIT)
    for fragment in frames(25):
        hub.publish(fragment)
    got = await collect(hub, 6)
    assert got[0] is INIT
    first = got[1]
    assert first.fragment.keyframe and first.fragment.capture_ns == 20  # type: ignore[attr-defined]
    sequences = [item.sequence for item in got[1:]]  # type: ignore[attr-defined]
    assert sequences == list(range(sequences[0], sequences[0] + 5))
    assert sequences[0] >= hub.first_sequence and hub.viewers == 0


async def test_resuming_after_a_sequence_continues_right_after_it() -> None:
    hub = LiveHub("cam")
    hub.publish_init(INIT)
    for fragment in frames(30):
        hub.publish(fragment)
    after = hub.first_sequence + 12
    got = await collect(hub, 3, after)
    assert [item.sequence for item in got[1:]] == [after + 1, after + 2]  # type: ignore[attr-defined]
    # A sequence from an older hub (or long gone): the newest keyframe instead.
    got = await collect(hub, 2, hub.first_sequence - 1000)
    assert got[1].fragment.keyframe  # type: ignore[attr-defined]


async def test_a_slow_viewer_skips_to_the_newest_keyframe_and_memory_stays_the_ring() -> None:
    hub = LiveHub("cam", ring_size=64, max_lag=20)
    hub.publish_init(INIT)
    hub.publish(frames(1)[0])
    viewer = hub.watch()
    assert await anext(viewer) is INIT
    assert (await anext(viewer)).sequence == hub.first_sequence  # type: ignore[union-attr]
    for fragment in frames(200)[1:]:  # the viewer reads nothing meanwhile
        hub.publish(fragment)
    item = await anext(viewer)
    assert item.fragment.keyframe  # type: ignore[union-attr]
    assert hub.newest_sequence - item.sequence < 20  # type: ignore[union-attr]
    await viewer.aclose()
    assert hub.viewers == 0


async def test_viewers_wait_for_new_fragments_and_end_when_the_hub_closes() -> None:
    hubs = LiveHubs()
    hub = hubs.open("cam")
    hub.publish_init(INIT)
    readers = [asyncio.create_task(collect(hub, 100)) for _ in range(5)]
    for fragment in frames(12):
        hub.publish(fragment)
        await asyncio.sleep(0)
    hubs.close("cam", hub)
    for reader in readers:
        with pytest.raises(LiveEnded):
            await reader
    with pytest.raises(NotRecordingHere):
        hubs.get("cam")


async def test_a_new_run_sends_the_new_init_and_starts_at_its_first_keyframe() -> None:
    hub = LiveHub("cam")
    hub.publish_init(INIT)
    for fragment in frames(3):
        hub.publish(fragment)
    viewer = hub.watch()
    assert await anext(viewer) is INIT
    new_init = InitSegment(b"init 2", "avc1.640028")
    hub.publish_init(new_init)
    hub.publish(Fragment(b"new", True, 99))
    assert await anext(viewer) is new_init
    assert (await anext(viewer)).fragment.data == b"new"  # type: ignore[union-attr]
    await viewer.aclose()


def test_live_links_are_signed_and_expire() -> None:
    signer = LiveLinkSigner("http://127.0.0.1:8080")
    links = signer.links("yard", ttl_s=60)
    assert links.page_url.startswith("http://127.0.0.1:8080/cameras/yard/live?")
    assert links.websocket_url.startswith("ws://127.0.0.1:8080/cameras/yard/live/ws?")
    query = dict(part.split("=") for part in links.page_url.split("?")[1].split("&"))
    assert signer.problem("yard", query["expires"], query["sig"]) is None
    assert "signature" in (signer.problem("gate", query["expires"], query["sig"]) or "")
    assert "signature" in (signer.problem("yard", query["expires"], "0" * 64) or "")
    expired = signer.links("yard", ttl_s=-1)
    q2 = dict(part.split("=") for part in expired.page_url.split("?")[1].split("&"))
    assert "expired" in (signer.problem("yard", q2["expires"], q2["sig"]) or "")
    other = LiveLinkSigner("http://127.0.0.1:8080")
    assert other.problem("yard", query["expires"], query["sig"]) is not None


def test_a_link_in_use_outlives_its_expiry_while_its_requests_go_on() -> None:
    """An HLS player keeps requesting the URL it was given: admitted while valid, the link stays
    good while used at most `idle_s` apart, for its camera only; an unused one expires."""
    signer = LiveLinkSigner("http://127.0.0.1:8080")
    links = signer.links("yard", ttl_s=60)
    query = dict(part.split("=") for part in links.hls_url.split("?")[1].split("&"))
    expires, sig = query["expires"], query["sig"]
    sessions = LinkSessions(idle_s=30)
    end = float(expires)
    assert sessions.admit(signer, "yard", expires, sig, now=end - 50) is None
    # Used every 20 s past its expiry: still good.
    for at in (end - 20, end, end + 20, end + 40, end + 60):
        assert sessions.admit(signer, "yard", expires, sig, now=at) is None, at
    assert sessions.admit(signer, "gate", expires, sig, now=end + 70) is not None
    # Idle for longer than 30 s once expired: refused, as is a link never used before expiry.
    assert "expired" in (sessions.admit(signer, "yard", expires, sig, now=end + 100) or "")
    fresh = LinkSessions(idle_s=30)
    assert "expired" in (fresh.admit(signer, "yard", expires, sig, now=end + 1) or "")
    forged = "0" * 64
    assert sessions.admit(signer, "yard", expires, forged, now=end - 10) is not None
