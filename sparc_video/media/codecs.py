"""What the service can encode and mux: codec, preset and container tables.

Pure data, shared by request validation (the server, which never imports PyAV) and the worker.
`tests/test_codecs.py` checks every encoder and pixel format named here against the PyAV build
(`av.codecs_available`), so the lists that INVALID_ARGUMENT messages show are the ones this
build can really encode.

Codec names are the ones clients use (`h264`, `h265`, ...); `canonical` is FFmpeg's name for
the codec, which is what probing a file reports and what container compatibility is about.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoCodec:
    name: str
    canonical: str
    encoder: str
    pixel_formats: tuple[str, ...]
    # NVENC encoder for `hardware: auto|nvenc`, "" when there is none.
    nvenc: str = ""
    nvenc_pixel_formats: tuple[str, ...] = ()


@dataclass(frozen=True)
class AudioCodec:
    name: str
    canonical: str
    encoder: str
    default_bitrate_bps: int


@dataclass(frozen=True)
class Container:
    name: str
    # FFmpeg muxer.
    format: str
    extension: str
    content_type: str
    # Canonical codec names a stream may be copied (or encoded) into this container with.
    video_codecs: frozenset[str]
    audio_codecs: frozenset[str]
    # Client codec names of what we encode to when a stream does not fit.
    default_video: str
    default_audio: str
    # MP4/MOV: a fast trim's leading frames are hidden with an edit list.
    edit_lists: bool


VIDEO_CODECS: dict[str, VideoCodec] = {
    codec.name: codec
    for codec in (
        VideoCodec(
            "h264",
            "h264",
            "libx264",
            ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le"),
            nvenc="h264_nvenc",
            nvenc_pixel_formats=("yuv420p", "yuv444p"),
        ),
        VideoCodec(
            "h265",
            "hevc",
            "libx265",
            ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le"),
            nvenc="hevc_nvenc",
            nvenc_pixel_formats=("yuv420p", "yuv444p", "yuv420p10le"),
        ),
        VideoCodec("vp9", "vp9", "libvpx-vp9", ("yuv420p", "yuv422p", "yuv444p")),
        VideoCodec(
            "av1",
            "av1",
            "libsvtav1",
            ("yuv420p", "yuv420p10le"),
            nvenc="av1_nvenc",
            nvenc_pixel_formats=("yuv420p", "yuv420p10le"),
        ),
        VideoCodec("mpeg4", "mpeg4", "mpeg4", ("yuv420p",)),
    )
}
VIDEO_ALIASES = {"hevc": "h265", "avc": "h264", "h.264": "h264", "h.265": "h265"}
DEFAULT_VIDEO_CODEC = "h264"
DEFAULT_PIXEL_FORMAT = "yuv420p"
PIXEL_FORMATS = ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le")

AUDIO_CODECS: dict[str, AudioCodec] = {
    codec.name: codec
    for codec in (
        AudioCodec("aac", "aac", "aac", 128_000),
        AudioCodec("opus", "opus", "libopus", 96_000),
        AudioCodec("mp3", "mp3", "libmp3lame", 128_000),
    )
}
DEFAULT_AUDIO_CODEC = "aac"

# The presets clients name (x264's), and what each encoder gets for them.
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
DEFAULT_PRESET = "medium"
# libvpx-vp9: (deadline, cpu-used).
VP9_PRESETS = {
    "ultrafast": ("realtime", 8),
    "superfast": ("realtime", 7),
    "veryfast": ("good", 6),
    "faster": ("good", 5),
    "fast": ("good", 4),
    "medium": ("good", 3),
    "slow": ("good", 2),
}
# libsvtav1: 0 (slowest) to 13.
SVTAV1_PRESETS = {
    "ultrafast": 13,
    "superfast": 12,
    "veryfast": 11,
    "faster": 10,
    "fast": 9,
    "medium": 8,
    "slow": 6,
}
# NVENC: p1 (fastest) to p7.
NVENC_PRESETS = {
    "ultrafast": "p1",
    "superfast": "p2",
    "veryfast": "p3",
    "faster": "p3",
    "fast": "p4",
    "medium": "p5",
    "slow": "p6",
}

# CRF is given on x264's 0-51 scale.
CRF_MAX = 51
# Compress quality presets: (CRF, preset).
QUALITY_PRESETS = {"low": (32, "fast"), "medium": (27, "medium"), "high": (22, "slow")}

HARDWARE = ("none", "auto", "nvenc")
# How a worker's hardware report starts when its probe found no NVENC encoder (its heartbeat
# carries the report; the servers count the others as NVENC workers).
NVENC_UNAVAILABLE = "nvenc unavailable"

_MP4_VIDEO = frozenset({"h264", "hevc", "vp9", "av1", "mpeg4"})
CONTAINERS: dict[str, Container] = {
    container.name: container
    for container in (
        Container(
            "mp4",
            "mp4",
            ".mp4",
            "video/mp4",
            _MP4_VIDEO,
            frozenset({"aac", "mp3", "opus", "ac3", "eac3", "flac", "alac"}),
            "h264",
            "aac",
            edit_lists=True,
        ),
        Container(
            "mov",
            "mov",
            ".mov",
            "video/quicktime",
            frozenset({"h264", "hevc", "mpeg4", "mjpeg", "prores"}),
            frozenset({"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s16be", "pcm_s24le"}),
            "h264",
            "aac",
            edit_lists=True,
        ),
        Container(
            "avi",
            "avi",
            ".avi",
            "video/x-msvideo",
            frozenset({"mpeg4", "h264", "mjpeg"}),
            frozenset({"mp3", "ac3", "pcm_s16le", "pcm_u8"}),
            "h264",
            "mp3",
            edit_lists=False,
        ),
        Container(
            "mkv",
            "matroska",
            ".mkv",
            "video/x-matroska",
            _MP4_VIDEO | {"vp8", "mpeg2video", "mjpeg", "prores", "ffv1", "theora"},
            frozenset({"aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3", "pcm_s16le"}),
            "h264",
            "aac",
            edit_lists=False,
        ),
        Container(
            "webm",
            "webm",
            ".webm",
            "video/webm",
            frozenset({"vp8", "vp9", "av1"}),
            frozenset({"opus", "vorbis"}),
            "vp9",
            "opus",
            edit_lists=False,
        ),
    )
}
DEFAULT_CONTAINER = "mp4"


def video_codec(name: str) -> VideoCodec | None:
    """The codec a client name (or alias, any case) stands for."""
    key = name.strip().lower()
    return VIDEO_CODECS.get(VIDEO_ALIASES.get(key, key))


def video_codecs_in(container: Container) -> list[str]:
    """Client names of the video codecs we can encode into `container`."""
    return [c.name for c in VIDEO_CODECS.values() if c.canonical in container.video_codecs]


def audio_codecs_in(container: Container) -> list[str]:
    return [c.name for c in AUDIO_CODECS.values() if c.canonical in container.audio_codecs]


def mapped_crf(crf: int, encoder: str) -> int:
    """A CRF on x264's 0-51 scale, on the scale of `encoder`."""
    if encoder in ("libvpx-vp9", "libsvtav1"):
        return round(crf * 63 / CRF_MAX)
    if encoder == "mpeg4":  # a quantiser scale, 2 (best) to 31
        return 2 + round(crf * 29 / CRF_MAX)
    return crf
