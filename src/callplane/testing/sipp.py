"""Running real sipp against the engine: free ports, scenario templates, generated RTP pcaps, audio checks.

The scenario templates stay beside the engine's tests (tests/media/scenarios): sipp runs from a checkout."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from callplane.media import g711, rtp
from callplane.media.engine import EngineConfig, EngineEvent
from callplane.media.g711 import PayloadType, Pcm

EventT = TypeVar("EventT")

SCENARIOS = Path(__file__).resolve().parents[3] / "tests" / "media" / "scenarios"
SIPP_PCAPS = Path("/usr/share/sip-tester")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_even_port_pair() -> int:
    """sipp's -mp needs room for RTP and RTCP (and video ports above them)."""
    for _ in range(200):
        port = random.randrange(40000, 60000, 2)  # noqa: S311 - a port to try, not a secret
        sockets = []
        try:
            for offset in range(4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free port block")


def engine_config(cache_dir: Path) -> EngineConfig:
    low = random.randrange(20000, 38000, 2)  # noqa: S311 - spreads parallel engines' RTP ports
    return EngineConfig(sip_port=free_udp_port(), rtp_port_range=(low, low + 1000), cache_dir=cache_dir)


def render_scenario(name: str, directory: Path, **values: str) -> Path:
    """Copy a scenario with its {{PLACEHOLDERS}} filled (sipp cannot take status codes or paths as -key)."""
    text = (SCENARIOS / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise ValueError(f"unfilled placeholder in {name}")
    target = directory / name
    target.write_text(text)
    return target


@dataclass
class SippResult:
    returncode: int
    output: str
    directory: Path

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.directory.glob("*_logs.log"))


class Sipp:
    """One sipp process; `await finished()` returns its exit code (0 = every call passed)."""

    def __init__(self, scenario: Path, *, sip_port: int, media_port: int, extra: list[str]) -> None:
        self.scenario = scenario
        self.sip_port = sip_port
        self.media_port = media_port
        self.extra = extra
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        args = [
            "sipp", "-sf", str(self.scenario), "-i", "127.0.0.1", "-p", str(self.sip_port),
            "-mp", str(self.media_port), "-nostdin", "-trace_err", "-trace_logs", "-timeout_error", *self.extra,
        ]  # fmt: skip
        self._process = await asyncio.create_subprocess_exec(
            *args,
            cwd=self.scenario.parent,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "TERM": "dumb"},
        )
        await _until_udp_bound(self.sip_port)

    async def finished(self, timeout_s: float = 40) -> SippResult:
        assert self._process is not None
        try:
            output, _ = await asyncio.wait_for(self._process.communicate(), timeout_s)
        except TimeoutError:
            self._process.kill()
            output, _ = await self._process.communicate()
        errors = "".join(path.read_text(errors="replace") for path in self.scenario.parent.glob("*_errors.log"))
        text = output.decode(errors="replace")[-3000:] + errors[-3000:]
        return SippResult(self._process.returncode or 0, text, self.scenario.parent)

    def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()


async def _until_udp_bound(port: int, timeout_s: float = 10) -> None:
    """Wait until something listens on the UDP port: on a loaded machine sipp can take over a second to bind, and a
    request sent before that is lost to the test's timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _udp_bound(port) is False:  # noqa: ASYNC110 - a kernel table: no event
        await asyncio.sleep(0.02)


def _udp_bound(port: int) -> bool | None:
    """Whether a socket is bound to the UDP port (Linux's /proc/net/udp); None where that table does not exist."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return None
    suffix = f":{port:04X}"
    return any(line.split()[1].endswith(suffix) for line in lines if len(line.split()) > 1)


async def next_event(queue: asyncio.Queue[EngineEvent], kind: type[EventT], timeout_s: float = 15) -> EventT:
    """The next event of one kind (others are skipped); fails the test instead of hanging it."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {kind.__name__} within {timeout_s}s")
        event = await asyncio.wait_for(queue.get(), remaining)
        if isinstance(event, kind):
            return event


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Poll a condition on engine state that no event announces (e.g. a direction set by a re-INVITE)."""
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout_s}s")


# ---- pcaps and audio ----------------------------------------------------------------------------


