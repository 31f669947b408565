"""The stream-copy video pass: remux (fast trim) of the packets, audio copied or re-encoded."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from av.audio.stream import AudioStream
from av.bitstream import BitStreamFilterContext
from av.container import InputContainer, OutputContainer
from av.video.stream import VideoStream

from sparc_video.core.errors import MediaError
from sparc_video.media.safe_open import audio_stream, video_stream
from workers.pipeline.encoders import (
    AudioEncoder,
    add_audio_stream,
)
from workers.pipeline.media import decode_audio, start_time_s
from workers.pipeline.progress import ProgressReporter

if TYPE_CHECKING:
    from workers.pipeline.media import AnyPacket
from workers.pipeline.render.spec import VideoPass
from workers.pipeline.render.streams import (
    AudioMuxer,
    cut_audio,
    seek_keyframe,
)


class CopyPass:
    """Stream copy from the keyframe at or before the start. MP4/MOV keep times relative to
    the requested start, so the frames before it get negative times and the muxer writes an
    edit list that hides them; other containers start at the keyframe."""

    def __init__(
        self,
        inp: InputContainer,
        out: OutputContainer,
        p: VideoPass,
        end_s: float | None,
        reporter: ProgressReporter,
    ) -> None:
        self._inp, self._out, self._p, self._reporter = inp, out, p, reporter
        self._vs = video_stream(inp)
        self._audio = audio_stream(inp) if p.audio is not None else None
        self._origin_s = start_time_s(inp)
        self._end_s = end_s
        rate = self._vs.average_rate or self._vs.guessed_rate
        self._frame_s = 1 / float(rate) if rate else 1 / 25
        self._ovs = out.add_stream_from_template(self._vs, opaque=True)
        self._bsf: BitStreamFilterContext | None = None
        self._frame_clock = p.container.format == "avi"
        self._last_dts = -(2**62)
        self._video_done = False
        self._audio_done = False
        self._frames = 0
        self._zero_s = self._audio_from_s = 0.0
        if p.container.format == "avi":
            # AVI has no timestamps of its own, only a frame rate, and wants H.264 in Annex B.
            if rate:
                self._ovs.time_base = 1 / rate
            if self._vs.codec_context.name == "h264":
                self._bsf = BitStreamFilterContext("h264_mp4toannexb", self._vs, self._ovs)
            # The source's codec tag (copied again by the bitstream filter) may mean nothing
            # in AVI (MPEG-TS's stream type, say): let the muxer choose its own.
            ctx = self._ovs.codec_context
            if ctx is not None:
                ctx.codec_tag = "\0\0\0\0"
        self._oas: AudioStream | None = None
        self._audio_mux = AudioMuxer(out, p.container)
        self._audio_copy = False
        self._audio_encode: AudioEncoder | None = None
        if self._audio is not None:
            if p.audio == "copy":
                copied = out.add_stream_from_template(self._audio, opaque=True)
                assert isinstance(copied, AudioStream)
                self._oas, self._audio_copy = copied, True
            elif isinstance(p.audio, AudioEncoder):
                src = self._audio.codec_context
                self._oas = add_audio_stream(out, p.audio, src.sample_rate, src.layout.nb_channels)
                self._audio_encode = p.audio
        self._audio_done = self._oas is None
        self._audio_next_s = 0.0

    def run(self) -> float:
        """Copy; returns the source time of the first keyframe copied."""
        start_s = self._p.start_s
        if start_s > 0:
            seek_keyframe(self._inp, self._vs, start_s, self._origin_s)
        streams: list[VideoStream | AudioStream] = [self._vs]
        if self._audio is not None and self._oas is not None:
            streams.append(self._audio)
        # Until the start, packets are held from the latest keyframe at or before it, wherever
        # the seek landed (MPEG-TS seeks by timestamp, and the back-off lands early).
        held: list[AnyPacket] = []
        first_key_s: float | None = None if start_s > 0 else 0.0
        flowing = start_s <= 0
        if flowing:
            self._begin(0.0)
        for packet in self._inp.demux(streams):
            if packet.dts is None or packet.time_base is None:
                continue  # flush packets
            if not flowing:
                video = packet.stream is self._vs
                ts = packet.pts if packet.pts is not None else packet.dts
                at_s = float(ts * packet.time_base) - self._origin_s
                dts_s = float(packet.dts * packet.time_base) - self._origin_s
                if video and packet.is_keyframe and at_s <= start_s + 1e-6:
                    held, first_key_s = [packet], at_s
                    continue
                reached = video and (dts_s >= start_s or (packet.is_keyframe and at_s > start_s))
                if not reached:
                    if first_key_s is not None:
                        held.append(packet)
                    continue
                if first_key_s is None:  # no keyframe before the start: begin at this one
                    if not packet.is_keyframe:
                        continue
                    first_key_s = at_s
                flowing = True
                self._begin(first_key_s)
                for earlier in held:
                    self._copy(earlier)
                held = []
            if self._copy(packet):
                break
        if not flowing and first_key_s is not None:  # the end came first
            self._begin(first_key_s)
            for earlier in held:
                self._copy(earlier)
        if self._frames == 0:
            raise MediaError(
                "the source video has no keyframe to start a copy from", reason="UNDECODABLE"
            )
        if self._bsf is not None:
            for extra in self._bsf.filter(None):
                self._mux_filtered(extra)
        if self._audio_encode is not None and self._oas is not None:
            self._audio_mux(self._oas.encode(None))
        return first_key_s or 0.0

    def _begin(self, first_key_s: float) -> None:
        """Output time 0 is the requested start (MP4/MOV: an edit list hides what is before it)
        or the first keyframe."""
        edit_lists = self._p.container.edit_lists
        self._zero_s = self._p.start_s if edit_lists else first_key_s
        self._audio_from_s = self._p.start_s if edit_lists else first_key_s

    def _copy(self, packet: AnyPacket) -> bool:
        """Copy (or for audio maybe re-encode) one packet; True once both streams are done."""
        assert packet.dts is not None and packet.time_base is not None
        at_s = float(packet.dts * packet.time_base) - self._origin_s
        if packet.stream is self._vs:
            if self._video_done:
                return self._audio_done
            # Cut in decode order: every frame shown before the end keeps what it needs.
            if self._end_s is not None and at_s >= self._end_s:
                self._video_done = True
                return self._audio_done
            self._shift(packet, self._zero_s)
            self._mux_video(packet)
            self._frames += 1
            self._reporter.tick(at_s - self._p.start_s, frames=1)
            return False
        if self._audio_done:
            return self._video_done
        if self._end_s is not None and at_s >= self._end_s:
            self._audio_done = True
            return self._video_done
        end_at_s = at_s + float((packet.duration or 0) * packet.time_base)
        if end_at_s <= self._audio_from_s:
            return False
        if self._audio_copy and self._oas is not None:
            self._shift(packet, self._zero_s)
            packet.stream = self._oas
            self._out.mux(packet)
        else:
            self._encode_audio(packet, self._zero_s, self._audio_from_s)
        return False

    def _shift(self, packet: AnyPacket, zero_s: float) -> None:
        assert packet.time_base is not None
        ticks = round((zero_s + self._origin_s) / packet.time_base)
        if packet.pts is not None:
            packet.pts -= ticks
        if packet.dts is not None:
            packet.dts -= ticks

    def _mux_video(self, packet: AnyPacket) -> None:
        if self._bsf is None:
            self._mux_filtered(packet)
            return
        for filtered in self._bsf.filter(packet):
            self._mux_filtered(filtered)

    def _mux_filtered(self, packet: AnyPacket) -> None:
        packet.stream = self._ovs
        if self._frame_clock and packet.dts is not None and packet.time_base is not None:
            # AVI counts frames: times on its frame grid, strictly increasing.
            out_base = self._ovs.time_base
            assert out_base is not None
            factor = packet.time_base / out_base
            delay = max(0, round((packet.pts - packet.dts) * factor)) if packet.pts else 0
            dts = max(self._last_dts + 1, round(packet.dts * factor))
            duration = max(1, round(packet.duration * factor)) if packet.duration else 0
            packet.time_base = out_base
            packet.dts, packet.pts, packet.duration = dts, dts + delay, duration
            self._last_dts = dts
        self._out.mux(packet)

    def _encode_audio(self, packet: AnyPacket, zero_s: float, from_s: float) -> None:
        assert self._audio is not None and self._oas is not None
        length = None if self._end_s is None else self._end_s - from_s
        for frame in decode_audio(self._audio, packet):
            if frame.pts is None or frame.time_base is None:
                continue
            at_s = float(frame.pts * frame.time_base) - self._origin_s - from_s
            cut = cut_audio(frame, at_s, length)
            if cut is None:
                continue
            frame, at_s = cut
            rate = frame.sample_rate
            if at_s < self._audio_next_s - 0.5 / rate:
                continue
            self._audio_next_s = at_s + frame.samples / rate
            frame.time_base = Fraction(1, rate)
            frame.pts = round((at_s + from_s - zero_s) * rate)
            self._audio_mux(self._oas.encode(frame))
