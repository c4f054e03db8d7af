"""One call's RTP stream: asyncio UDP in, the shared clock out.

Receive decodes into the jitter buffer and turns RFC 4733 packets into digits. On each clock tick the
channel takes its inbound frame (phase 1), then sends whatever its source gives, a bridge peer's
inbound frame, or silence (phase 2), and hands both directions to its recorders.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from callplane.media import g711, rtp
from callplane.media.clock import MediaClock
from callplane.media.g711 import Pcm
from callplane.media.jitter import FRAME_SAMPLES, JitterBuffer
from callplane.media.sdp import Negotiated
from callplane.observability.metrics import MEDIA

log = logging.getLogger(__name__)

DTMF_TONE_FRAMES = 5  # 100 ms of tone per digit
DTMF_END_PACKETS = 3  # RFC 4733 §2.5.1.4: the end packet is sent three times
DTMF_GAP_FRAMES = 4  # 80 ms pause between digits
_RTCP_INTERVAL_TICKS = 250  # 5 s
_NTP_EPOCH_OFFSET = 2_208_988_800
_DTMF_REPEAT_AFTER_S = 0.5
_DTMF_FREQUENCIES = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip
SILENCE: Pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)


class AudioSource(Protocol):
    """Something that yields 20 ms frames to send; None means it has finished."""

    def read_frame(self) -> Pcm | None: ...


class FrameSink(Protocol):
    """A recorder or tap: sees both directions of every tick (None where nothing was heard or sent)."""

    def write(self, inbound: Pcm | None, outbound: Pcm | None) -> None: ...


@dataclass(slots=True)
class ChannelStats:
    packets_received: int = 0
    packets_sent: int = 0
    octets_sent: int = 0
    malformed_datagrams: int = 0
    foreign_payload_packets: int = 0
    rtcp_received: int = 0
    digits_received: int = 0


class SharedPrompt:
    """One prompt heard by both parties of a bridge, mixed over what each hears, on the shared clock.

    It takes part in the clock like a channel: phase 1 (`pull_inbound`) reads its next frame once per tick,
    phase 2 lets every channel it is attached to mix that same frame into what it sends, so both legs hear
    the same 20 ms of the prompt in the same tick. `done` says True when it ran to its end, False if stopped.
    """

    def __init__(self, source: AudioSource, done: asyncio.Future[bool]) -> None:
        self.source = source
        self.done = done
        self.frame: Pcm | None = None
        self.finished = False

    def pull_inbound(self) -> None:
        if self.finished:
            self.frame = None
            return
        self.frame = self.source.read_frame()
        if self.frame is None:
            self.finish(completed=True)

    def push_outbound(self) -> None:
        """Nothing to send of its own: the channels mix `frame` into theirs."""

    def fail(self, error: BaseException) -> None:
        self.finish(completed=False)

    def finish(self, *, completed: bool) -> None:
        self.finished = True
        self.frame = None
        if not self.done.done():
            self.done.set_result(completed)


def mix(first: Pcm, second: Pcm) -> Pcm:
    """Two frames summed with saturation (int16)."""
    mixed = np.add(first, second, dtype=np.int32)
    return np.minimum(np.maximum(mixed, -32768), 32767).astype(np.int16)


class RoomFeed(Protocol):
    """What a call hears of the mix (conference room) it is in (media/mixer.py `MixMember`), asked once per tick
    in phase 2; None when it hears nothing of the room this tick (deaf, or nobody else talks)."""

    def heard(self) -> Pcm | None: ...


class _Playback:
    """A source currently playing, with the future its starter awaits."""

    def __init__(self, source: AudioSource, done: asyncio.Future[bool]) -> None:
        self.source = source
        self.done = done
        self.frames_played = 0


def in_band_dtmf(digit: str, frames: int) -> list[Pcm]:
    """A DTMF key as two summed sines, for far ends that did not offer telephone-event."""
    low, high = _DTMF_FREQUENCIES[digit]
    t = np.arange(frames * FRAME_SAMPLES) / 8000.0
    tone = 6000 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
    samples = tone.astype(np.int16)
    return [samples[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(frames)]


class MediaChannel(asyncio.DatagramProtocol):
    def __init__(
        self,
        *,
        clock: MediaClock,
        on_digit: Callable[[str], None],
        on_failure: Callable[[BaseException], None] | None = None,
        label: str = "",
    ) -> None:
        self._clock = clock
        self._on_digit = on_digit
        self._on_failure = on_failure
        self.label = label
        self.stats = ChannelStats()
        self.local_port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._negotiated: Negotiated | None = None
        self._remote: tuple[str, int] | None = None
        self._latched = False
        self._jitter = JitterBuffer()
        self._ssrc = secrets.randbits(32)
        self._sequence = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._marker_next = True
        self._playback: _Playback | None = None
        self._sinks: list[FrameSink] = []
        self._taps: list[FrameSink] = []  # audio taps: the far end's own audio, whatever replaces it
        self._inbound_replacement: AudioSource | None = None
        self.heard_frame: Pcm | None = None  # what the far end sent this tick (inbound_frame unless replaced)
        self._shared: list[SharedPrompt] = []  # prompts mixed into what we send (a dialog's say/play)
        self.bridge_peer: MediaChannel | None = None
        self.inbound_frame: Pcm | None = None
        self._dtmf_queue: deque[str] = deque()
        self._dtmf_packets: deque[tuple[bytes, bool] | Pcm] = deque()  # prepared event packets / in-band frames
        self._dtmf_done: list[asyncio.Future[None]] = []
        self._last_event_key: tuple[int, int, int] | None = None
        self._last_event_seen = 0.0
        self._last_event_ended = False
        self._event_timestamp = 0
        self._ticks = 0
        self.closed = False
        self.room: RoomFeed | None = None  # the mix this call is in: mixed over its own playback

    # ---- lifecycle -------------------------------------------------------------------------------

    async def open(self, host: str, port_range: tuple[int, int]) -> int:
        """Bind an even RTP port and the RTCP port above it, retrying random pairs in the range. Both sockets are
        bound before a transport exists: uvloop leaves the transport of a failed bind unclosed (a ResourceWarning
        when a pair collided with another process's port)."""
        loop = asyncio.get_running_loop()
        low, high = port_range
        for _ in range(50):
            port = secrets.randbelow((high - low) // 2) * 2 + low
            rtp_socket = _bound_udp_socket(host, port)
            if rtp_socket is None:
                continue
            rtcp_socket = _bound_udp_socket(host, port + 1)
            if rtcp_socket is None:
                rtp_socket.close()
                continue
            try:
                transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=rtp_socket)
            except BaseException:
                rtp_socket.close()
                rtcp_socket.close()
                raise
            try:
                rtcp_transport, _ = await loop.create_datagram_endpoint(lambda: _RtcpProtocol(self), sock=rtcp_socket)
            except BaseException:  # cancelled while wrapping: no socket may be left to the collector
                transport.close()
                rtcp_socket.close()
                raise
            self._transport = transport
            self._rtcp_transport = rtcp_transport
            self.local_port = port
            if self.closed:  # closed while we were binding (the call ended): nothing may keep these sockets
                self._close_transports()
                raise OSError("the media channel was closed while its ports were bound")
            return port
        raise OSError(f"no free RTP port pair in {low}-{high}")

    def configure(self, negotiated: Negotiated) -> None:
        """Point the stream at the far end's SDP and start taking part in the clock."""
        self._negotiated = negotiated
        if not self._latched:
            self._remote = (negotiated.remote_address, negotiated.remote_port)
        if not self.closed:
            self._clock.add(self)

    def reconfigure(self, negotiated: Negotiated) -> None:
        """A re-INVITE moved the far end: forget the latched address so symmetric RTP latches anew."""
        if self._negotiated is None or (negotiated.remote_address, negotiated.remote_port) != (
            self._negotiated.remote_address,
            self._negotiated.remote_port,
        ):
            self._latched = False
        self.configure(negotiated)

    @property
    def negotiated(self) -> Negotiated | None:
        return self._negotiated

    @property
    def remote_address(self) -> tuple[str, int] | None:
        return self._remote

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._clock.remove(self)
            if self.bridge_peer is not None:
                self.bridge_peer.bridge_peer = None
                self.bridge_peer = None
            self.stop_playback()
            self._taps.clear()
            self._inbound_replacement = None
            for future in self._dtmf_done:
                if not future.done():
                    future.set_result(None)
            self._dtmf_done.clear()
            if self._rtcp_transport is not None and self._remote is not None:
                self._rtcp_transport.sendto(rtp.rtcp_bye(self._ssrc), (self._remote[0], self._remote[1] + 1))
        finally:
            self._close_transports()  # whatever failed above, the sockets go

    def _close_transports(self) -> None:
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()

    def fail(self, error: BaseException) -> None:
        self.close()
        if self._on_failure is not None:
            self._on_failure(error)

    # ---- controls --------------------------------------------------------------------------------

    def play(self, source: AudioSource) -> asyncio.Future[bool]:
        """Replace what is playing; the future says True if the source ran to its end, False if stopped."""
        self.stop_playback()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._playback = _Playback(source, done)
        return done

    def stop_playback(self) -> None:
        playback, self._playback = self._playback, None
        if playback is not None and not playback.done.done():
            playback.done.set_result(False)

    @property
    def is_playing(self) -> bool:
        return self._playback is not None

    def add_shared(self, prompt: SharedPrompt) -> None:
        """Mix a shared prompt into every frame we send until it finishes (it must be on the clock too)."""
        self._shared.append(prompt)

    def add_sink(self, sink: FrameSink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: FrameSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def add_tap(self, tap: FrameSink) -> None:
        """Hear every tick's frames: the far end's own inbound audio (even while replaced) and what we send.
        A tap that raises is removed, the call carries on."""
        self._taps.append(tap)

    def remove_tap(self, tap: FrameSink) -> None:
        if tap in self._taps:
            self._taps.remove(tap)

    def replace_inbound(self, source: AudioSource | None) -> None:
        """Give the bridge peer and the recorders `source`'s frames (None from it: silence that tick) instead of
        the far end's audio; None restores the far end's audio."""
        self._inbound_replacement = source

    def send_dtmf(self, digits: str) -> asyncio.Future[None]:
        """Queue digits; RFC 4733 events when the far end offered them, in-band tones otherwise."""
        unknown = [digit for digit in digits if digit.upper() not in rtp.DTMF_EVENT_CODES]
        if unknown:
            raise ValueError(f"not DTMF digits: {unknown}")
        self._dtmf_queue.extend(digit.upper() for digit in digits)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._dtmf_done.append(done)
        return done

    # ---- receive ---------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        negotiated = self._negotiated
        if negotiated is None or self.closed:
            return
        try:
            packet = rtp.RtpPacket.parse(data)
        except rtp.MalformedPacket:
            self.stats.malformed_datagrams += 1
            MEDIA.rtp_malformed += 1
            return
        if packet.payload_type == negotiated.telephone_event_pt and negotiated.telephone_event_pt is not None:
            self._latch(addr)
            self.stats.packets_received += 1
            MEDIA.rtp_received += 1  # process-wide, for /metrics: a plain add per packet (observability.metrics)
            self._receive_event(packet)
        elif packet.payload_type == negotiated.codec:
            self._latch(addr)
            self.stats.packets_received += 1
            MEDIA.rtp_received += 1
            if packet.payload:
                self._jitter.push(
                    ssrc=packet.ssrc, timestamp=packet.timestamp, samples=g711.decode(packet.payload, negotiated.codec)
                )
        elif rtp.is_rtcp(data):
            self.stats.rtcp_received += 1  # RTCP multiplexed on the RTP port (RFC 5761)
        else:
            self.stats.foreign_payload_packets += 1  # comfort noise, a codec we did not agree on: ignored

    def _latch(self, addr: tuple[str, int]) -> None:
        """Symmetric RTP (RFC 4961): send back to where the far end's media really comes from."""
        if not self._latched:
            self._latched = True
            if self._remote != addr:
                log.debug("rtp %s latched to %s (SDP said %s)", self.label, addr, self._remote)
            self._remote = addr

    def _receive_event(self, packet: rtp.RtpPacket) -> None:
        try:
            event = rtp.TelephoneEvent.parse(packet.payload)
        except rtp.MalformedPacket:
            self.stats.malformed_datagrams += 1
            return
        digit = event.digit
        if digit is None:
            return
        key = (packet.ssrc, packet.timestamp, event.event)
        now = time.monotonic()
        # RFC 4733: every packet of one key press carries that press's timestamp. The same key counts again
        # only after its end packets and a pause (a sender replaying one recorded digit, as sipp's pcaps do);
        # a sender that stalls in the middle of a press must not turn it into two.
        repeated = key == self._last_event_key and (
            not self._last_event_ended or now - self._last_event_seen < _DTMF_REPEAT_AFTER_S
        )
        self._last_event_seen = now
        if repeated:
            self._last_event_ended = self._last_event_ended or event.end
            return  # continuation or one of the three end packets of a digit already reported
        self._last_event_key = key
        self._last_event_ended = event.end
        self.stats.digits_received += 1
        self._on_digit(digit)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtp %s socket error: %s", self.label, exc)  # ICMP port unreachable while the far end starts

    # ---- clock -----------------------------------------------------------------------------------

    def pull_inbound(self) -> None:
        heard = self._jitter.pop()
        self.heard_frame = heard
        replacement = self._inbound_replacement
        self.inbound_frame = heard if replacement is None else replacement.read_frame()

    def push_outbound(self) -> None:
        self._ticks += 1
        frame = self._next_frame()
        for sink in self._sinks:
            sink.write(self.inbound_frame, frame)
        if self._taps:
            self._write_taps(frame)
        self._send(frame)
        if self._ticks % _RTCP_INTERVAL_TICKS == 0:
            self._send_rtcp()

    def _write_taps(self, frame: Pcm | None) -> None:
        for tap in list(self._taps):
            try:
                tap.write(self.heard_frame, frame)
            except Exception:  # a listener's bug must not end the call it listens to
                log.exception("audio tap %r on rtp %s failed; removed", tap, self.label)
                self.remove_tap(tap)

    def _next_frame(self) -> Pcm | None:
        frame = self._own_frame()
        if self._shared:
            for prompt in list(self._shared):
                if prompt.finished:
                    self._shared.remove(prompt)
                elif prompt.frame is not None:
                    frame = prompt.frame if frame is None else mix(frame, prompt.frame)
        room = self.room
        if room is not None:
            heard = room.heard()
            if heard is not None:
                frame = heard if frame is None else mix(frame, heard)
        return frame

    def _own_frame(self) -> Pcm | None:
        playback = self._playback
        if playback is not None:
            frame = playback.source.read_frame()
            if frame is None:
                self._playback = None
                if not playback.done.done():
                    playback.done.set_result(True)
            else:
                playback.frames_played += 1
                return frame
        peer = self.bridge_peer
        if peer is not None:
            return peer.inbound_frame
        return None

    def _send(self, frame: Pcm | None) -> None:
        negotiated, transport, remote = self._negotiated, self._transport, self._remote
        if (
            negotiated is None
            or transport is None
            or remote is None
            or negotiated.direction in ("sendonly", "inactive")
        ):
            self._timestamp += FRAME_SAMPLES
            return
        if not self._dtmf_packets and self._dtmf_queue:
            self._prepare_digit(self._dtmf_queue.popleft(), negotiated)
        if self._dtmf_packets:
            item = self._dtmf_packets.popleft()
            if isinstance(item, tuple):
                payload, marker = item
                pt = negotiated.telephone_event_pt or 0
                self._transmit(transport, remote, pt, payload, marker=marker, timestamp=self._event_timestamp)
                self._timestamp += FRAME_SAMPLES
                self._finish_dtmf_if_done()
                return
            frame = item
            self._finish_dtmf_if_done()
        samples = SILENCE if frame is None else frame
        payload = g711.encode(samples, negotiated.codec)
        self._transmit(transport, remote, negotiated.codec, payload, marker=False, timestamp=self._timestamp)
        self._timestamp += FRAME_SAMPLES

    def _transmit(
        self,
        transport: asyncio.DatagramTransport,
        remote: tuple[str, int],
        pt: int,
        payload: bytes,
        *,
        marker: bool,
        timestamp: int,
    ) -> None:
        header_marker = marker or self._marker_next
        self._marker_next = False
        packet = rtp.RtpPacket(
            payload_type=pt,
            sequence_number=self._sequence,
            timestamp=timestamp,
            ssrc=self._ssrc,
            payload=payload,
            marker=header_marker,
        )
        self._sequence = (self._sequence + 1) & 0xFFFF
        transport.sendto(bytes(packet), remote)
        self.stats.packets_sent += 1
        MEDIA.rtp_sent += 1
        self.stats.octets_sent += len(payload)

    def _prepare_digit(self, digit: str, negotiated: Negotiated) -> None:
        gap: list[tuple[bytes, bool] | Pcm] = [SILENCE] * DTMF_GAP_FRAMES
        if negotiated.telephone_event_pt is None:
            self._dtmf_packets.extend([*in_band_dtmf(digit, DTMF_TONE_FRAMES), *gap])
            return
        code = rtp.DTMF_EVENT_CODES[digit]
        self._event_timestamp = self._timestamp
        packets: list[tuple[bytes, bool] | Pcm] = []
        for index in range(DTMF_TONE_FRAMES):
            event = rtp.TelephoneEvent(event=code, end=False, volume=10, duration=(index + 1) * FRAME_SAMPLES)
            packets.append((bytes(event), index == 0))
        final = rtp.TelephoneEvent(event=code, end=True, volume=10, duration=DTMF_TONE_FRAMES * FRAME_SAMPLES)
        packets.extend([(bytes(final), False)] * DTMF_END_PACKETS)
        self._dtmf_packets.extend([*packets, *gap])

    def _finish_dtmf_if_done(self) -> None:
        if not self._dtmf_packets and not self._dtmf_queue:
            for future in self._dtmf_done:
                if not future.done():
                    future.set_result(None)
            self._dtmf_done.clear()

    def _send_rtcp(self) -> None:
        if self._rtcp_transport is None or self._remote is None:
            return
        report = rtp.sender_report(
            ssrc=self._ssrc,
            ntp_seconds=time.time() + _NTP_EPOCH_OFFSET,
            rtp_timestamp=self._timestamp,
            packets_sent=self.stats.packets_sent,
            octets_sent=self.stats.octets_sent,
        )
        self._rtcp_transport.sendto(report, (self._remote[0], self._remote[1] + 1))


class _RtcpProtocol(asyncio.DatagramProtocol):
    """Counts RTCP from the far end; reports are not acted on (no adaptive behaviour needs them yet)."""

    def __init__(self, channel: MediaChannel) -> None:
        self._channel = channel

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            rtp.rtcp_packet_types(data)
        except rtp.MalformedPacket:
            self._channel.stats.malformed_datagrams += 1
            return
        self._channel.stats.rtcp_received += 1

    def error_received(self, exc: Exception) -> None:
        log.debug("rtcp socket error: %s", exc)


def _bound_udp_socket(host: str, port: int) -> socket.socket | None:
    """A non-blocking UDP socket bound to host:port, or None when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    return sock
