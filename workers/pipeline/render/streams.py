"""Seeking, audio cutting, frame-rate and clock helpers shared by the encode and copy passes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import av
import av.error
import numpy as np
from av.audio.frame import AudioFrame
from av.container import InputContainer, OutputContainer
from av.video.stream import VideoStream

from sparc_video.media.codecs import Container
from workers.pipeline.media import decode_video, undecodable

if TYPE_CHECKING:
    from workers.pipeline.media import AnyPacket


_P = TypeVar("_P")

LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG
# How far before the start to seek when a seek lands after it (MPEG-TS seeks by timestamp, and
# its first decodable frame can be later); the last one (from the beginning) always works.
SEEK_BACK_OFF_S = (0.0, 2.0, 10.0, 60.0, float("inf"))


class AudioMuxer:
    """Muxes encoded audio. AVI keeps no audio timestamps, only order, and refuses the negative
    ones of an encoder's priming samples: there the audio is shifted to start at 0."""

    def __init__(self, out: OutputContainer, container: Container) -> None:
        self._out = out
        self._shift: int | None = None if container.format == "avi" else 0

    def __call__(self, packets: list[AnyPacket]) -> None:
        for packet in packets:
            if self._shift is None:
                self._shift = max(0, -(packet.dts or 0))
            if self._shift:
                if packet.dts is not None:
                    packet.dts += self._shift
                if packet.pts is not None:
                    packet.pts += self._shift
            self._out.mux(packet)


def seek(inp: InputContainer, vs: VideoStream, target_s: float, frame_s: float) -> None:
    """Seek so that decoding starts at or before `target_s` (container time)."""
    time_base = vs.time_base or Fraction(1, av.time_base)
    for back_s in SEEK_BACK_OFF_S:
        seek_s = max(0.0, target_s - back_s)
        seek_to(inp, vs, seek_s, time_base)
        first = first_frame_time(inp, vs)
        if seek_s == 0.0 or (first is not None and first <= target_s + frame_s / 2):
            seek_to(inp, vs, seek_s, time_base)
            return


def seek_keyframe(inp: InputContainer, vs: VideoStream, start_s: float, origin_s: float) -> float:
    """Seek to the keyframe at or before `start_s` (media time); returns its media time."""
    time_base = vs.time_base or Fraction(1, av.time_base)
    target_s = start_s + origin_s
    found = 0.0
    for back_s in SEEK_BACK_OFF_S:
        seek_s = max(0.0, target_s - back_s)
        seek_to(inp, vs, seek_s, time_base)
        key = first_keyframe_time(inp, vs)
        if seek_s == 0.0 or (key is not None and key <= target_s + 1e-6):
            found = key - origin_s if key is not None else 0.0
            seek_to(inp, vs, seek_s, time_base)
            break
    return max(0.0, found)


def seek_to(inp: InputContainer, vs: VideoStream, seek_s: float, time_base: Fraction) -> None:
    try:
        # Lands on the keyframe at or before the time; PyAV flushes the decoders.
        inp.seek(int(seek_s / time_base), stream=vs, backward=True)
    except av.error.FFmpegError:
        # No index to seek by: rewind and decode forward instead.
        try:
            inp.seek(0)
        except av.error.FFmpegError as exc:
            raise undecodable(exc) from exc


def first_frame_time(inp: InputContainer, vs: VideoStream) -> float | None:
    with contextlib.suppress(av.error.InvalidDataError):
        for packet in inp.demux(vs):
            for frame in decode_video(vs, packet):
                if frame.pts is not None and frame.time_base is not None and not frame.is_corrupt:
                    return float(frame.pts * frame.time_base)
    return None


def first_keyframe_time(inp: InputContainer, vs: VideoStream) -> float | None:
    with contextlib.suppress(av.error.InvalidDataError):
        for packet in inp.demux(vs):
            if packet.is_keyframe and packet.pts is not None and packet.time_base is not None:
                return float(packet.pts * packet.time_base)
    return None


