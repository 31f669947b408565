"""Encoder settings per FFmpeg encoder: presets, rate control, pixel formats, threads, NVENC.

Clients speak one vocabulary (x264's presets, CRF on x264's 0-51 scale, `maxrate`/`bufsize`);
each encoder gets its own equivalent here.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.codeccontext import VideoCodecContext
from av.video.stream import VideoStream

from sparc_video.core.errors import PermanentProcessingError
from sparc_video.media import codecs
from workers.pipeline.cores import ThreadBudget

# SVT-AV1 logs its whole configuration to stderr unless told otherwise (1: errors only).
os.environ.setdefault("SVT_LOG", "1")

_FF_QP2LAMBDA = 118
# Where an NVIDIA driver exposes its devices; without them NVENC cannot work, and probing the
# encoder (which loads CUDA) is skipped.
_NVIDIA_DEVICES = ("/dev/nvidiactl", "/dev/nvidia0")
# The driver names each GPU here ("Model: NVIDIA H200").
_NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")
# NVENC takes 10-bit 4:2:0 as P010.
_NVENC_PIX_FMTS = {"yuv420p10le": "p010le"}


@dataclass(frozen=True)
class RateControl:
    bitrate_bps: int | None = None
    crf: int | None = None
    max_bitrate_bps: int | None = None
    buffer_size_bits: int | None = None


@dataclass(frozen=True)
class VideoEncoder:
    """What a video stream is encoded with."""

    codec: str  # client name: h264, h265, ...
    encoder: str  # FFmpeg encoder: libx264, h264_nvenc, ...
    preset: str
    pix_fmt: str
    rate: RateControl = field(default_factory=RateControl)

    @property
    def hardware(self) -> bool:
        return self.encoder.endswith("_nvenc")

    @property
    def subdivides_time(self) -> bool:
        """Whether timestamps may fall between frames (MPEG-4 Part 2 allows a 16-bit time base
        denominator only, so it gets the plain frame rate)."""
        return self.encoder != "mpeg4"


@dataclass(frozen=True)
class AudioEncoder:
    codec: str  # client name: aac, opus, mp3
    encoder: str
    bitrate_bps: int


@dataclass(frozen=True)
class HardwareReport:
    """The hardware encoders a worker can use, found by one probe when it starts."""

    # NVENC encoders that opened and encoded a frame (h264_nvenc, ...).
    nvenc: tuple[str, ...] = ()
    # Why there is none, when there is none.
    reason: str = ""

    def summary(self) -> str:
        """What health reports: `h264_nvenc, hevc_nvenc` or `nvenc unavailable: <why>`."""
        return ", ".join(self.nvenc) if self.nvenc else f"{codecs.NVENC_UNAVAILABLE}: {self.reason}"


def choose_video_encoder(
    codec_name: str,
    preset: str,
    pixel_format: str,
    hardware: str,
    rate: RateControl,
    available: HardwareReport,
) -> VideoEncoder:
    """Pick software or NVENC as `hardware` ("", "none", "auto", "nvenc") asks, from what the
    worker's start-up probe found (`available`): nothing is probed per job."""
    codec = codecs.VIDEO_CODECS[codec_name]
    encoder = codec.encoder
    if hardware in ("auto", "nvenc") and codec.nvenc and pixel_format in codec.nvenc_pixel_formats:
        if codec.nvenc in available.nvenc:
            encoder = codec.nvenc
        elif hardware == "nvenc":
            why = available.reason or f"{codec.nvenc} did not pass the probe"
            raise PermanentProcessingError(
                f"NVENC was asked for (hardware: nvenc) but this worker cannot use "
                f"{codec.nvenc}: {why}",
                reason="HARDWARE_UNAVAILABLE",
            )
    elif hardware == "nvenc":
        raise PermanentProcessingError(
            f"NVENC cannot encode {codec_name} as {pixel_format}", reason="HARDWARE_UNAVAILABLE"
        )
    return VideoEncoder(codec_name, encoder, preset, pixel_format, rate)


def choose_audio_encoder(codec_name: str, bitrate_bps: int | None) -> AudioEncoder:
    codec = codecs.AUDIO_CODECS[codec_name]
    return AudioEncoder(codec_name, codec.encoder, bitrate_bps or codec.default_bitrate_bps)


def add_video_stream(
    out: OutputContainer,
    enc: VideoEncoder,
    width: int,
    height: int,
    rate: Fraction | None,
    time_base: Fraction,
    budget: ThreadBudget | None = None,
) -> VideoStream:
    """A video stream configured for `enc`, with the threads of `budget` (None: FFmpeg's
    choice); colour tags are the caller's."""
    stream = out.add_stream(enc.encoder, rate=rate) if rate else out.add_stream(enc.encoder)
    assert isinstance(stream, VideoStream)
    ctx = stream.codec_context
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = _NVENC_PIX_FMTS.get(enc.pix_fmt, enc.pix_fmt) if enc.hardware else enc.pix_fmt
    ctx.time_base = time_base
    stream.time_base = time_base
    # The default is slice threading, which is much slower than frame threads here.
    ctx.thread_type = "AUTO"
    ctx.thread_count = 0
    if budget is not None:
        ctx.thread_count = budget.x264_threads if enc.encoder == "libx264" else budget.codec_threads
    options = _video_options(enc, ctx, width)
    if enc.rate.max_bitrate_bps is not None:
        options["maxrate"] = str(enc.rate.max_bitrate_bps)
        options["bufsize"] = str(enc.rate.buffer_size_bits or 2 * enc.rate.max_bitrate_bps)
    ctx.options = options
    return stream


