"""What the test camera sends: frames stamped with their index and capture time (camera clock),
encoded live (libx264/libx265 ultrafast, zerolatency: every frame is unique, so nothing can be
encoded ahead), packed as RTP, with an optional tone as AAC or PCMU. A pre-encoded loop
(`loop_s`) is encoded once per process and shared by every camera with the same settings, so
one process serves many 1080p cameras with no encoder running.

RTP times follow the camera clock: capture time times clock rate plus a per-track random offset,
modulo 2^32, so a long or fast run wraps them as a real camera does. A media clock running
`rtp_ppm` off the camera clock (`CameraClock.rtp_ppm`) scales the elapsed ticks, exactly, in
integers (parts per billion): RTP time = offset + elapsed µs x rate x (1 + rtp_ppm / 1e6)."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

from sparc_video.simulator import rtp
from sparc_video.simulator.stamp import FrameStamp, draw_stamp

VIDEO_CODECS = ("h264", "h265")
AUDIO_CODECS = ("aac", "pcmu")
_ENCODERS = {"h264": "libx264", "h265": "libx265"}
_AUDIO_RATES = {"aac": 48000, "pcmu": 8000}
_AUDIO_CHUNK = {"aac": 1024, "pcmu": 160}  # samples an encoder takes per frame (PCMU: 20 ms)
_PPB = 1_000_000_000


@dataclass(frozen=True)
class StreamConfig:
    """What a camera streams. `gop_s`: seconds between keyframes; `threads`: the encoder's
    (one by default: a simulator must not take every core of a test machine); `loop_s`: encode
    that many seconds once and send them in a loop, for sizes and codecs too slow to encode
    live (the pictures' stamps then repeat each loop; RTP and RTCP times still follow the
    clock; a new viewer waits for the loop's next keyframe). `bitrate`: bits per second the
    encoder aims at (rate control capped at it over one second); each picture then also gets
    fresh noise for the encoder to spend it on, as a still picture needs far less."""

    fps: int = 25
    size: tuple[int, int] = (320, 180)
    codec: str = "h264"
    audio: str | None = None
    text: bool = True
    gop_s: float = 1.0
    threads: int = 1
    rtp_offsets: tuple[int, int] | None = None  # (video, audio); None: random
    loop_s: float | None = None
    bitrate: int | None = None

    def __post_init__(self) -> None:
        if self.codec not in VIDEO_CODECS:
            raise ValueError(f"codec {self.codec!r}: one of {', '.join(VIDEO_CODECS)}")
        if self.audio is not None and self.audio not in AUDIO_CODECS:
            raise ValueError(f"audio {self.audio!r}: one of {', '.join(AUDIO_CODECS)} or None")
        width, height = self.size
        if width % 2 or height % 2 or width < 64 or height < 48 or self.fps < 1:
            raise ValueError("size: even, at least 64x48; fps: at least 1")
        if self.bitrate is not None and self.bitrate < 10_000:
            raise ValueError("bitrate: at least 10000 bits per second")


@dataclass
class Burst:
    """One captured frame's RTP packets (track number, packet), video first, then the audio
    that covers the frame's interval."""

    stamp: FrameStamp
    keyframe: bool
    packets: list[tuple[int, bytes]] = field(default_factory=list)
    rtp_times: list[int] = field(default_factory=list)  # per track, at the capture time


class Source:
    """Encodes and packs frames; not thread-safe (one source thread calls it)."""

    def __init__(self, config: StreamConfig, start_us: int, rtp_ppm: float = 0.0) -> None:
        self.config = config
        self.start_us = start_us
        self._rtp_ppb = _PPB + round(rtp_ppm * 1000)  # media clock ticks per 1e9 nominal
        offsets = config.rtp_offsets or (random.getrandbits(32), random.getrandbits(32))
        self._offsets = offsets
        self._sequence = [random.getrandbits(16), random.getrandbits(16)]
        self._size = config.size
        self._resize_to: tuple[int, int] | None = None
        self._encoder = self._video_encoder(self._size)
        self.tracks = [self._video_track(self._size)]
        self._audio: AudioCodecContext | None = None
        self._audio_samples = 0
        if config.audio is not None:
            self._audio = _audio_encoder(config.audio)
            rate = _AUDIO_RATES[config.audio]
            aac = config.audio == "aac"
            self.tracks.append(
                rtp.Track(
                    "audio",
                    config.audio,
                    97 if aac else 0,
                    rate,
                    random.getrandbits(32),
                    rtp.aac_fmtp(rate, 1) if aac else "",
                )
            )
        self._background = _background(*self._size)
        self._noise = random.Random()
        self._loop = self._shared_loop() if config.loop_s else []

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def resize(self, size: tuple[int, int]) -> None:
        """From the next frame on: a new encoder, so a keyframe with new parameter sets."""
        self._resize_to = size

    def sdp(self) -> str:
        media = "".join(t.sdp(f"trackID={n}") for n, t in enumerate(self.tracks))
        return (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=sparc-video test camera\r\nt=0 0\r\n"
            "a=control:*\r\n" + media
        )

    def rtp_time(self, track: int, camera_us: int) -> int:
        rate = self.tracks[track].clock_rate
        ticks = (camera_us - self.start_us) * rate * self._rtp_ppb // (1_000_000 * _PPB)
        return (self._offsets[track] + ticks) % 2**32

    def capture_us(self, index: int) -> int:
        return self.start_us + index * 1_000_000 // self.config.fps

    def burst(self, index: int, *, keyframe: bool = False, encode: bool = True) -> Burst:
        """Frame `index`; `encode=False` only advances the audio (nobody is watching)."""
        stamp = FrameStamp(index, self.capture_us(index))
        burst = Burst(stamp, keyframe=False)
        burst.rtp_times = [self.rtp_time(n, stamp.capture_time_us) for n in range(len(self.tracks))]
        if self._resize_to is not None:
            self._size, self._resize_to = self._resize_to, None
            self._encoder = self._video_encoder(self._size)
            self._background = _background(*self._size)
            self.tracks[0] = self._video_track(self._size)
            self._loop = self._shared_loop() if self.config.loop_s else []
        if encode:
            self._encode_video(burst, keyframe)
        if self._audio is not None:
            self._encode_audio(burst, index + 1, encode)
        return burst

    def _encode_video(self, burst: Burst, keyframe: bool) -> None:
        if self._loop:
            picture = self._loop[burst.stamp.index % len(self._loop)]
        else:
            picture = _Picture.of(self._video_nals(burst.stamp, keyframe), self.config.codec)
        burst.keyframe = picture.keyframe
        timestamp = self.rtp_time(0, burst.stamp.capture_time_us)
        payloads = picture.payloads
        for number, payload in enumerate(payloads):
            marker = number == len(payloads) - 1
            burst.packets.append((0, self._packet(0, timestamp, payload, marker)))

    def _shared_loop(self) -> list[_Picture]:
        """The loop for this camera's settings and size, encoded by the first camera that needs
        it (stamped with that camera's capture times) and shared from then on. What a camera
        changes of its own (RTP offsets, sequence numbers, times) is added per packet."""
        key = dataclasses.replace(self.config, size=self._size, rtp_offsets=None, audio=None)
        with _LOOP_LOCK:
            return _loop(key, self._preencode)

    def _preencode(self) -> list[_Picture]:
        assert self.config.loop_s is not None
        count = max(1, round(self.config.loop_s * self.config.fps))
        stamps = [FrameStamp(i, self.capture_us(i)) for i in range(count)]
        return [_Picture.of(self._video_nals(s, False), self.config.codec) for s in stamps]

    def _video_nals(self, stamp: FrameStamp, keyframe: bool) -> list[bytes]:
        luma = self._background.copy()
        if self.config.bitrate is not None:
            width, height = self._size
            noise = self._noise.randbytes(width * height)
            luma += np.frombuffer(noise, np.uint8).reshape(height, width) & 0x1F
        draw_stamp(luma, stamp, text=self.config.text)
        width, height = self._size
        planes = np.concatenate([luma, np.full((height // 2, width), 128, np.uint8)])
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = stamp.index
        if keyframe:
            frame.pict_type = PictureType.I
        return [n for p in self._encoder.encode(frame) for n in rtp.nal_units(bytes(p))]

    def _encode_audio(self, burst: Burst, frames_done: int, encode: bool) -> None:
        assert self._audio is not None and self.config.audio is not None
        codec = self.config.audio
        rate, chunk = _AUDIO_RATES[codec], _AUDIO_CHUNK[codec]
        due = frames_done * rate // self.config.fps
        while self._audio_samples + chunk <= due:
            first = self._audio_samples
            self._audio_samples += chunk
            if not encode:
                continue
            t = (first + np.arange(chunk)) / rate
            tone = 0.2 * np.sin(2 * np.pi * 440 * t)
            if codec == "aac":
                frame = av.AudioFrame.from_ndarray(
                    tone.astype(np.float32)[np.newaxis], format="fltp", layout="mono"
                )
            else:
                samples = (tone * 32767).astype(np.int16)[np.newaxis]
                frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, first, Fraction(1, rate)
            for packet in self._audio.encode(frame):
                pts = packet.pts if packet.pts is not None else first
                data = bytes(packet)
                payload = rtp.aac_payload(data) if codec == "aac" else data
                # Samples counted on the media clock, as the video's ticks are.
                timestamp = (self._offsets[1] + pts * self._rtp_ppb // _PPB) % 2**32
                burst.packets.append((1, self._packet(1, timestamp, payload, True)))

    def _packet(self, track: int, timestamp: int, payload: bytes, marker: bool) -> bytes:
        sequence = self._sequence[track]
        self._sequence[track] = (sequence + 1) & 0xFFFF
        return rtp.rtp_packet(self.tracks[track], sequence, timestamp, payload, marker)

    def _video_encoder(self, size: tuple[int, int]) -> VideoCodecContext:
        config = self.config
        ctx = av.CodecContext.create(_ENCODERS[config.codec], "w")
        assert isinstance(ctx, VideoCodecContext)
        ctx.width, ctx.height = size
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, config.fps)
        ctx.framerate = Fraction(config.fps)
        gop = max(1, round(config.fps * config.gop_s))
        options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop)}
        # At most the bit rate over any second (a VBV of one second), as a camera set to it.
        kbps = config.bitrate // 1000 if config.bitrate is not None else None
        vbv = f":vbv-maxrate={kbps}:vbv-bufsize={kbps}" if kbps else ""
        if config.bitrate is not None:
            ctx.bit_rate = config.bitrate
        if config.codec == "h264":
            options |= {"threads": str(config.threads), "x264-params": f"scenecut=0{vbv}"}
        else:
            threads = f"pools={config.threads}:frame-threads=1"
            options["x265-params"] = f"{threads}:scenecut=0:log-level=error:repeat-headers=1{vbv}"
        ctx.options = options
        return ctx

    def _video_track(self, size: tuple[int, int]) -> rtp.Track:
        """The SDP's parameter sets come from a throwaway encoder's first keyframe: the
        encoder's settings alone determine them."""
        probe = self._video_encoder(size)
        blank = np.full((size[1] * 3 // 2, size[0]), 128, np.uint8)
        frame = av.VideoFrame.from_ndarray(blank, format="yuv420p")
        frame.pts = 0
        units = [bytes(p) for p in probe.encode(frame)] + [bytes(p) for p in probe.encode(None)]
        nals = [n for unit in units for n in rtp.nal_units(unit)]
        codec = self.config.codec
        fmtp = rtp.h264_fmtp(nals) if codec == "h264" else rtp.h265_fmtp(nals)
        ssrc = self.tracks[0].ssrc if hasattr(self, "tracks") else random.getrandbits(32)
        return rtp.Track("video", codec, 96, 90000, ssrc, fmtp)


@dataclass(frozen=True)
class _Picture:
    """One encoded picture as RTP payloads (NAL units, fragmented where too long for one)."""

    payloads: list[bytes]
    keyframe: bool

    @classmethod
    def of(cls, nals: list[bytes], codec: str) -> _Picture:
        kind = rtp.h264_kind if codec == "h264" else rtp.h265_kind
        keyframe = any(kind(n) in ((5,) if codec == "h264" else (19, 20, 21)) for n in nals)
        return cls([p for nal in nals for p in rtp.video_payloads(nal, codec)], keyframe)


# Cameras of one process share their loops; the last few settings (a test's resize) are kept.
_LOOP_LOCK = threading.Lock()
_LOOPS: dict[StreamConfig, list[_Picture]] = {}
_LOOPS_KEPT = 4


def _loop(key: StreamConfig, encode: Callable[[], list[_Picture]]) -> list[_Picture]:
    """The loop for `key`, encoded on first use (the caller holds _LOOP_LOCK, so cameras
    starting together wait for one encoding instead of running one each)."""
    if key not in _LOOPS:
        if len(_LOOPS) >= _LOOPS_KEPT:
            del _LOOPS[next(iter(_LOOPS))]
        _LOOPS[key] = encode()
    return _LOOPS[key]


def _audio_encoder(codec: str) -> AudioCodecContext:
    ctx = av.CodecContext.create("aac" if codec == "aac" else "pcm_mulaw", "w")
    assert isinstance(ctx, AudioCodecContext)
    ctx.sample_rate = _AUDIO_RATES[codec]
    ctx.layout = "mono"
    ctx.format = "fltp" if codec == "aac" else "s16"
    if codec == "aac":
        ctx.bit_rate = 64000
    ctx.time_base = Fraction(1, ctx.sample_rate)
    ctx.open()
    return ctx


def _background(width: int, height: int) -> np.ndarray:
    """A mid-grey ramp: some texture for the encoder, far from the stamp's black and white."""
    ramp = (np.arange(width) * 64 // max(1, width - 1) + 96).astype(np.uint8)
    return np.repeat(ramp[np.newaxis, :], height, axis=0)
