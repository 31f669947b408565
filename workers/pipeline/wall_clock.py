"""Wall-clock truth in the output of a recording or camera-range export: a chapter per source
segment titled with the UTC time it was captured, and optionally a subtitle track showing the
capture time (a cue per wall-clock second; mov_text in MP4/MOV, WebVTT in Matroska/WebM).

Both are added by remuxing the finished video once (a stream copy, cheap next to the encode).
The times follow the plan: a trim shifts them, frame-rate changes do not. A stream-copied video
cut by a fast trim keeps its MP4 edit list only through the first mux, so it gets neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
from av.container import OutputContainer
from av.stream import Stream
from av.subtitles.codeccontext import SubtitleCodecContext

from sparc_video.exports.models import ExportRecord

if TYPE_CHECKING:
    from av.container.core import Chapter

# Chapters and cues are in milliseconds, which every container here stores exactly.
TIME_BASE = Fraction(1, 1000)
# Suffix → (muxer, subtitle codec).
_CONTAINERS = {
    ".mp4": ("mp4", "mov_text"),
    ".mov": ("mov", "mov_text"),
    ".mkv": ("matroska", "webvtt"),
    ".webm": ("webm", "webvtt"),
}
# mov_text's encoder insists on an ASS header; only the style matters to players.
_ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    "Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0"
    "\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, "
    "Text\n"
)


@dataclass(frozen=True)
class ClockPart:
    """`duration_s` of the source video from `offset_s` on, captured from `start_ns` (UTC); a
    `gap` is a slate shown for time without footage."""

    offset_s: float
    duration_s: float
    start_ns: int
    gap: bool = False


@dataclass(frozen=True)
class WallClock:
    parts: tuple[ClockPart, ...]
    subtitles: bool = False

    def capture_time(self, source_s: float) -> datetime | None:
        """When the frame at `source_s` of the source video (the joined video of a range,
        before the operations) was captured; None outside every part. With a trim from `a`,
        output time t is `capture_time(a + t)`: what a running clock overlay should show."""
        for part in self.parts:
            if part.offset_s <= source_s < part.offset_s + part.duration_s:
                ns = part.start_ns + round((source_s - part.offset_s) * 1e9)
                seconds, rest = divmod(ns, 10**9)
                return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
        return None


@dataclass(frozen=True)
class OutputPart:
    """A part as it lands in the output: [start_s, end_s) of output time."""

    start_s: float
    end_s: float
    start_ns: int
    gap: bool

    def wall_ns(self, at_s: float) -> int:
        return self.start_ns + round((at_s - self.start_s) * 1e9)


def wall_clock_of(record: ExportRecord) -> WallClock | None:
    """The capture times of the video a recording or camera-range export's plan reads."""
    if record.coverage is None:
        return None
    parts = [
        ClockPart(s.output_offset_ns / 1e9, s.duration_ns / 1e9, s.start_ns)
        for s in record.coverage.spans
    ]
    wanted = record.camera_range
    if wanted is not None and wanted.gap_mode == "slate":
        parts += [
            ClockPart(g.output_offset_ns / 1e9, g.duration_ns / 1e9, g.start_ns, gap=True)
            for g in record.coverage.gaps
        ]
    subtitles = wanted.wall_clock_subtitles if wanted is not None else False
    return WallClock(tuple(sorted(parts, key=lambda p: p.offset_s)), subtitles)


def output_parts(clock: WallClock, start_s: float, end_s: float | None) -> list[OutputPart]:
    """The parts inside the window [start_s, end_s) the plan keeps, in output time."""
    found: list[OutputPart] = []
    for part in clock.parts:
        first = max(part.offset_s, start_s)
        last = part.offset_s + part.duration_s
        if end_s is not None:
            last = min(last, end_s)
        if last - first > 1e-6:
            found.append(
                OutputPart(
                    first - start_s,
                    last - start_s,
                    part.start_ns + round((first - part.offset_s) * 1e9),
                    part.gap,
                )
            )
    return found


def chapters(parts: list[OutputPart], duration_s: float) -> list[Chapter]:
    result: list[Chapter] = []
    for number, part in enumerate(parts, 1):
        end = min(part.end_s, duration_s)
        if end <= part.start_s:
            continue
        title = utc_text(part.start_ns) + (" (no recording)" if part.gap else "")
        result.append(
            {
                "id": number,
                "start": round(part.start_s / TIME_BASE),
                "end": round(end / TIME_BASE),
                "time_base": TIME_BASE,
                "metadata": {"title": title},
            }
        )
    return result


def cues(parts: list[OutputPart], duration_s: float) -> list[tuple[float, float, str]]:
    """(start, end, text) in output seconds: the capture time, changing with each wall-clock
    second, and at each part's start."""
    found: list[tuple[float, float, str]] = []
    for part in parts:
        end = min(part.end_s, duration_s)
        at = part.start_s
        while at < end - 1e-6:
            wall = part.wall_ns(at)
            next_second_ns = (wall // 10**9 + 1) * 10**9
            until = min(end, part.start_s + (next_second_ns - part.start_ns) / 1e9)
            found.append((at, until, utc_text(wall)))
            at = until
    return found


def utc_text(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def mark_wall_clock(path: Path, parts: list[OutputPart], duration_s: float, subs: bool) -> bool:
    """Rewrite the video at `path` with chapters (and a subtitle track); False when its
    container holds neither (AVI)."""
    container = _CONTAINERS.get(path.suffix.lower())
    if container is None or not parts:
        return False
    muxer, codec = container
    marked = path.with_name(f"{path.stem}.clock{path.suffix}")
    with av.open(str(path)) as inp, av.open(str(marked), "w", format=muxer) as out:
        streams = {
            s.index: out.add_stream_from_template(s)
            for s in inp.streams
            if s.type in {"video", "audio"}
        }
        text = None
        if subs:
            text = out.add_stream(codec)
            context = text.codec_context
            assert isinstance(context, SubtitleCodecContext)
            context.subtitle_header = _ASS_HEADER.encode() if codec == "mov_text" else b"WEBVTT\n\n"
            text.codec_context.time_base = TIME_BASE
            text.time_base = TIME_BASE
        out.set_chapters(chapters(parts, duration_s))
        pending = cues(parts, duration_s) if text is not None else []
        for packet in inp.demux():
            stream = streams.get(packet.stream.index)
            if stream is None or packet.size == 0:
                continue
            # Cues go in beside the pictures they belong to: muxers want streams interleaved.
            at = packet.dts if packet.dts is not None else packet.pts
            if at is not None and packet.time_base is not None:
                while pending and pending[0][0] <= float(at * packet.time_base):
                    _mux_cue(out, text, codec, *pending.pop(0))
            packet.stream = stream
            out.mux(packet)
        for cue in pending:
            _mux_cue(out, text, codec, *cue)
    marked.replace(path)
    return True


def _mux_cue(
    out: OutputContainer, text: Stream | None, codec: str, start: float, end: float, line: str
) -> None:
    assert text is not None
    body = line.encode()
    # mov_text samples are a 16-bit length, then the UTF-8 text.
    payload = len(body).to_bytes(2, "big") + body if codec == "mov_text" else body
    packet = av.Packet(payload)
    packet.stream = text
    packet.time_base = TIME_BASE
    packet.pts = packet.dts = round(start / TIME_BASE)
    packet.duration = max(1, round((end - start) / TIME_BASE))
    out.mux(packet)
