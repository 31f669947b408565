"""Join a camera time range by stream copy: the recordings' packets between the cuts, in order,
with rebased timestamps, into one MP4, without decoding a picture.

A copy is exact only where the cuts fall where the coded stream allows, so `plan_copy` first
checks the whole range and says why not when it cannot be copied; the caller then re-encodes
(`workers.pipeline.join`). The rules:

- No slates (they are pictures to encode), every recording an MP4/MOV with the same H.264/HEVC
  video parameters (codec, profile, size, pixel format, extradata, i.e. SPS/PPS in the one
  avcC/hvcC an MP4 has, time base, colour, rotation) and the same AAC parameters, or no audio
  anywhere.
- A span's frames [start, end) must be a run of consecutive packets in decode order that starts
  with a keyframe (the container's sync sample, where decoding may start). Frames only
  reference frames decoded before them, so such a run decodes on its own and gives exactly the
  span's frames. A start on a keyframe passes; an end passes when no packet at or after it is
  decoded before a frame before it: always without B-frames, with B-frames at a GOP boundary
  (or a mini-GOP's), never when a kept B-frame references a dropped P-frame. Open-GOP leading
  pictures (before their keyframe in display order but after it in decode order) fail the test
  too.
- Timestamps: the frame captured at recording offset t lands at
  `span.output_offset + (t - span.source_offset)`, as in the re-encode, and the spans must
  not overlap in display or decode order after the shift.
- Audio cannot be cut inside an AAC packet (1024 samples, 21 ms at 48 kHz), so it is laid
  without holes: each span contributes the packets from the one starting nearest to where the
  audio written so far ends, through the last one whose middle lies before the span's end. At
  every span boundary the audio is thus within half a packet of its capture time; the error
  does not add up over spans. The recording's audio must cover the span without holes.

Smart cutting (re-encoding from a start inside a GOP to the next keyframe and copying the
rest) is not done: its pictures would need the recording's exact SPS/PPS, which an encoder
other than the camera's cannot promise, and an MP4 holds one set. Such ranges re-encode.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.video.stream import VideoStream

from sparc_video.media.safe_open import FILE_FORMATS, audio_stream, open_file, video_stream
from workers.pipeline.join.spec import (
    EPSILON_S,
    JoinMethod,
    JoinProgress,
    JoinResult,
    JoinSegment,
    JoinSpec,
    segment_times,
)
from workers.pipeline.media import decode_video

if TYPE_CHECKING:
    from workers.pipeline.media import AnyPacket

# What an MP4 holds as copied and a decoder of the joined video reads without surprises.
COPY_FORMATS = (FILE_FORMATS[0],)  # the mov/mp4 demuxer
COPY_VIDEO_CODECS = ("h264", "hevc")
COPY_AUDIO_CODECS = ("aac",)
# Packets looked at to find where a recording's video starts (as the re-encode does).
ORIGIN_PACKETS = 65
COPY = JoinMethod("copy")


@dataclass(frozen=True)
class _Video:
    pts: int
    dts: int
    key: bool


@dataclass(frozen=True)
class _Audio:
    pts: int
    duration: int


@dataclass(frozen=True)
class SpanCopy:
    """What to copy of one span: the recording's video and audio packets by their position
    among that stream's packets, and what to subtract from their timestamps."""

    path: Path
    video: range
    video_shift: int
    audio: range
    audio_shift: int


@dataclass(frozen=True)
class CopyPlan:
    spans: tuple[SpanCopy, ...]
    # The first recording, whose stream parameters the joined video takes.
    template: Path


class NotCopyable(Exception):
    """Why a range cannot be joined by stream copy (the caller re-encodes it)."""


def plan_copy(spec: JoinSpec) -> CopyPlan:
    """Check that every cut can be honoured by copying packets; NotCopyable says why not.

    Reads each recording's packets (no decoding), which costs a fraction of a re-encode."""
    if any(segment.path is None for segment in spec.segments):
        raise NotCopyable("a gap is shown as a slate, which has to be encoded")
    spans = [(at_s, s) for at_s, s in segment_times(spec) if s.path is not None]
    paths = [s.path for _, s in spans if s.path is not None]
    if not paths:
        raise NotCopyable("no recording span")
    # Parameters first: telling them apart costs no more than opening the files.
    first = _parameters(paths[0])
    for path in paths[1:]:
        these = _parameters(path)
        if these != first:
            raise NotCopyable(
                f"{path.name} differs from the first recording in its {_difference(first, these)}"
            )
    copies: list[SpanCopy] = []
    # The last span's last decode and greatest presentation time, in the joined video.
    last: tuple[int, int] | None = None
    audio_end = 0  # audio written so far, in the audio time base
    for at_s, segment in spans:
        assert segment.path is not None
        with open_file(segment.path) as container:
            vs = video_stream(container)
            audio = audio_stream(container)
            video, sound = _packet_lists(container, vs, audio)
        assert vs.time_base is not None
        copy = _span_video(segment, at_s, video, vs.time_base)
        kept = [video[i] for i in copy.video]
        if kept:
            first_dts = kept[0].dts - copy.video_shift
            first_pts = min(p.pts for p in kept) - copy.video_shift
            if last is not None and (first_dts <= last[0] or first_pts <= last[1]):
                raise NotCopyable(
                    f"the span of {segment.path.name} would overlap the one before it"
                )
            last = (kept[-1].dts - copy.video_shift, max(p.pts for p in kept) - copy.video_shift)
        if audio is not None:
            assert audio.time_base is not None
            origin = _origin(video, vs.time_base)
            copy, audio_end = _span_audio(
                copy, segment, at_s, sound, audio.time_base, origin, audio_end
            )
        copies.append(copy)
    if last is None:
        raise NotCopyable("no picture inside the range")
    return CopyPlan(tuple(copies), template=copies[0].path)


