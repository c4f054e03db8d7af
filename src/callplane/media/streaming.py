"""Media streaming: one call leg's audio to a WebSocket server, and (replaceMedia) what it sends back into the call.

The wire is Infobip's (docs/voice.md "Media streaming"): after the WebSocket handshake (HTTP Basic credentials when
the configuration has them) the first message is JSON `{"callId", "sampleRate", "packetizationTime", "customData"}`,
then binary messages of raw 16-bit little-endian mono PCM at `sampleRate`, one 20 ms frame each (1920 bytes at
48 kHz); after a hiccup the frames that waited go together in one message, always a whole number of frames. With
media replacement the server sends frames back (any whole number of them per message) and they are what the
call's peers and recordings get instead of the leg's own audio.

`MediaStream` is both the engine's `AudioTap` (the far end's own 8 kHz frames, every tick) and the `AudioSource`
given to `replace_inbound_audio` (one returned frame per tick). Nothing here ever makes the media clock wait: the
tap only appends to a bounded queue that a sender task drains, and a frame that finds the queue full is dropped and
counted (`STREAMS`, exported as `callplane_media_stream_dropped_frames{reason}`). Returned audio waits in a short
bounded buffer too; when it is empty the peers hear silence for that tick.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from callplane.media.g711 import Pcm
from callplane.media.jitter import FRAME_SAMPLES
from callplane.observability.metrics import STREAMS

log = logging.getLogger(__name__)

SAMPLE_RATES = (8000, 16000, 48000)
PACKETIZATION_MS = 20
DEFAULT_QUEUE_FRAMES = 50  # 1 s of audio waits for a slow server; past that, frames are dropped
RETURN_BUFFER_FRAMES = 25  # 500 ms of returned audio at most; more is the server running ahead: dropped
SEND_BUFFER_BYTES = 64 * 1024  # a stalled server shows up within a second instead of after megabytes of buffers
CONNECT_TIMEOUT_S = 10.0
_INPUT_RATE = 8000
_TAPS_PER_PHASE = 16


class StreamEnd(StrEnum):
    """Why a stream ended: STOPPED (asked), CALL_ENDED, or FAILED (the server refused, closed or broke)."""

    STOPPED = "stopped"
    CALL_ENDED = "call_ended"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """Where one stream goes. `address`: the IP the outbound target policy checked the URL's host to; the TCP
    connection goes there with no second lookup while TLS and the Host header keep the URL's name."""

    url: str
    call_id: str  # the preamble's callId: the API's call id
    sample_rate: int = 48000
    replace_media: bool = False
    address: str | None = None
    username: str | None = None
    password: str | None = None
    custom_data: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sampleRate must be one of {SAMPLE_RATES}")

    @property
    def frame_bytes(self) -> int:
        return self.sample_rate * PACKETIZATION_MS // 1000 * 2

    def preamble(self) -> str:
        return json.dumps(
            {
                "callId": self.call_id,
                "sampleRate": self.sample_rate,
                "packetizationTime": PACKETIZATION_MS,
                "customData": dict(self.custom_data),
            }
        )


@dataclass(slots=True)
class StreamStats:
    frames_in: int = 0  # ticks the tap saw
    frames_sent: int = 0
    messages_sent: int = 0
    coalesced_messages: int = 0  # messages that carried more than one frame
    dropped_backpressure: int = 0  # the queue to the server was full (slow or stalled server)
    dropped_not_connected: int = 0  # before the handshake finished or after the connection went
    frames_returned: int = 0  # replaceMedia: frames the server sent back
    returned_overflow: int = 0  # replaceMedia: returned frames dropped, the server ran ahead
    returned_partial_bytes: int = 0  # replaceMedia: bytes of a message beyond its whole frames (ignored)
    replaced_ticks: int = 0  # replaceMedia: ticks the peers heard the server's audio
    replacement_gaps: int = 0  # replaceMedia: ticks with nothing returned yet (silence)


# ---- resampling (polyphase FIR, state kept across frames) ------------------------------------------


def _lowpass(taps: int, cutoff: float) -> np.ndarray:
    """A Hamming-windowed sinc; `cutoff` as a fraction of the sampling rate."""
    n = np.arange(taps) - (taps - 1) / 2
    h: np.ndarray = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    normalised: np.ndarray = h / h.sum()
    return normalised


