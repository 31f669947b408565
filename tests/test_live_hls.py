"""Live view as LL-HLS: the packager's segments, parts and playlist from a hub fed synthetic
fragments, blocking reloads, then a real recorder's hub played by an HLS player (FFmpeg's, in
PyAV) over HTTP through GetCameraLiveStream's signed link, with its latency, and the refusals."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import statistics
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from sparc.video.v1 import camera_service_pb2 as svc

from benchmarks.live_hls import LowLatencyViewer, parts_of
from sparc_video.core.settings import Settings
from sparc_video.live import boxes, hls
from sparc_video.live.fragments import Fragment, InitSegment
from sparc_video.live.hls import HlsPackager, HlsRequestError, UriMaker
from sparc_video.live.hub import LiveHub
from sparc_video.simulator import NoStamp, TestCamera, read_stamp
from tests.live_helpers import consecutive, live_setup
from tests.test_live import live_settings

TIMESCALE = 90_000
FRAME_TICKS = 3_600  # 25 fps


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _init() -> InitSegment:
    mdhd = _box(b"mdhd", struct.pack(">IIIIII", 0, 0, 0, TIMESCALE, 0, 0))
    moov = _box(b"moov", _box(b"trak", _box(b"mdia", mdhd)))
    return InitSegment(_box(b"ftyp", b"isom") + moov, "avc1.42C01E")


def _fragment(index: int, keyframe: bool) -> Fragment:
    """One frame as the fragmenter writes it: tfhd with a default duration, a one-sample trun."""
    tfhd = _box(b"tfhd", struct.pack(">III", 0x08, 1, FRAME_TICKS))
    trun = _box(b"trun", struct.pack(">II", 0, 1))
    moof = _box(b"moof", _box(b"traf", tfhd + trun))
    return Fragment(moof + _box(b"mdat", index.to_bytes(4, "big")), keyframe, index * 40_000_000)


def _hub(frames: int, gop: int = 25, ring_size: int = 256) -> LiveHub:
    hub = LiveHub("cam", ring_size=ring_size)
    hub.publish_init(_init())
    for index in range(frames):
        hub.publish(_fragment(index, index % gop == 0))
    return hub


def _check_playlist(text: str) -> None:
    """RFC 8216bis rules a player relies on, for this packager's playlists."""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    tags = dict(
        line[1:].split(":", 1) for line in lines if line.startswith("#EXT-X-") and ":" in line
    )
    target = int(tags["EXT-X-TARGETDURATION"])
    part_target = float(tags["EXT-X-PART-INF"].split("=")[1])
    assert "CAN-BLOCK-RELOAD=YES" in tags["EXT-X-SERVER-CONTROL"]
    hold_back = float(tags["EXT-X-SERVER-CONTROL"].split("PART-HOLD-BACK=")[1])
    assert hold_back >= 2 * part_target
    assert tags["EXT-X-MAP"].startswith('URI="hls/init-')
    parts: list[float] = []
    for line in lines:
        if line.startswith("#EXT-X-PART:"):
            duration = float(line.split("DURATION=")[1].split(",")[0])
            assert duration <= part_target + 1e-9
            parts.append(duration)
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].rstrip(","))
            assert round(duration) <= target
            if parts:  # a segment listing its parts: they make it up, all but the last >= 85%
                assert abs(sum(parts) - duration) < 1e-3
                assert all(p >= 0.85 * part_target for p in parts[:-1]), parts
            parts = []
    assert lines[-1].startswith("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=")


def test_segments_start_at_keyframes_and_parts_make_them_up() -> None:
    hub = _hub(130)  # 5.2 s at 25 fps, a keyframe each second
    packager = HlsPackager(hub)
    packager.sync()
    complete = [s for s in packager.segments if s.complete]
    assert len(complete) == 5
    assert [s.msn for s in packager.segments] == [
        hub.first_sequence + n for n in range(len(packager.segments))
    ]
    for segment in complete:
        assert segment.duration_s == pytest.approx(1.0)
        assert segment.independent and hub.fragment(segment.first).fragment.keyframe  # type: ignore[union-attr]
        firsts = [p.first for p in segment.parts]
        assert firsts[0] == segment.first and all(
            b.first == a.last + 1 for a, b in itertools.pairwise(segment.parts)
        )
    text = packager.playlist(UriMaker("expires=1&sig=ab"))
    _check_playlist(text)
    assert f"#EXT-X-MEDIA-SEQUENCE:{hub.first_sequence}" in text
    assert "INDEPENDENT=YES" in text and "?expires=1&sig=ab" in text
    open_segment = packager.segments[-1]
    assert not open_segment.complete
    assert f"hls/{open_segment.msn}.{len(open_segment.parts)}.m4s" in text.splitlines()[-1]
    # A segment's bytes are its fragments as the hub holds them.
    first = complete[0]
    data = packager.data(first.first, first.last)
    assert data is not None and data.count(b"moof") == first.last - first.first + 1