def copy_join(plan: CopyPlan, spec: JoinSpec, dst: Path, report: JoinProgress) -> JoinResult:
    """Write the planned packets into `dst` (MP4), untouched but for their timestamps."""
    total = spec.duration_s
    offsets = tuple(at_s for at_s, _ in segment_times(spec))
    with av.open(str(dst), "w", format="mp4") as out:
        with open_file(plan.template) as container:
            template = video_stream(container)
            video = out.add_stream_from_template(template)
            template_audio = audio_stream(container)
            sound = (
                out.add_stream_from_template(template_audio) if template_audio is not None else None
            )
        spans = [(at, s.duration_s) for at, s in segment_times(spec) if s.path is not None]
        for copy, (at_s, duration_s) in zip(plan.spans, spans, strict=True):
            with open_file(copy.path) as container:
                vs = video_stream(container)
                audio = audio_stream(container) if sound is not None else None
                assert vs.time_base is not None
                count = video_seen = audio_seen = 0
                for kind, index, packet in _packets(container, vs, audio):
                    if kind == "video":
                        video_seen = index + 1
                        if index in copy.video:
                            assert packet.pts is not None and packet.dts is not None
                            packet.pts -= copy.video_shift
                            packet.dts -= copy.video_shift
                            packet.stream = video
                            out.mux(packet)
                            count += 1
                            if count % 50 == 0:
                                done = float(packet.pts * vs.time_base)
                                report(COPY, min(total, done), total)
                    else:
                        audio_seen = index + 1
                        if index in copy.audio and sound is not None:
                            assert packet.pts is not None
                            packet.pts -= copy.audio_shift
                            packet.dts = packet.pts
                            packet.stream = sound
                            out.mux(packet)
                    # Audio and video interleave only roughly: go on until both are done.
                    if video_seen >= copy.video.stop and (
                        audio is None or audio_seen >= copy.audio.stop
                    ):
                        break
            report(COPY, at_s + duration_s, total)
    return JoinResult(dst, offsets, COPY)


def _packets(
    container: InputContainer, vs: VideoStream, audio: AudioStream | None
) -> Iterator[tuple[str, int, AnyPacket]]:
    """(kind, index among that stream's packets, packet) in file order; the demuxer's empty
    end-of-stream packets are not counted."""
    streams = [vs] + ([audio] if audio is not None else [])
    counts = {"video": 0, "audio": 0}
    for packet in container.demux(*streams):
        if packet.size == 0:
            continue
        kind = "video" if packet.stream.index == vs.index else "audio"
        index = counts[kind]
        counts[kind] += 1
        yield kind, index, packet


def _packet_lists(
    container: InputContainer, vs: VideoStream, audio: AudioStream | None
) -> tuple[list[_Video], list[_Audio]]:
    video: list[_Video] = []
    sound: list[_Audio] = []
    for kind, _, packet in _packets(container, vs, audio):
        if packet.pts is None or packet.dts is None:
            raise NotCopyable(f"a {kind} packet without a timestamp")
        if kind == "video":
            video.append(_Video(packet.pts, packet.dts, packet.is_keyframe))
        else:
            if packet.duration is None or packet.duration <= 0:
                raise NotCopyable("an audio packet without a duration")
            sound.append(_Audio(packet.pts, packet.duration))
    return video, sound


def _origin(video: list[_Video], time_base: Fraction) -> float:
    """Time of the first video frame, which a recording's offsets count from (as the
    re-encode's `_origin`: the smallest of the first packets' times)."""
    head = video[:ORIGIN_PACKETS]
    return float(min(p.pts for p in head) * time_base) if head else 0.0