def cut_audio(
    frame: AudioFrame, at_s: float, length_s: float | None
) -> tuple[AudioFrame, float] | None:
    """The part of `frame` (starting at `at_s`) inside [0, length_s), or None."""
    rate = frame.sample_rate
    samples = frame.samples
    head = max(0, round(-at_s * rate))
    tail = samples if length_s is None else min(samples, round((length_s - at_s) * rate))
    if tail <= head:
        return None
    if head == 0 and tail == samples:
        return frame, at_s
    data: Any = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if frame.format.is_planar:
        part = data[:, head:tail]
    else:
        part = data[:, head * channels : tail * channels]
    cut = AudioFrame.from_ndarray(np.ascontiguousarray(part), frame.format.name, frame.layout)
    cut.sample_rate = rate
    return cut, at_s + head / rate


class FrameRate(Generic[_P]):
    """Frame rate conversion as FFmpeg's `fps` filter does it: output frame k shows the source
    frame on screen at k / rate (so frames are dropped or repeated). Pictures are anything
    standing for a frame."""

    def __init__(self, rate: Fraction, length_s: float | None) -> None:
        self._rate = rate
        self.frame_s = 1 / float(rate)
        self._length_s = length_s
        self._held: tuple[_P, float, float] | None = None
        self._next = 0

    def push(self, picture: _P, at_s: float, duration_s: float) -> Iterator[tuple[_P, float]]:
        if self._held is not None:
            yield from self._emit_until(at_s)
        self._held = (picture, at_s, duration_s)

    def flush(self) -> Iterator[tuple[_P, float]]:
        """The last frame, for as long as it is shown."""
        if self._held is not None:
            yield from self._emit_until(self._held[1] + self._held[2])
            self._held = None

    def _emit_until(self, until_s: float) -> Iterator[tuple[_P, float]]:
        assert self._held is not None
        picture = self._held[0]
        while True:
            at_s = float(self._next / self._rate)
            if at_s >= until_s - 1e-9:
                return
            if self._length_s is not None and at_s >= self._length_s - 1e-9:
                return
            self._next += 1
            yield picture, at_s


class Clock:
    """Maps frame times (seconds from the output's start) to output timestamps.

    Times are kept (variable frame rates survive), except that a time within the source's
    rounding of the nominal frame grid is put exactly on it: Matroska and WebM store
    milliseconds, and frames at 33, 67, 100 ms would otherwise turn 30 fps into 29.99x fps.
    Without `subdivide` every frame goes on the grid.
    """

    # Output ticks per nominal frame: resolution for frames off the grid.
    SUBDIVISIONS = 100

    def __init__(
        self, rate: Fraction | None, src_time_base: Fraction | None, *, subdivide: bool = True
    ) -> None:
        self._rate = rate if rate is not None and 1 <= rate <= 240 else None
        self._ticks = self.SUBDIVISIONS if subdivide else 1
        self.time_base = (
            1 / (self._rate * self._ticks)
            if self._rate is not None
            else src_time_base or Fraction(1, 90_000)
        )
        self.frame_s = 1 / float(self._rate) if self._rate is not None else 1 / 25
        self._tolerance_s = max(float(src_time_base or 0), 0.001)
        if not subdivide:
            self._tolerance_s = self.frame_s / 2
        self._last_pts: int | None = None
        self.next_s = 0.0

    def place(self, start_s: float, duration_s: float) -> tuple[int, int] | None:
        """(pts, duration) in `time_base`, or None for a frame to drop."""
        # Before the presentation start: an edit list cuts it.
        if start_s < -self.frame_s / 2:
            return None
        pts = round(max(0.0, start_s) / self.time_base)
        if self._rate is not None:
            index = round(start_s * self._rate)
            if abs(index / self._rate - start_s) <= self._tolerance_s:
                pts = index * self._ticks
        # Encoders and muxers need strictly increasing times; the ffmpeg tool drops such
        # frames too.
        if self._last_pts is not None and pts <= self._last_pts:
            return None
        self._last_pts = pts
        self.next_s = start_s + duration_s
        return pts, max(1, round(duration_s / self.time_base))


def close_after_failure(out: OutputContainer) -> None:
    # Closing writes the trailer of a half-written file, which can fail too; the error that
    # stopped us is the one to report, and the file is deleted anyway.
    with contextlib.suppress(av.error.FFmpegError):
        out.close()
