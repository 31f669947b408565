"""The test camera (sparc_video.simulator) seen from a real RTSP client, PyAV over TCP: live
stamped frames, the camera's clock in RTCP, faults, several viewers, authentication, audio."""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.container import InputContainer
from av.video.codeccontext import VideoCodecContext

from sparc_video.recording.ingest.clock import sender_time_us
from sparc_video.simulator import (
    Auth,
    CameraClock,
    FrameStamp,
    NoStamp,
    TestCamera,
    read_stamp,
    rtp,
)
from sparc_video.simulator.stamp import draw_stamp

FRAME_US = 40_000  # at the default 25 fps
OPEN_TIMEOUT_S = 30  # a loaded machine is slow to start FFmpeg and the encoder


def open_stream(url: str) -> InputContainer:
    return av.open(url, options={"rtsp_transport": "tcp"}, timeout=OPEN_TIMEOUT_S)


def frames(container: InputContainer) -> Iterator[tuple[FrameStamp, av.VideoFrame]]:
    for frame in container.decode(video=0):
        yield read_stamp(frame), frame


def stamps(url: str, count: int) -> list[FrameStamp]:
    with open_stream(url) as container:
        return [stamp for stamp, _ in _take(frames(container), count)]


def _take(
    items: Iterator[tuple[FrameStamp, av.VideoFrame]], count: int
) -> list[tuple[FrameStamp, av.VideoFrame]]:
    return [item for _, item in zip(range(count), items, strict=False)]


def wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def consecutive(seen: list[FrameStamp]) -> bool:
    return all(
        b.index == a.index + 1 and b.capture_time_us - a.capture_time_us == FRAME_US
        for a, b in itertools.pairwise(seen)
    )