def _span_video(
    segment: JoinSegment, at_s: float, video: list[_Video], time_base: Fraction
) -> SpanCopy:
    assert segment.path is not None
    origin = _origin(video, time_base)
    begin = segment.source_offset_s
    end = begin + segment.duration_s
    # The same bounds as the re-encode: a frame within EPSILON_S of a cut counts as inside it.
    kept = [
        i
        for i, p in enumerate(video)
        if begin - EPSILON_S <= float(p.pts * time_base) - origin < end - EPSILON_S
    ]
    shift = round((origin + begin - at_s) / time_base)
    if not kept:  # shorter than a frame: nothing of it shows, in either way of joining
        return SpanCopy(segment.path, range(0), shift, range(0), 0)
    name = segment.path.name
    if not video[kept[0]].key:
        raise NotCopyable(f"the cut at {begin:.3f} s into {name} is not at a keyframe")
    if kept != list(range(kept[0], kept[-1] + 1)):
        raise NotCopyable(
            f"the frames of {name} from {begin:.3f} s to {end:.3f} s are not a run of packets "
            "in decode order (a cut inside a group of B-frames, or open-GOP leading pictures)"
        )
    return SpanCopy(segment.path, range(kept[0], kept[-1] + 1), shift, range(0), 0)


def _span_audio(
    copy: SpanCopy,
    segment: JoinSegment,
    at_s: float,
    sound: list[_Audio],
    time_base: Fraction,
    origin: float,
    audio_end: int,
) -> tuple[SpanCopy, int]:
    """The span's audio packets and shift, and where the audio then ends."""
    name = copy.path.name
    begin = segment.source_offset_s
    span_end_s = at_s + segment.duration_s

    def placed(p: _Audio) -> float:  # where its capture time puts it in the joined video
        return at_s + float(p.pts * time_base) - origin - begin

    written_s = float(audio_end * time_base)
    if not sound:
        raise NotCopyable(f"{name} has an audio stream without packets")
    first = min(range(len(sound)), key=lambda i: abs(placed(sound[i]) - written_s))
    if abs(placed(sound[first]) - written_s) > float(sound[first].duration * time_base) / 2:
        raise NotCopyable(f"the audio of {name} does not cover {begin:.3f} s")
    last = first
    while True:
        packet = sound[last]
        if placed(packet) + float(packet.duration * time_base) / 2 >= span_end_s:
            break  # this one's middle is past the span: the next span's audio starts here
        if last + 1 == len(sound):
            last += 1
            end_s = placed(packet) + float(packet.duration * time_base)
            if end_s < span_end_s - float(packet.duration * time_base) / 2:
                raise NotCopyable(f"the audio of {name} ends before the span does")
            break
        if sound[last + 1].pts != packet.pts + packet.duration:
            raise NotCopyable(f"the audio of {name} has a hole or an overlap")
        last += 1
    taken = range(first, last)
    shift = sound[first].pts - audio_end
    audio_end += sum(sound[i].duration for i in taken)
    return (
        SpanCopy(copy.path, copy.video, copy.video_shift, taken, shift),
        audio_end,
    )


def _parameters(path: Path) -> tuple[tuple[str, object], ...]:
    """What two recordings must share for their packets to go into one stream (labelled, so
    that a refusal can name the difference)."""
    with open_file(path) as container:
        return _stream_parameters(path, container)


def _stream_parameters(path: Path, container: InputContainer) -> tuple[tuple[str, object], ...]:
    if container.format.name not in COPY_FORMATS:
        raise NotCopyable(f"{path.name} is {container.format.name.split(',')[0]}, not MP4/MOV")
    vs = video_stream(container)
    cc = vs.codec_context
    if cc.name not in COPY_VIDEO_CODECS:
        raise NotCopyable(f"video codec {cc.name} is not copied (only H.264/HEVC)")
    params: list[tuple[str, object]] = [
        ("video codec", cc.name),
        ("video profile", cc.profile),
        ("size", (cc.width, cc.height)),
        ("pixel format", cc.pix_fmt),
        ("pixel aspect", cc.sample_aspect_ratio),
        ("codec parameters (SPS/PPS)", bytes(cc.extradata or b"")),
        ("video time base", vs.time_base),
        ("codec tag", cc.codec_tag),
        ("colour", (cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc)),
        ("field order", cc.field_order),
        # Rotation is stream side data the joined stream takes from the first recording.
        ("rotation", _rotation(container, vs)),
    ]
    audio = audio_stream(container)
    if audio is None:
        params.append(("audio", None))
    else:
        ac = audio.codec_context
        if ac.name not in COPY_AUDIO_CODECS:
            raise NotCopyable(f"audio codec {ac.name} is not copied (only AAC)")
        params += [
            ("audio codec", ac.name),
            ("audio profile", ac.profile),
            ("sample rate", ac.sample_rate),
            ("channels", ac.layout.nb_channels),
            ("audio codec parameters", bytes(ac.extradata or b"")),
            ("audio time base", audio.time_base),
        ]
    return tuple(params)


def _rotation(container: InputContainer, vs: VideoStream) -> float:
    """The display matrix's rotation, which only a decoded frame tells PyAV."""
    for packet in container.demux(vs):
        for frame in decode_video(vs, packet):
            return 0.0 if math.isnan(frame.rotation) else float(frame.rotation)
    return 0.0


def _difference(
    first: tuple[tuple[str, object], ...], other: tuple[tuple[str, object], ...]
) -> str:
    firsts, others = dict(first), dict(other)
    names = [k for k in {**firsts, **others} if firsts.get(k) != others.get(k)]
    return ", ".join(names) or "streams"
