"""SDP offer/answer (RFC 3264) for one audio stream of G.711 plus telephone-event.

Only what a SIP trunk or phone sends for a voice call is read; anything we cannot use makes the offer
unacceptable (the signalling layer answers 488) rather than being guessed at.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from dataclasses import dataclass, field

from callplane.media.g711 import PayloadType

TELEPHONE_EVENT_DEFAULT_PT = 101
_RTPMAP = re.compile(r"^(\d+)\s+([\w.-]+)/(\d+)(?:/\d+)?$")
_session_versions = itertools.count(1)


class SdpError(ValueError):
    """The session description cannot be used for a G.711 audio call."""


@dataclass(slots=True)
class AudioDescription:
    """The part of an SDP that the media plane acts on."""

    address: str
    port: int
    payload_types: list[int]
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> "encoding/rate", lower case
    direction: str = "sendrecv"
    ptime_ms: int | None = None

    @property
    def telephone_event_pt(self) -> int | None:
        for pt in self.payload_types:
            if self.rtpmap.get(pt, "").startswith("telephone-event/8000"):
                return pt
        return None

    def codec_pts(self) -> list[PayloadType]:
        """The offered G.711 codecs in the far end's order of preference."""
        found: list[PayloadType] = []
        for pt in self.payload_types:
            name = self.rtpmap.get(pt)
            if pt == PayloadType.PCMU and (name is None or name.startswith("pcmu/")):
                found.append(PayloadType.PCMU)
            elif pt == PayloadType.PCMA and (name is None or name.startswith("pcma/")):
                found.append(PayloadType.PCMA)
        return found


def parse(text: str) -> AudioDescription:
    """Read the first audio m-line (and its connection address) out of an SDP body."""
    session_address: str | None = None
    audio: AudioDescription | None = None
    media_address: str | None = None
    in_audio = False
    saw_version = False
    for raw_line in text.replace("\r\n", "\n").split("\n"):
        line = raw_line.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"not an SDP line: {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "v":
            saw_version = True
        elif kind == "c":
            address = _connection_address(value)
            if audio is None and not in_audio:
                session_address = address
            elif in_audio:
                media_address = address
        elif kind == "m":
            if audio is not None:
                in_audio = False  # only the first audio stream is used; later m-lines are ignored
                continue
            parts = value.split()
            if len(parts) < 4:
                raise SdpError(f"short m-line: {value!r}")
            if parts[0] != "audio":
                continue
            if not parts[2].upper().startswith("RTP/AVP"):
                raise SdpError(f"unsupported transport {parts[2]!r}")
            try:
                port = int(parts[1].split("/")[0])
                payload_types = [int(pt) for pt in parts[3:]]
            except ValueError as error:
                raise SdpError(f"bad m-line: {value!r}") from error
            if not 0 <= port <= 65535 or any(not 0 <= pt <= 127 for pt in payload_types):
                raise SdpError(f"m-line out of range: {value!r}")
            audio = AudioDescription(address="", port=port, payload_types=payload_types)
            in_audio = True
        elif kind == "a" and in_audio and audio is not None:
            _apply_attribute(audio, value)
    if not saw_version:
        raise SdpError("no v= line")
    if audio is None:
        raise SdpError("no audio stream")
    connection = media_address or session_address
    if connection is None:
        raise SdpError("no connection address")
    audio.address = connection
    return audio


def _connection_address(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c-line: {value!r}")
    address = parts[2].split("/")[0]
    try:
        ipaddress.ip_address(address)
    except ValueError as error:
        raise SdpError(f"c-line address is not an IP address: {address!r}") from error
    return address


def _apply_attribute(audio: AudioDescription, value: str) -> None:
    name, _, rest = value.partition(":")
    if name == "rtpmap":
        match = _RTPMAP.match(rest.strip())
        if match is None:
            raise SdpError(f"bad rtpmap: {rest!r}")
        audio.rtpmap[int(match.group(1))] = f"{match.group(2).lower()}/{match.group(3)}"
    elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
        audio.direction = name
    elif name == "ptime":
        try:
            audio.ptime_ms = int(float(rest))
        except ValueError:
            pass  # a broken ptime is harmless: we always send 20 ms


@dataclass(slots=True, frozen=True)
class Negotiated:
    """What both sides agreed on: the one codec and the telephone-event PT (None when the far end has none)."""

    codec: PayloadType
    telephone_event_pt: int | None
    remote_address: str
    remote_port: int
    direction: str


def negotiate_answer(offer: AudioDescription, *, preferred: tuple[PayloadType, ...]) -> Negotiated:
    """Pick the far end's most preferred codec that we support, as RFC 3264 asks of an answerer."""
    offered = offer.codec_pts()
    usable = [pt for pt in offered if pt in preferred]
    if not usable:
        raise SdpError(f"no common codec in {offer.payload_types}")
    return Negotiated(
        codec=usable[0],
        telephone_event_pt=offer.telephone_event_pt,
        remote_address=offer.address,
        remote_port=offer.port,
        direction=offer.direction,
    )


def accept_answer(answer: AudioDescription, *, offered: tuple[PayloadType, ...]) -> Negotiated:
    """Read the far end's answer to our offer; it must choose one of the codecs we offered."""
    usable = [pt for pt in answer.codec_pts() if pt in offered]
    if not usable:
        raise SdpError(f"answer chose none of our codecs: {answer.payload_types}")
    return Negotiated(
        codec=usable[0],
        telephone_event_pt=answer.telephone_event_pt,
        remote_address=answer.address,
        remote_port=answer.port,
        direction=answer.direction,
    )


_REVERSE_DIRECTION = {"sendonly": "recvonly", "recvonly": "sendonly"}


def build(
    *,
    address: str,
    port: int,
    codecs: tuple[PayloadType, ...],
    telephone_event_pt: int | None = TELEPHONE_EVENT_DEFAULT_PT,
    session_id: int,
    direction: str = "sendrecv",
) -> str:
    """Our offer or answer; an answer passes the single agreed codec and mirrors the offer's direction."""
    family = "IP6" if ":" in address else "IP4"
    payload_types = [str(int(pt)) for pt in codecs]
    if telephone_event_pt is not None:
        payload_types.append(str(telephone_event_pt))
    lines = [
        "v=0",
        f"o=callplane {session_id} {next(_session_versions)} IN {family} {address}",
        "s=callplane",
        f"c=IN {family} {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(payload_types)}",
    ]
    for pt in codecs:
        lines.append(f"a=rtpmap:{int(pt)} {pt.name}/8000")
    if telephone_event_pt is not None:
        lines.append(f"a=rtpmap:{telephone_event_pt} telephone-event/8000")
        lines.append(f"a=fmtp:{telephone_event_pt} 0-16")
    lines.append("a=ptime:20")
    lines.append(f"a={_REVERSE_DIRECTION.get(direction, direction)}")
    return "\r\n".join(lines) + "\r\n"