class Upsampler:
    """8 kHz int16 frames to `rate` (an integer multiple), continuous across calls."""

    def __init__(self, rate: int) -> None:
        self.factor = rate // _INPUT_RATE
        taps = _TAPS_PER_PHASE * self.factor
        # cut at 3.8 kHz of the output rate; gain `factor` makes up for the zeros between input samples
        h = _lowpass(taps, 3800 / rate) * self.factor
        self._phases = [h[phase :: self.factor] for phase in range(self.factor)]
        self._history = np.zeros(_TAPS_PER_PHASE - 1, dtype=np.float64)

    def __call__(self, samples: Pcm) -> Pcm:
        if self.factor == 1:
            return samples.astype(np.int16, copy=False)
        x = np.concatenate([self._history, samples.astype(np.float64)])
        self._history = x[-(_TAPS_PER_PHASE - 1) :]
        out = np.empty(len(samples) * self.factor, dtype=np.float64)
        for phase, taps in enumerate(self._phases):
            out[phase :: self.factor] = np.convolve(x, taps, mode="valid")
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


class Downsampler:
    """`rate` int16 samples back to 8 kHz, continuous across calls."""

    def __init__(self, rate: int) -> None:
        self.factor = rate // _INPUT_RATE
        self._taps = _lowpass(_TAPS_PER_PHASE * self.factor, 3800 / rate)
        self._history = np.zeros(len(self._taps) - 1, dtype=np.float64)
        self._offset = 0

    def __call__(self, samples: Pcm) -> Pcm:
        if self.factor == 1:
            return samples.astype(np.int16, copy=False)
        x = np.concatenate([self._history, samples.astype(np.float64)])
        self._history = x[-(len(self._taps) - 1) :]
        filtered = np.convolve(x, self._taps, mode="valid")
        return np.clip(np.rint(filtered[:: self.factor]), -32768, 32767).astype(np.int16)


# ---- the stream -------------------------------------------------------------------------------------


_SILENCE: Pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)


