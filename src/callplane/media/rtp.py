"""RTP (RFC 3550), RFC 4733 telephone-event payloads and the few RTCP packets we send and read.

Wire structs follow the aiortc habit: `parse()` raises `MalformedPacket` on anything that is not the
structure, `__bytes__` writes it back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")
TELEPHONE_EVENT = struct.Struct("!BBH")

DTMF_EVENT_CODES = {**{str(digit): digit for digit in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
DTMF_EVENT_DIGITS = {code: digit for digit, code in DTMF_EVENT_CODES.items()}


class MalformedPacket(ValueError):
    """A datagram that is not a packet of the expected kind; the caller counts and drops it."""


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < RTP_HEADER.size:
            raise MalformedPacket(f"{len(data)} bytes is shorter than an RTP header")
        first, second, sequence_number, timestamp, ssrc = RTP_HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise MalformedPacket(f"RTP version {first >> 6}")
        offset = RTP_HEADER.size + 4 * (first & 0x0F)
        if first & 0x10:  # header extension: 16-bit profile, 16-bit length in words
            if len(data) < offset + 4:
                raise MalformedPacket("truncated header extension")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if first & 0x20:  # padding: the last byte says how much
            end -= data[-1]
        if offset > end:
            raise MalformedPacket("header longer than the packet")
        return cls(
            payload_type=second & 0x7F,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
        )

    def __bytes__(self) -> bytes:
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        header = RTP_HEADER.pack(0x80, second, self.sequence_number & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        return header + self.payload


@dataclass(slots=True, frozen=True)
class TelephoneEvent:
    """One RFC 4733 event packet: which key, whether it ended, how long it has lasted (timestamp units)."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < TELEPHONE_EVENT.size:
            raise MalformedPacket("telephone-event payload shorter than 4 bytes")
        event, flags, duration = TELEPHONE_EVENT.unpack_from(payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def __bytes__(self) -> bytes:
        return TELEPHONE_EVENT.pack(
            self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration & 0xFFFF
        )

    @property
    def digit(self) -> str | None:
        return DTMF_EVENT_DIGITS.get(self.event)


RTCP_SR = 200
RTCP_RR = 201
RTCP_BYE = 203


def is_rtcp(data: bytes) -> bool:
    """RTCP packet types 200-204 sit where RTP keeps marker+PT; used when RTP and RTCP share a port."""
    return len(data) >= 8 and data[0] >> 6 == RTP_VERSION and 200 <= data[1] <= 204


def sender_report(*, ssrc: int, ntp_seconds: float, rtp_timestamp: int, packets_sent: int, octets_sent: int) -> bytes:
    """A bare RTCP SR (no report blocks) so the far end can map our RTP clock to wall time."""
    ntp_high = int(ntp_seconds) & 0xFFFFFFFF
    ntp_low = int((ntp_seconds % 1) * (1 << 32)) & 0xFFFFFFFF
    body = struct.pack(
        "!IIIIII", ssrc, ntp_high, ntp_low, rtp_timestamp & 0xFFFFFFFF, packets_sent & 0xFFFFFFFF, octets_sent
    )
    return struct.pack("!BBH", 0x80, RTCP_SR, len(body) // 4) + body


def rtcp_bye(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x81, RTCP_BYE, 1, ssrc)


def rtcp_packet_types(data: bytes) -> list[int]:
    """Packet types in a compound RTCP datagram; raises MalformedPacket on a broken length chain."""
    types: list[int] = []
    offset = 0
    while offset + 4 <= len(data):
        first, packet_type, words = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != RTP_VERSION:
            raise MalformedPacket("RTCP version")
        types.append(packet_type)
        offset += 4 * (words + 1)
    if offset != len(data) or not types:
        raise MalformedPacket("RTCP length chain does not match the datagram")
    return types
