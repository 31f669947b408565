"""RTP payloads and RTCP sender reports, as a camera sends them over RTSP/TCP.

H.264 single NAL units and FU-A fragments (RFC 6184), H.265 single NAL units and FU fragments
(RFC 7798), AAC as mpeg4-generic AAC-hbr with one access unit per packet (RFC 3640), G.711
PCMU (RFC 3551, payload type 0), and sender reports (RFC 3550 §6.4.1)."""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from sparc_video.simulator.clock import ntp_timestamp

MTU = 1400
_START_CODE = re.compile(b"\x00\x00\x01")


@dataclass(frozen=True)
class Track:
    """One media of the SDP: its payload type, clock rate and SSRC."""

    kind: str  # "video" or "audio"
    codec: str  # "h264", "h265", "aac", "pcmu"
    payload_type: int
    clock_rate: int
    ssrc: int
    fmtp: str = ""
    channels: int = 1

    def sdp(self, control: str) -> str:
        encoding = {"h264": "H264", "h265": "H265", "aac": "MPEG4-GENERIC", "pcmu": "PCMU"}
        rtpmap = f"{encoding[self.codec]}/{self.clock_rate}"
        if self.kind == "audio" and self.codec == "aac":
            rtpmap += f"/{self.channels}"
        lines = [
            f"m={self.kind} 0 RTP/AVP {self.payload_type}",
            f"a=rtpmap:{self.payload_type} {rtpmap}",
        ]
        if self.fmtp:
            lines.append(f"a=fmtp:{self.payload_type} {self.fmtp}")
        lines.append(f"a=control:{control}")
        return "\r\n".join(lines) + "\r\n"


def nal_units(access_unit: bytes) -> list[bytes]:
    """The NAL units of an Annex-B access unit, start codes removed.

    Splitting on the 3-byte start code leaves the leading zero of a 4-byte one (00 00 00 01)
    behind, trailing the previous NAL or alone before the first: trailing zeros are stripped
    and a part that is nothing but zeros is no NAL at all."""
    return [nal for part in _START_CODE.split(access_unit) if (nal := part.rstrip(b"\x00"))]


def h264_kind(nal: bytes) -> int:
    return nal[0] & 0x1F


def h265_kind(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F


def h264_fmtp(nals: list[bytes]) -> str:
    sps = next(n for n in nals if h264_kind(n) == 7)
    pps = next(n for n in nals if h264_kind(n) == 8)
    sets = f"{_b64(sps)},{_b64(pps)}"
    return f"packetization-mode=1;profile-level-id={sps[1:4].hex()};sprop-parameter-sets={sets}"


def h265_fmtp(nals: list[bytes]) -> str:
    found = {h265_kind(n): n for n in nals if h265_kind(n) in (32, 33, 34)}
    return f"sprop-vps={_b64(found[32])};sprop-sps={_b64(found[33])};sprop-pps={_b64(found[34])}"


def aac_fmtp(sample_rate: int, channels: int) -> str:
    rates = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000]
    config = 2 << 11 | rates.index(sample_rate) << 7 | channels << 3  # AAC-LC AudioSpecificConfig
    return (
        "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;"
        f"indexdeltalength=3;config={config:04x}"
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def video_payloads(nal: bytes, codec: str) -> Iterator[bytes]:
    """RTP payloads for one NAL unit: itself, or fragments when larger than the MTU.

    A fragmented NAL always makes at least two fragments: a single FU with both its start and
    end bits set is illegal (RFC 6184 §5.8, RFC 7798 §4.4.3) and FFmpeg's depacketizers drop
    it, so a NAL just over the MTU is cut in halves rather than into one full chunk."""
    if len(nal) <= MTU:
        yield nal
        return
    if codec == "h264":
        head, rest = bytes([(nal[0] & 0xE0) | 28]), nal[1:]
        kind = h264_kind(nal)
    else:
        head, rest = bytes([(nal[0] & 0x81) | 49 << 1, nal[1]]), nal[2:]
        kind = h265_kind(nal)
    count = max(2, -(-len(rest) // MTU))
    size = -(-len(rest) // count)  # even fragments, none over the MTU
    chunks = [rest[i : i + size] for i in range(0, len(rest), size)]
    for index, chunk in enumerate(chunks):
        start = 0x80 if index == 0 else 0
        end = 0x40 if index == len(chunks) - 1 else 0
        yield head + bytes([start | end | kind]) + chunk


def aac_payload(frame: bytes) -> bytes:
    """One AAC access unit behind its AU-headers-length (16 bits) and AU-header (13 + 3)."""
    return struct.pack(">HH", 16, len(frame) << 3) + frame


def rtp_packet(track: Track, sequence: int, timestamp: int, payload: bytes, marker: bool) -> bytes:
    header = struct.pack(
        ">BBHII",
        0x80,
        (0x80 if marker else 0) | track.payload_type,
        sequence & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        track.ssrc,
    )
    return header + payload


def sender_report(
    track: Track, camera_us: int, rtp_timestamp: int, packets: int, octets: int
) -> bytes:
    """An RTCP SR without report blocks: the camera's wall clock paired with an RTP time."""
    ntp = ntp_timestamp(camera_us)
    return struct.pack(
        ">BBHIIIIII",
        0x80,
        200,
        6,
        track.ssrc,
        ntp >> 32,
        ntp & 0xFFFFFFFF,
        rtp_timestamp & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