def test_long_keyframe_intervals_are_cut_at_the_target_duration() -> None:
    packager = HlsPackager(_hub(260, gop=100))  # a keyframe every 4 s; the ring holds 256
    packager.sync()
    complete = [s for s in packager.segments if s.complete]
    assert all(s.duration_s == pytest.approx(hls.TARGET_DURATION_S) for s in complete)
    assert [s.independent for s in complete] == [True, False, True]
    _check_playlist(packager.playlist(UriMaker("")))


def test_the_window_follows_the_ring_and_numbers_stay_stable() -> None:
    hub = _hub(100, ring_size=64)
    packager = HlsPackager(hub)
    packager.sync()
    numbers = {s.first: s.msn for s in packager.segments}
    for index in range(100, 200):
        hub.publish(_fragment(index, index % 25 == 0))
        packager.sync()
    assert all(s.first >= hub.oldest_sequence for s in packager.segments)
    assert all(numbers.get(s.first, s.msn) == s.msn for s in packager.segments)
    _check_playlist(packager.playlist(UriMaker("")))
    # A new run of the camera: a discontinuity, the new init's epoch in the map.
    hub.publish_init(_init())
    for index in range(60):
        hub.publish(_fragment(index, index % 25 == 0))
    packager.sync()
    text = packager.playlist(UriMaker(""))
    assert "#EXT-X-DISCONTINUITY\n" in text and f"init-{hub.epoch}.mp4" in text
    assert packager.segments[0].msn > max(numbers.values())


def test_durations_come_from_trun_or_tfhd_and_bad_boxes_are_left_out() -> None:
    # trun with per-sample durations (flag 0x100) and a data offset (0x01): two frames.
    trun = _box(b"trun", struct.pack(">IIiII", 0x101, 2, 0, 3000, 4200))
    moof = _box(b"moof", _box(b"traf", trun))
    assert boxes.fragment_duration(moof, fallback=0) == 7200
    assert boxes.fragment_duration(_fragment(0, True).data, fallback=0) == FRAME_TICKS
    with pytest.raises(boxes.BadBoxes):
        boxes.fragment_duration(b"\x00\x00\x00\x40moof", fallback=0)
    hub = _hub(10)
    hub.publish(Fragment(b"\x00\x00\x00\x40moof", False, 0))
    for index in range(11, 40):
        hub.publish(_fragment(index, index % 25 == 0))
    packager = HlsPackager(hub)
    packager.sync()
    skipped = hub.first_sequence + 10
    assert all(not p.first <= skipped <= p.last for s in packager.segments for p in s.parts)