def tone(frequency_hz: float, seconds: float, amplitude: int = 8000) -> Pcm:
    t = np.arange(int(8000 * seconds)) / 8000.0
    return (amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype(np.int16)


def write_rtp_pcap(path: Path, samples: Pcm, *, payload_type: PayloadType = PayloadType.PCMA) -> None:
    """A pcap that sipp's play_pcap_audio replays: Ethernet/IPv4/UDP/RTP, 20 ms packets, one SSRC."""
    records = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    ssrc = random.getrandbits(32)
    for index in range(len(samples) // 160):
        payload = g711.encode(samples[index * 160 : (index + 1) * 160], payload_type)
        rtp = (
            struct.pack("!BBHII", 0x80, (0x80 if index == 0 else 0) | payload_type, index, index * 160, ssrc) + payload
        )
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index, 0, 64, 17, 0,
                         socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))  # fmt: skip
        checksum = _ip_checksum(ip)
        ip = ip[:10] + struct.pack("!H", checksum) + ip[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        micros = index * 20_000
        records.append(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(records))


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def dominant_frequency(samples: Pcm) -> float:
    windowed = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    return float(np.argmax(spectrum) * 8000 / len(samples))


def rms(samples: Pcm) -> float:
    if len(samples) == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def best_correlation(needle: Pcm, haystack: Pcm) -> float:
    """Peak normalised cross-correlation of a reference inside a longer recording (alignment unknown)."""
    a = needle.astype(np.float64)
    b = haystack.astype(np.float64)
    if len(a) > len(b) or not a.any():
        return 0.0
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    correlation = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)[: len(b) - len(a) + 1]
    window_energy = np.sqrt(np.convolve(b**2, np.ones(len(a)), mode="valid"))
    denominator = np.linalg.norm(a) * np.maximum(window_energy, 1e-9)
    return float(np.max(correlation / denominator))


_ETH_P_ALL = 0x0003
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS has the same value
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # root may pass net.core.rmem_max
_PACKET_HOST = 0  # loopback shows each datagram twice: sent (PACKET_OUTGOING) and received (PACKET_HOST)


@dataclass
class _Received:
    at: float
    samples: Pcm


@dataclass
class LoopbackCapture:
    """The RTP audio delivered to some UDP ports on `lo` (sipp's media ports: what a sipp leg *received*), with its
    arrival time, decoded from G.711. An AF_PACKET socket: needs root, as sipp's play_pcap_audio does."""

    ports: set[int]
    packets: dict[int, list[_Received]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _realtime_offset: float = 0.0
    _caught_up: float = 0.0  # monotonic time up to which every arrived packet has been taken

    def start(self) -> None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)  # the kernel's arrival time, not when we got to it
        # Every datagram on lo passes through this socket (the suite's HTTP and database traffic too): a default-sized
        # buffer overflows, dropping RTP, whenever the capture thread waits for the GIL under load.
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 64 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        sock.bind(("lo", 0))
        sock.settimeout(0.1)
        self._realtime_offset = time.time() - time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True, name="rtp-capture")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self, sock: socket.socket) -> None:
        with sock:
            while not self._stop.is_set():
                try:
                    data, ancillary, _, address = sock.recvmsg(65535, socket.CMSG_SPACE(16))
                except TimeoutError:
                    self._caught_up = time.monotonic()  # nothing queued: everything that arrived is taken
                    continue
                at = self._arrival(ancillary)
                if address[2] == _PACKET_HOST:
                    self._take(data, at)
                self._caught_up = at

    def _arrival(self, ancillary: list[tuple[int, int, bytes]]) -> float:
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                return float(seconds + nanoseconds / 1e9 - self._realtime_offset)
        return time.monotonic()

    def _take(self, data: bytes, at: float) -> None:
        if len(data) < 42 or data[12:14] != b"\x08\x00" or data[23] != 17:  # IPv4, UDP
            return
        ip_header = (data[14] & 0x0F) * 4
        udp = 14 + ip_header
        (port,) = struct.unpack("!H", data[udp + 2 : udp + 4])
        if port not in self.ports:
            return
        try:
            packet = rtp.RtpPacket.parse(data[udp + 8 :])
        except rtp.MalformedPacket:
            return
        if packet.payload_type in (PayloadType.PCMU, PayloadType.PCMA):
            samples = g711.decode(packet.payload, PayloadType(packet.payload_type))
            self.packets.setdefault(port, []).append(_Received(at, samples))

    def audio(self, port: int, start: float, end: float) -> Pcm:
        # Under load the capture thread may be behind: wait until it has taken everything that arrived before `end`.
        deadline = time.monotonic() + 5
        while self._caught_up < end and time.monotonic() < deadline:
            time.sleep(0.02)
        frames = [received.samples for received in list(self.packets.get(port, [])) if start <= received.at < end]
        assert len(frames) >= 25 * (end - start), f"only {len(frames)} packets to {port} in {end - start:.1f}s"
        return np.concatenate(frames)


def share(samples: Pcm, frequency_hz: float) -> float:
    """The part of the signal's energy within 25 Hz of a frequency."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / 8000)
    total = float(spectrum.sum())
    return 0.0 if total == 0 else float(spectrum[np.abs(frequencies - frequency_hz) < 25].sum() / total)