class MediaStream:
    """One leg's stream. `run()` connects, streams until `stop()` (or the call ends, or the server goes) and
    returns why it ended; `on_connected` is called once the preamble went out (the live plane's STARTED event).
    `write` is the engine's AudioTap, `read_frame` the replacement AudioSource."""

    def __init__(
        self,
        target: StreamTarget,
        *,
        queue_frames: int = DEFAULT_QUEUE_FRAMES,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.target = target
        self.stats = StreamStats()
        self.error: str | None = None  # why it FAILED
        self._queue: deque[Pcm] = deque()
        self._queue_frames = queue_frames
        self._wake = asyncio.Event()
        self._returned: deque[Pcm] = deque()
        self._connected = False
        self._stopping: StreamEnd | None = None
        self._stopped = asyncio.Event()
        self.on_connected = on_connected  # may be set until run() connects
        self._upsample = Upsampler(target.sample_rate)
        self._downsample = Downsampler(target.sample_rate)
        self._pending_return = b""

    # ---- the engine's side (on the clock tick: never blocks) ----------------------------------------

    def write(self, inbound: Pcm | None, outbound: Pcm | None) -> None:
        """AudioTap: the far end's own audio (the leg's "outbound media" in Infobip's words) goes to the server."""
        self.stats.frames_in += 1
        if not self._connected:
            self.stats.dropped_not_connected += 1
            STREAMS.dropped_not_connected += 1
            return
        if len(self._queue) >= self._queue_frames:
            self.stats.dropped_backpressure += 1
            STREAMS.dropped_backpressure += 1
            return
        self._queue.append(_SILENCE if inbound is None else inbound)
        if len(self._queue) == 1:
            self._wake.set()

    def read_frame(self) -> Pcm | None:
        """AudioSource: the next frame the server returned; None (silence this tick) while none waits."""
        if self._returned:
            self.stats.replaced_ticks += 1
            return self._returned.popleft()
        self.stats.replacement_gaps += 1
        return None

    # ---- lifecycle ---------------------------------------------------------------------------------

    def stop(self, why: StreamEnd = StreamEnd.STOPPED) -> None:
        if self._stopping is None:
            self._stopping = why
        self._stopped.set()

    @property
    def connected(self) -> bool:
        return self._connected

    async def run(self) -> StreamEnd:
        """Connect, send the preamble, then stream until stopped or the connection goes; never raises (but
        CancelledError)."""
        try:
            websocket = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError) as error:
            self.error = f"cannot connect to the media-stream server: {_describe(error)}"
            return StreamEnd.FAILED
        try:
            return await self._stream(websocket)
        finally:
            self._connected = False
            self._queue.clear()
            self._returned.clear()
            try:
                await asyncio.wait_for(websocket.close(), 2)
            except Exception:  # noqa: BLE001 - no clean close (a server still sending fills our unread queue)
                websocket.transport.abort()  # the socket goes all the same

    async def _connect(self) -> ClientConnection:
        target = self.target
        parts = urlsplit(target.url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        host = target.address or parts.hostname or ""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        headers = {}
        if target.username is not None:
            token = base64.b64encode(f"{target.username}:{target.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return await connect(
            target.url,
            sock=sock,
            additional_headers=headers,
            compression=None,
            open_timeout=CONNECT_TIMEOUT_S,
            max_size=2**20,
            max_queue=16,
            user_agent_header="callplane",
        )

    async def _stream(self, websocket: ClientConnection) -> StreamEnd:
        try:
            await websocket.send(self.target.preamble())
        except ConnectionClosed as error:
            self.error = f"the media-stream server closed the connection: {_describe(error)}"
            return StreamEnd.FAILED
        self._connected = True
        if self.on_connected is not None:
            self.on_connected()
        sender: asyncio.Task[object] = asyncio.create_task(self._send_loop(websocket), name="media-stream-send")
        receiver: asyncio.Task[object] = asyncio.create_task(self._receive_loop(websocket), name="media-stream-receive")
        stopped: asyncio.Task[object] = asyncio.create_task(self._stopped.wait(), name="media-stream-stop")
        try:
            done, _ = await asyncio.wait({sender, receiver, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, receiver, stopped):
                task.cancel()
            await asyncio.gather(sender, receiver, stopped, return_exceptions=True)
        if self._stopping is not None:
            return self._stopping
        for task in done:
            if task is not stopped and not task.cancelled() and task.exception() is not None:
                self.error = f"the media-stream connection failed: {_describe(task.exception())}"
                return StreamEnd.FAILED
        self.error = "the media-stream server closed the connection"
        return StreamEnd.FAILED

    async def _send_loop(self, websocket: ClientConnection) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
            frames = list(queue)
            queue.clear()
            samples = frames[0] if len(frames) == 1 else np.concatenate(frames)
            payload = self._upsample(samples).astype("<i2", copy=False).tobytes()
            await websocket.send(payload)  # waits while the server does not read: the tap's queue fills
            self.stats.frames_sent += len(frames)
            self.stats.messages_sent += 1
            STREAMS.frames_sent += len(frames)
            if len(frames) > 1:
                self.stats.coalesced_messages += 1

    async def _receive_loop(self, websocket: ClientConnection) -> None:
        async for message in websocket:
            if not self.target.replace_media or isinstance(message, str):
                continue  # without replaceMedia what the server sends is ignored (as on Infobip)
            self._take_returned(bytes(message))

    def _take_returned(self, data: bytes) -> None:
        size = self.target.frame_bytes
        whole = len(data) - len(data) % size
        if whole < len(data):
            self.stats.returned_partial_bytes += len(data) - whole
        if not whole:
            return
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)
        narrow = self._downsample(samples)
        for start in range(0, len(narrow) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            self.stats.frames_returned += 1
            if len(self._returned) >= RETURN_BUFFER_FRAMES:
                self.stats.returned_overflow += 1
                STREAMS.returned_overflow += 1
                continue
            self._returned.append(narrow[start : start + FRAME_SAMPLES])


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


__all__ = [
    "SAMPLE_RATES",
    "Downsampler",
    "MediaStream",
    "StreamEnd",
    "StreamStats",
    "StreamTarget",
    "Upsampler",
]