async def test_a_blocking_reload_returns_when_the_part_appears() -> None:
    hub = _hub(30)
    packager = HlsPackager(hub)
    packager.sync()
    newest = packager.segments[-1]
    msn, part = newest.msn, len(newest.parts)
    waiter = asyncio.create_task(packager.wait_for(msn, part, timeout_s=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    index = 30
    while not waiter.done():
        hub.publish(_fragment(index, index % 25 == 0))
        index += 1
        await asyncio.sleep(0.01)
        assert index < 60, "the part never satisfied the waiter"
    assert await waiter
    assert packager.satisfied(*packager.normalize(msn, part))
    # Nothing new: the deadline answers False; too far ahead is refused at once.
    assert not await packager.wait_for(msn + 2, None, timeout_s=0.05)
    with pytest.raises(HlsRequestError):
        await packager.wait_for(msn + 10, None, timeout_s=5)


def play_hls(url: str, count: int) -> list[tuple[int, float]]:
    """An HLS player: FFmpeg's HLS demuxer (no parts) from the live edge; (frame index, latency
    in s: wall clock at decode minus the capture time the camera burned in) per picture."""
    found: list[tuple[int, float]] = []
    options = {"live_start_index": "-1"}
    with av.open(url, "r", options=options, timeout=30) as container:
        for frame in container.decode(video=0):
            now = time.time()
            try:
                stamp = read_stamp(frame)
            except NoStamp:
                continue
            found.append((stamp.index, now - stamp.capture_time_us / 1e6))
            if len(found) >= count:
                break
    return found


class StampReader:
    """Decodes the LL-HLS viewer's parts off the event loop (the service shares it here), one
    decoder across parts (a part alone may lack its keyframe): (frame index, latency s)."""

    def __init__(self) -> None:
        self._init = b""
        self._decoder: Any = None
        self.played: list[tuple[int, float]] = []

    async def init(self, data: bytes) -> None:
        self._init = data

    async def part(self, data: bytes) -> None:
        self.played += await asyncio.to_thread(self._decode, data)

    def _decode(self, part: bytes) -> list[tuple[int, float]]:
        found = []
        with av.open(io.BytesIO(self._init + part), "r", format="mp4") as container:
            stream = container.streams.video[0]
            if self._decoder is None:
                self._decoder = av.CodecContext.create(stream.codec_context.name, "r")
                self._decoder.extradata = stream.codec_context.extradata
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                for frame in self._decoder.decode(packet):
                    now = time.time()
                    with contextlib.suppress(NoStamp):
                        stamp = read_stamp(frame)
                        found.append((stamp.index, now - stamp.capture_time_us / 1e6))
        return found


def _percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    at = [ordered[int(q * (len(ordered) - 1))] for q in (0.5, 0.95, 0.99)]
    return "p50 {:.2f} s p95 {:.2f} s p99 {:.2f} s ({} frames)".format(*at, len(ordered))


async def test_an_hls_player_plays_the_live_stream_through_its_signed_link(
    service_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with TestCamera(size=(160, 96)) as camera:
        async with live_setup(live_settings(service_settings, tmp_path), camera) as live:
            stream = await live.stub.GetCameraLiveStream(
                svc.GetCameraLiveStreamRequest(name="cameras/cam/liveStream")
            )
            base = live.service.http_url + "/cameras/cam/live.m3u8"
            assert stream.hls_url.startswith(base + "?")
            played = await asyncio.to_thread(play_hls, stream.hls_url, 150)
            indices = [index for index, _ in played]
            assert all(b > a for a, b in itertools.pairwise(indices)), indices
            # The first segment is read at open, behind the live edge: latency after it.
            print("HLS, FFmpeg's player (segments):", _percentiles([x for _, x in played[50:]]))

            reader = StampReader()
            async with aiohttp.ClientSession() as http:
                viewer = LowLatencyViewer(http, stream.hls_url, reader.init, reader.part)
                await viewer.play(lambda: len(reader.played) >= 250)
            indices = [index for index, _ in reader.played]
            assert consecutive(indices), indices
            latencies = [latency for _, latency in reader.played[25:]]
            print(f"LL-HLS, parts, {viewer.reloads} blocking reloads:", _percentiles(latencies))
            # Live, not replaying a backlog (the target, p50 <= 3 s, is reported).
            assert statistics.median(latencies) < 10
            assert camera.playing == 1

            signer = live.service.server.live.signer
            expired = signer.links("cam", ttl_s=-1).hls_url
            other = stream.hls_url.replace("/cameras/cam/", "/cameras/other/")
            async with aiohttp.ClientSession() as http:
                for url in (base, expired, other, stream.hls_url.replace("sig=", "sig=0")):
                    async with http.get(url) as response:
                        assert response.status == 403, url
                async with http.get(stream.hls_url) as response:
                    assert response.status == 200
                    assert response.headers["Access-Control-Allow-Origin"] == "*"
                    text = await response.text()
                _check_playlist(text)
                segment = next(line for line in text.splitlines() if line.startswith("hls/"))
                segment_url = base.rsplit("/", 1)[0] + "/" + segment
                async with http.get(segment_url) as response:
                    assert response.status == 200
                    assert (await response.read())[4:8] == b"moof"
                async with http.get(segment_url.split("?")[0]) as response:
                    assert response.status == 403  # segments want the link too
                newest = max(number for (number, _), _, _ in parts_of(text))
                async with http.get(f"{stream.hls_url}&_HLS_msn={newest + 10}") as response:
                    assert response.status == 400  # too far ahead to wait for