@pytest.mark.parametrize("size", [(320, 180), (1920, 1080)])
def test_stamps_survive_h264_and_scaling(size: tuple[int, int]) -> None:
    width, height = size
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    decoder = av.CodecContext.create("h264", "r")
    sent = [FrameStamp(i * 7919, 1_767_225_600_000_000 + i * 40_001) for i in range(8)]
    sent.append(FrameStamp(2**32 - 1, 4_102_444_799_999_999))  # the last µs of 2099
    got = []
    for number, stamp in enumerate(sent):
        luma = np.full((height, width), 128, np.uint8)
        draw_stamp(luma, stamp)
        planes = np.concatenate([luma, np.full((height // 2, width), 128, np.uint8)])
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = number
        for packet in encoder.encode(frame):
            got += decoder.decode(packet)
    for packet in encoder.encode(None):
        got += decoder.decode(packet)
    assert [read_stamp(f) for f in got] == sent
    assert [read_stamp(f.reformat(width=160, height=90)) for f in got] == sent
    with pytest.raises(NoStamp):
        read_stamp(av.VideoFrame.from_ndarray(np.full((180, 320, 3), 99, np.uint8), "rgb24"))


def test_a_live_stream_of_consecutive_stamps_in_camera_time() -> None:
    """A camera set to New Year whose clock runs 5 % slow: consecutive frames, each sent once
    the camera's clock reads its capture time, and the RTCP wall clock is the camera's."""
    clock = CameraClock.at(datetime(2026, 1, 1, tzinfo=UTC), ppm=-50_000)
    with TestCamera(clock=clock) as cam:
        before_us = clock.camera_us()
        with open_stream(cam.url) as container:
            seen: list[tuple[FrameStamp, int | None, int]] = []
            for stamp, frame in frames(container):
                seen.append((stamp, frame.pts, clock.camera_us()))
                if len(seen) == 75:
                    break
            realtime = container.start_time_realtime
    got = [stamp for stamp, _, _ in seen]
    assert consecutive(got)
    assert before_us <= got[0].capture_time_us
    assert all(stamp.capture_time_us <= received_us for stamp, _, received_us in seen)
    assert realtime is not None
    for stamp, pts, _ in seen:
        if pts is not None:
            assert abs(realtime + pts * 1_000_000 // 90_000 - stamp.capture_time_us) <= FRAME_US


def test_without_rtcp_there_is_no_wall_clock() -> None:
    with TestCamera(rtcp=False) as cam, open_stream(cam.url) as container:
        assert len(_take(frames(container), 30)) == 30
        assert container.start_time_realtime is None


def test_camera_clock_offset_and_rate() -> None:
    clock = CameraClock(offset_s=-10.0, ppm=1000.0, anchor_real_us=1_000_000_000)
    assert clock.camera_us(1_000_000_000) == 990_000_000
    assert clock.camera_us(2_000_000_000) == 990_000_000 + 1_001_000_000
    assert clock.real_us(clock.camera_us(1_500_000_000)) == pytest.approx(1_500_000_000)
    believes = CameraClock.at(datetime(2026, 1, 1, tzinfo=UTC))
    assert abs(believes.camera_us() - 1_767_225_600_000_000) < 60_000_000


def test_rtp_clock_runs_off_the_camera_clock_and_sender_reports_stay_true() -> None:
    """`rtp_ppm` (at fast pace too): RTP times advance 1 % faster than the camera's clock, and
    each sender report maps an RTP time to the camera time it was taken at. The reader's time of
    a packet (FFmpeg's, by the latest report at the nominal rate) is then off by at most 1 % of
    the time since that report (one second at most), never more."""
    rtp_ppm = 10_000
    clock = CameraClock.at(datetime(2026, 1, 1, tzinfo=UTC), rtp_ppm=rtp_ppm)
    reported: dict[int, int | None] = {}  # pts → the camera time its latest report gives it
    seen: list[tuple[FrameStamp, int]] = []
    with TestCamera(pace="fast", clock=clock) as cam, open_stream(cam.url) as container:
        for packet in container.demux(video=0):
            if packet.pts is not None:
                reported[packet.pts] = sender_time_us(packet)
            seen += [(read_stamp(f), f.pts) for f in packet.decode() if f.pts is not None]
            if len(seen) >= 100:
                break
    assert consecutive([stamp for stamp, _ in seen])
    (first, first_pts), (last, last_pts) = seen[0], seen[-1]
    span_us = last.capture_time_us - first.capture_time_us
    expected = span_us * 90_000 * (1_000_000 + rtp_ppm) // 10**12
    assert abs((last_pts - first_pts) - expected) <= 1
    errors = [
        abs(us - stamp.capture_time_us)
        for stamp, pts in seen
        if (us := reported.get(pts)) is not None
    ]
    assert len(errors) > len(seen) // 2
    assert min(errors) <= 2 and max(errors) <= rtp_ppm + 2  # 1 % of 1 s, in µs


def test_fast_pace_wraps_rtp_times() -> None:
    """As fast as the client reads, RTP times crossing 2^32 after one second (video and
    audio): the client's times keep increasing and the stamps stay consecutive."""
    offsets = (2**32 - 90_000, 2**32 - 48_000)
    with (
        TestCamera(pace="fast", audio="aac", rtp_offsets=offsets) as cam,
        open_stream(cam.url) as container,
    ):
        seen = _take(frames(container), 100)
    got = [stamp for stamp, _ in seen]
    assert consecutive(got)
    times = [frame.pts for _, frame in seen if frame.pts is not None]
    assert times == sorted(times) and times[-1] - times[0] >= 90_000


def test_a_pre_encoded_loop() -> None:
    """`loop_s`: the same second of pictures again and again, the client's times running on."""
    with TestCamera(loop_s=1.0) as cam, open_stream(cam.url) as container:
        seen = _take(frames(container), 40)
    indices = [stamp.index for stamp, _ in seen]
    assert all(b == (a + 1) % 25 for a, b in itertools.pairwise(indices))
    times = [frame.pts for _, frame in seen if frame.pts is not None]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_cameras_share_one_loop_at_their_bitrate() -> None:
    """Cameras with the same settings send one loop, encoded once in the process, at about the
    bit rate asked for (rate control caps it over a second; the noise gives it detail to fill)."""
    bitrate = 1_000_000
    first, second = (TestCamera(loop_s=2.0, bitrate=bitrate, size=(640, 360)) for _ in "12")
    with first, second:
        assert first._source is not None and second._source is not None
        assert first._source._loop is second._source._loop
        for cam in (first, second):
            with open_stream(cam.url) as container:
                sent = (p for p in container.demux(video=0) if p.size)
                packets = list(itertools.islice(sent, 100))
            assert packets[0].is_keyframe
            bits = 8 * sum(p.size for p in packets) * 25 / len(packets)
            assert 0.5 * bitrate < bits < 1.3 * bitrate


def test_two_viewers_get_one_live_stream() -> None:
    with TestCamera() as cam, open_stream(cam.url) as first:
        first_frames = frames(first)
        early = _take(first_frames, 5)
        with open_stream(cam.url) as second:
            late = _take(frames(second), 25)
            assert (cam.connections, cam.playing, cam.total_plays) == (2, 2, 2)
            more = _take(first_frames, 25)
        # Live, not a restart: the second viewer starts after what the first has seen.
        assert late[0][0].index > early[0][0].index
        assert consecutive([s for s, _ in late]) and consecutive([s for s, _ in early + more])
    assert cam.total_connections == 2


def test_drop_closes_connections_and_new_ones_are_served() -> None:
    with TestCamera() as cam:
        with open_stream(cam.url) as container:
            stream = frames(container)
            _take(stream, 3)
            cam.drop()
            with pytest.raises((av.error.FFmpegError, OSError, NoStamp)):
                for _ in stream:  # the end of the stream, or an error: never more than a queue
                    pass
                raise OSError("stream ended")
        wait_until(lambda: cam.connections == 0)
        assert len(stamps(cam.url, 3)) == 3
        assert cam.total_connections == 2


def test_stall_keeps_the_connection_and_loses_frames() -> None:
    with TestCamera() as cam, open_stream(cam.url) as container:
        stream = frames(container)
        before = _take(stream, 5)
        cam.stall()
        stalled_at = cam.frames_captured
        wait_until(lambda: cam.frames_captured > stalled_at + 10)
        assert cam.connections == 1
        cam.resume()
        resumed_at = cam.frames_captured
        after = _take(stream, 40)
        indices = [s.index for s, _ in before + after]
    assert indices == sorted(indices)
    assert not [i for i in indices if stalled_at < i < resumed_at]
    assert indices[-1] >= resumed_at


def test_resolution_change_mid_stream_and_in_the_next_sdp() -> None:
    with TestCamera() as cam, open_stream(cam.url) as container:
        stream = frames(container)
        assert {f.width for _, f in _take(stream, 3)} == {320}
        cam.set_size(640, 360)
        sizes = []
        for stamp, frame in stream:
            sizes.append((stamp.index, frame.width, frame.height))
            if frame.width == 640:
                break
        assert sizes[-1][1:] == (640, 360)
        with open_stream(cam.url) as later:
            assert later.streams.video[0].codec_context.width == 640
            assert next(frames(later))[1].height == 360


def test_restart_with_new_parameters() -> None:
    with TestCamera() as cam:
        assert len(stamps(cam.url, 30)) == 30
        cam.restart(size=(160, 96), fps=10, audio="pcmu")
        with open_stream(cam.url) as container:
            assert [s.type for s in container.streams] == ["video", "audio"]
            stamp, frame = next(frames(container))
        assert (frame.width, frame.height) == (160, 96) and stamp.index < 30


@pytest.mark.parametrize("schemes", [("basic",), ("digest",), ("digest", "basic")])
def test_authentication(schemes: tuple[str, ...]) -> None:
    with TestCamera(auth=Auth("viewer", "s3cret pw", schemes)) as cam:
        good = cam.url.replace("rtsp://", "rtsp://viewer:s3cret%20pw@")
        assert len(stamps(good, 2)) == 2
        for url in (cam.url, cam.url.replace("rtsp://", "rtsp://viewer:wrong@")):
            with pytest.raises(av.error.HTTPUnauthorizedError):
                open_stream(url)
        cam.refuse(401)
        with pytest.raises(av.error.HTTPUnauthorizedError):
            open_stream(good)
        cam.refuse(None)
        assert len(stamps(good, 2)) == 2


@pytest.mark.parametrize(("audio", "decoder"), [("aac", "aac"), ("pcmu", "pcm_mulaw")])
def test_audio_track(audio: str, decoder: str) -> None:
    with TestCamera(audio=audio) as cam, open_stream(cam.url) as container:
        assert container.streams.audio[0].codec_context.name == decoder
        kinds = set()
        for packet in container.demux():
            if packet.size:
                kinds.add(packet.stream.type)
            if kinds == {"video", "audio"}:
                break
        assert next(container.decode(audio=0)).sample_rate in (8000, 48000)


def test_h265() -> None:
    with TestCamera(codec="h265") as cam, open_stream(cam.url) as container:
        assert container.streams.video[0].codec_context.name == "hevc"
        assert consecutive([s for s, _ in _take(frames(container), 10)])


def reassemble(payloads: list[bytes], codec: str) -> tuple[bytes, list[tuple[bool, bool]]]:
    """A depacketizer's view of one NAL's payloads: the NAL and each fragment's (S, E) bits."""
    if len(payloads) == 1:
        return payloads[0], []
    head = 1 if codec == "h264" else 2
    first, fu = payloads[0], payloads[0][head]
    if codec == "h264":
        nal_head = bytes([(first[0] & 0xE0) | (fu & 0x1F)])
    else:
        nal_head = bytes([(first[0] & 0x81) | (fu & 0x3F) << 1, first[1]])
    bits = [(bool(p[head] & 0x80), bool(p[head] & 0x40)) for p in payloads]
    return nal_head + b"".join(p[head + 1 :] for p in payloads), bits


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize("extra", [-1, 0, 1, 2, 3, rtp.MTU - 1, rtp.MTU, rtp.MTU + 1, rtp.MTU + 5])
def test_fragments_never_start_and_end_in_one_packet(codec: str, extra: int) -> None:
    # A NAL of 1401 or 1402 bytes used to go out as one FU with S and E both set: FFmpeg's HEVC
    # depacketizer drops such a packet, and the frame with it.
    header = bytes([0x65]) if codec == "h264" else bytes([19 << 1, 0x01])  # IDR slices
    nal = header + bytes(range(256)) * 12
    nal = (nal * 2)[: rtp.MTU + extra]
    payloads = list(rtp.video_payloads(nal, codec))
    got, bits = reassemble(payloads, codec)
    assert got == nal
    assert all(len(p) <= rtp.MTU + 3 for p in payloads)
    if len(nal) > rtp.MTU:
        assert len(bits) >= 2
        assert bits[0] == (True, False) and bits[-1] == (False, True)
        assert all(b == (False, False) for b in bits[1:-1])


def test_nal_units_leave_no_zero_byte_behind() -> None:
    sps, pps, idr = b"\x67\x42\x00\x1f", b"\x68\xce", b"\x65\x88\x84"
    four, three = b"\x00\x00\x00\x01", b"\x00\x00\x01"
    assert rtp.nal_units(four + sps + four + pps + three + idr) == [sps, pps, idr]
    assert rtp.nal_units(three + sps + three + idr) == [sps, idr]


def test_stop_leaves_no_thread_or_socket() -> None:
    with TestCamera() as cam:
        port = cam.port
        assert len(stamps(cam.url, 2)) == 2
    assert not [t for t in threading.enumerate() if t.name.startswith(f"test-camera-{port}-")]
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_the_test_camera_command() -> None:
    """`sparc-video test-camera` prints its URL, serves the clock it was given, requires the
    credentials it was given, and ends cleanly on SIGTERM."""
    command = [str(Path(sys.executable).parent / "sparc-video"), "test-camera", "--port", "0"]
    command += ["--clock-start", "2026-01-01", "--username", "u", "--password", "p"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().split()[0]
            with pytest.raises(av.error.HTTPUnauthorizedError):
                open_stream(url)
            with open_stream(url.replace("rtsp://", "rtsp://u:p@")) as container:
                stamp = next(frames(container))[0]
            new_year = 1_767_225_600_000_000
            assert new_year <= stamp.capture_time_us < new_year + 600 * 1_000_000
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
