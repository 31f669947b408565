"""One self-describing fragmented MP4 segment, written as packets arrive.

The moov (init) is written first and empty (`empty_moov`), then a fragment (moof+mdat) each
time `part_s` of media has gathered or a keyframe starts (`frag_keyframe`, `frag_duration`), and
each fragment goes to the file as soon as it is complete (`flush_packets`): a crash loses at
most one part, and what is on disk up to then plays. The init's user data (`udta`, written with
`use_metadata_tags`) names the stream, the segment's sequence, its start in wall-clock ns and
the clock that start came from, so a segment describes itself and a catalogue can be rebuilt
from storage. FFmpeg leaves the movie's duration at 0 in a fragmented file; `close` writes it
into `mvhd` and `tkhd`, as MediaMTX does.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import av
from av.container import OutputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+use_metadata_tags"
PARTIAL_SUFFIX = ".partial"
# Keys of the metadata in each segment's init.
META_STREAM = "sparc_stream_id"
META_SEQUENCE = "sparc_sequence"
META_START_NS = "sparc_start_ns"
META_CLOCK = "sparc_clock_source"


def audio_refusal(template: Stream) -> str | None:
    """Why an fMP4 cannot carry this audio stream as it is (None when it can)."""
    name = template.codec_context.name if template.codec_context is not None else "unknown"
    probe = av.open(os.devnull, "w", format="mp4")
    try:
        probe.add_stream_from_template(template)
    except ValueError:
        return f"{name} dropped: the MP4 muxer does not carry it"
    finally:
        probe.close()
    return None


class SegmentWriter:
    def __init__(
        self,
        path: Path,
        video: Stream,
        audio: Stream | None,
        metadata: dict[str, str],
        part_s: float,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self._partial = path.with_name(path.name + PARTIAL_SUFFIX)
        self._out: OutputContainer = av.open(
            str(self._partial),
            "w",
            format="mp4",
            options={
                "movflags": MOVFLAGS,
                "frag_duration": str(max(1, int(part_s * 1_000_000))),
                "flush_packets": "1",
            },
        )
        try:
            self._out.metadata.update(metadata)
            self.video = self._out.add_stream_from_template(video)
            ctx = self.video.codec_context
            if size is not None and isinstance(ctx, VideoCodecContext):
                # The camera changed resolution: the template still has the old one.
                ctx.width, ctx.height = size
            self.audio = self._out.add_stream_from_template(audio) if audio else None
        except BaseException:
            self.abort()
            raise
        self.frames = 0

    def write(self, packet: Packet[Stream], stream: Stream, offset: int) -> None:
        """Mux `packet` into `stream` (one of ours), its timestamps moved back by `offset`."""
        if packet.pts is not None:
            packet.pts -= offset
        if packet.dts is not None:
            packet.dts -= offset
        packet.stream = stream
        self._out.mux(packet)
        if stream is self.video:
            self.frames += 1

    def close(self, duration_ns: int) -> int:
        """Finish the file under its final name; its size. Not hashed here: the upload hashes
        the bytes as it stores them (reading the file once, not twice), and the duration
        written into the init at the end would change a hash taken while writing."""
        self._out.close()
        _patch_duration(self._partial, duration_ns)
        self._partial.replace(self.path)
        return self.path.stat().st_size

    def abort(self) -> None:
        with contextlib.suppress(av.error.FFmpegError):
            self._out.close()
        self._partial.unlink(missing_ok=True)


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a segment's init (for checks and for rebuilding a catalogue)."""
    with av.open(str(path)) as container:
        return dict(container.metadata)


def _patch_duration(path: Path, duration_ns: int) -> None:
    """Write the duration into the moov's mvhd and each tkhd (both in the mvhd's timescale)."""
    with path.open("r+b") as f:
        head = f.read(64 * 1024)
        moov = _find(head, b"moov", 0, len(head))
        if moov is None:
            return
        start, end = moov
        mvhd = _find(head, b"mvhd", start + 8, end)
        if mvhd is None:
            return
        version = head[mvhd[0] + 8]
        scale_at = mvhd[0] + (28 if version == 1 else 20)
        timescale = struct.unpack_from(">I", head, scale_at)[0]
        duration = duration_ns * timescale // 1_000_000_000
        fields = [(scale_at + 4, version)]
        position = start + 8
        while (trak := _find(head, b"trak", position, end)) is not None:
            tkhd = _find(head, b"tkhd", trak[0] + 8, trak[1])
            if tkhd is not None:
                tk_version = head[tkhd[0] + 8]
                fields.append((tkhd[0] + (36 if tk_version == 1 else 28), tk_version))
            position = trak[1]
        for offset, field_version in fields:
            f.seek(offset)
            if field_version == 1:
                f.write(struct.pack(">Q", duration))
            else:
                f.write(struct.pack(">I", min(duration, 0xFFFFFFFF)))


def _find(data: bytes, kind: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(start, end) of the first box of `kind` among the boxes in data[start:end]."""
    position = start
    while position + 8 <= end:
        size, name = struct.unpack_from(">I4s", data, position)
        if size < 8:
            return None
        if name == kind:
            return position, position + size
        position += size
    return None