def _video_options(enc: VideoEncoder, ctx: VideoCodecContext, width: int) -> dict[str, str]:
    rate = enc.rate
    crf = codecs.mapped_crf(rate.crf, enc.encoder) if rate.crf is not None else None
    if rate.bitrate_bps is not None:
        ctx.bit_rate = rate.bitrate_bps
    if enc.hardware:
        options = {"preset": codecs.NVENC_PRESETS[enc.preset], "rc": "vbr"}
        if crf is not None:
            options["cq"] = str(crf)
            ctx.bit_rate = 0
        return options
    if enc.encoder == "libx264":
        options = {"preset": enc.preset}
    elif enc.encoder == "libx265":
        options = {"preset": enc.preset, "x265-params": "log-level=error"}
    elif enc.encoder == "libvpx-vp9":
        deadline, cpu_used = codecs.VP9_PRESETS[enc.preset]
        options = {
            "deadline": deadline,
            "cpu-used": str(cpu_used),
            "row-mt": "1",
            # Tiles are what libvpx threads over: one column per 256 pixels of width, at most 4.
            "tile-columns": str(min(2, max(0, (width // 256).bit_length() - 1))),
        }
        if crf is None and rate.bitrate_bps is None:
            crf = 31  # libvpx's own default is a low fixed bitrate
        if crf is not None and rate.max_bitrate_bps is None:
            ctx.bit_rate = 0  # constant quality
    elif enc.encoder == "libsvtav1":
        options = {"preset": str(codecs.SVTAV1_PRESETS[enc.preset])}
    else:  # mpeg4: a quantiser scale instead of CRF
        options = {}
        if rate.bitrate_bps is None:
            ctx.qscale = True
            ctx.global_quality = (crf if crf is not None else 4) * _FF_QP2LAMBDA
        return options
    if crf is not None:
        options["crf"] = str(crf)
    return options


def add_audio_stream(
    out: OutputContainer, enc: AudioEncoder, source_rate: int, channels: int
) -> AudioStream:
    """An audio stream for `enc`: the source's sample rate where the encoder takes it (48 kHz
    otherwise); mono stays mono, anything else becomes stereo, which every player can play."""
    rates = av.Codec(enc.encoder, "w").audio_rates or ()
    rate = source_rate if source_rate in rates or not rates else 48_000
    layout = "mono" if channels == 1 else "stereo"
    stream = out.add_stream(enc.encoder, rate=rate, layout=layout)
    assert isinstance(stream, AudioStream)
    stream.bit_rate = enc.bitrate_bps
    stream.codec_context.time_base = Fraction(1, rate)
    stream.time_base = Fraction(1, rate)
    return stream


def probe_hardware(devices: tuple[str, ...] = _NVIDIA_DEVICES) -> HardwareReport:
    """Try each NVENC encoder with a one-frame encode.

    A worker runs this once, in a media child process (a broken driver can crash the process
    that loads CUDA); on machines without an NVIDIA driver it returns at once, loading nothing.
    A GPU being there does not mean NVENC is: data-centre GPUs (A100, H100, H200) have no
    encoder engine and fail every open with FFmpeg's generic external-library error, so the
    reason says so plainly, names the GPU, and keeps each encoder's error whole.
    """
    if not any(Path(device).exists() for device in devices):
        return HardwareReport(reason=f"no NVIDIA device ({', '.join(devices)} missing)")
    found: list[str] = []
    failures: list[str] = []
    for codec in codecs.VIDEO_CODECS.values():
        if not codec.nvenc or codec.nvenc in found:
            continue
        try:
            ctx = av.CodecContext.create(codec.nvenc, "w")
            assert isinstance(ctx, VideoCodecContext)
            ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
            ctx.time_base = Fraction(1, 25)
            frame = av.VideoFrame(256, 256, "yuv420p")
            frame.pts = 0
            ctx.encode(frame)
            ctx.encode(None)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            failures.append(f"{codec.nvenc}: {exc}")
            continue
        found.append(codec.nvenc)
    if found:
        return HardwareReport(tuple(found))
    gpus = " and ".join(gpu_models()) or "the NVIDIA GPU"
    return HardwareReport(
        reason=f"{gpus} has no usable NVENC encoder (every open failed: {'; '.join(failures)})"
    )


def gpu_models() -> list[str]:
    """The models the NVIDIA driver reports, e.g. ["NVIDIA H200"]; [] where it says nothing."""
    models: list[str] = []
    with contextlib.suppress(OSError):
        for info in sorted(_NVIDIA_GPUS.glob("*/information")):
            for line in info.read_text(errors="replace").splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model" and value.strip():
                    models.append(value.strip())
    return models


@functools.cache
def local_hardware() -> HardwareReport:
    """This process's own probe, for code that runs the pipeline outside a worker (tests,
    benchmarks); a worker passes its start-up report instead."""
    return probe_hardware()


def nvenc_usable() -> bool:
    return bool(local_hardware().nvenc)
