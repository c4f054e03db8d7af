"""A media-streaming server for callplane's (and Infobip's) Calls API media streaming, to try it and to test it.

    python examples/media_stream_server.py --mode bandpass --port 3002 [--username u --password p]

then create a media-stream configuration with `"url": "ws://<this host>:3002"` and start a stream on a call with
`replaceMedia: true`. What arrives: one JSON text message (`callId`, `sampleRate`, `packetizationTime`,
`customData`), then binary messages of raw 16-bit little-endian mono PCM, a whole number of 20 ms frames each
(1920 bytes per frame at 48 kHz).

Modes:
- `echo`: every frame goes back as it came (with replaceMedia the call's peers hear the leg unchanged, 20 ms later);
- `bandpass`: every frame goes back through a 300-3400 Hz Butterworth band-pass (4th order each side), as Infobip's
  showcase does (the "old telephone" sound);
- `sink`: reads and keeps everything, sends nothing back;
- `stall`: reads the preamble, then never reads again (a server that hangs; for testing that the call does not care).

Frames sent back are always single 20 ms frames, as the guide asks. Only numpy and websockets are needed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger("media_stream_server")

MODES = ("echo", "bandpass", "sink", "stall")


class Biquad:
    """One second-order section (RBJ cookbook), state kept across blocks."""

    def __init__(self, b: Sequence[float], a: Sequence[float]) -> None:
        self.b0, self.b1, self.b2 = (value / a[0] for value in b)
        self.a1, self.a2 = a[1] / a[0], a[2] / a[0]
        self.z1 = 0.0
        self.z2 = 0.0

    @classmethod
    def highpass(cls, frequency: float, rate: int, q: float) -> Biquad:
        w = 2 * np.pi * frequency / rate
        alpha = np.sin(w) / (2 * q)
        cos = np.cos(w)
        return cls(((1 + cos) / 2, -(1 + cos), (1 + cos) / 2), (1 + alpha, -2 * cos, 1 - alpha))

    @classmethod
    def lowpass(cls, frequency: float, rate: int, q: float) -> Biquad:
        w = 2 * np.pi * frequency / rate
        alpha = np.sin(w) / (2 * q)
        cos = np.cos(w)
        return cls(((1 - cos) / 2, 1 - cos, (1 - cos) / 2), (1 + alpha, -2 * cos, 1 - alpha))

    def process(self, x: np.ndarray) -> np.ndarray:
        b0, b1, b2, a1, a2 = self.b0, self.b1, self.b2, self.a1, self.a2
        z1, z2 = self.z1, self.z2
        y = np.empty_like(x)
        for i, sample in enumerate(x.tolist()):  # transposed direct form II
            out = b0 * sample + z1
            z1 = b1 * sample - a1 * out + z2
            z2 = b2 * sample - a2 * out
            y[i] = out
        self.z1, self.z2 = z1, z2
        return y


class BandPass:
    """300-3400 Hz: two 4th-order Butterworth halves (Q 0.541 and 1.307 per side)."""

    def __init__(self, rate: int, low: float = 300.0, high: float = 3400.0) -> None:
        high = min(high, rate * 0.45)
        self.sections = [
            Biquad.highpass(low, rate, 0.5412),
            Biquad.highpass(low, rate, 1.3066),
            Biquad.lowpass(high, rate, 0.5412),
            Biquad.lowpass(high, rate, 1.3066),
        ]

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = samples.astype(np.float64)
        for section in self.sections:
            x = section.process(x)
        return np.asarray(np.clip(np.rint(x), -32768, 32767).astype("<i2"))


@dataclass
class Session:
    """One connection as the server saw it."""

    preamble: dict[str, Any] | None = None
    authorization: str | None = None
    message_sizes: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each binary message
    audio: bytearray = field(default_factory=bytearray)
    frames_returned: int = 0
    closed: bool = False

    def samples(self) -> np.ndarray:
        return np.frombuffer(bytes(self.audio), dtype="<i2").astype(np.int16)


class MediaStreamServer:
    """The server, embeddable (tests) or run from the command line."""

    def __init__(
        self,
        mode: str = "echo",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.host = host
        self.port = port
        self.credentials = (username, password) if username is not None else None
        self.sessions: list[Session] = []
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/stream"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.mode == "stall":  # a small receive window, so that a client's buffers fill within seconds
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = await serve(
            self._handle, sock=sock, process_request=self._authorize, compression=None, close_timeout=1
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MediaStreamServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _authorize(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.credentials is None:
            return None
        username, password = self.credentials
        expected = "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return connection.respond(401, "Unauthorized\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        session = Session(authorization=connection.request.headers.get("Authorization") if connection.request else None)
        self.sessions.append(session)
        try:
            first = await connection.recv()
            session.preamble = json.loads(first)
            rate = int(session.preamble["sampleRate"])
            frame_bytes = rate * int(session.preamble["packetizationTime"]) // 1000 * 2
            if self.mode == "stall":
                await connection.wait_closed()  # never reads again (until the client goes)
                return
            band = BandPass(rate) if self.mode == "bandpass" else None
            async for message in connection:
                if isinstance(message, str):
                    continue
                data = bytes(message)
                session.message_sizes.append(len(data))
                session.arrivals.append(time.monotonic())
                session.audio.extend(data)
                if self.mode == "sink":
                    continue
                for start in range(0, len(data) - frame_bytes + 1, frame_bytes):
                    frame = data[start : start + frame_bytes]
                    if band is not None:
                        frame = band(np.frombuffer(frame, dtype="<i2")).tobytes()
                    await connection.send(frame)  # one 20 ms frame per message, as the guide asks
                    session.frames_returned += 1
        except ConnectionClosed:
            pass
        finally:
            session.closed = True


async def _main(arguments: argparse.Namespace) -> None:
    server = MediaStreamServer(
        arguments.mode,
        host=arguments.host,
        port=arguments.port,
        username=arguments.username,
        password=arguments.password,
    )
    await server.start()
    log.info("media-stream server (%s) on ws://%s:%s", arguments.mode, arguments.host, server.port)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=MODES, default="bandpass")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3002)
    parser.add_argument("--username")
    parser.add_argument("--password")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(_main(parser.parse_args()))
