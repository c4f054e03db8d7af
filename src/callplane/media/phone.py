"""`callplane phone`: a small SIP user agent on the media engine, for trying callplane without a carrier.

It runs its own engine in its own process. `--listen` answers every call with a prompt; `--dial` places one
call, sends digits and plays or says something. Everything that happens is printed as one JSON object per
line (`{"event": "answered", ...}`), so scripts and tests can follow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callplane.errors import CallplaneError
from callplane.media.engine import (
    CallAnswered,
    CallEarlyMedia,
    CallEnded,
    CallRinging,
    DtmfReceived,
    EngineConfig,
    EngineEvent,
    FileSource,
    IncomingCall,
    OutboundCall,
    PlaybackFinished,
    PlaySource,
    RecordingChannels,
    SipTrunk,
    SpeechSource,
)
from callplane.media.sip import SippyCallEngine

Emit = Callable[[dict[str, Any]], None]
DEFAULT_PROMPT = "Hello from the callplane phone. Press some keys, then hang up."


class PhoneUsageError(ValueError):
    """The phone's options do not make sense together."""


@dataclass(frozen=True, slots=True)
class SipUri:
    user: str
    host: str
    port: int = 5060

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """`sip:user@host[:port]` (a `;param` tail is ignored)."""
        rest = text.strip()
        if rest.lower().startswith("sip:"):
            rest = rest[4:]
        rest = rest.split(";", 1)[0]
        user, at, hostport = rest.rpartition("@")
        if not at or not user or not hostport:
            raise PhoneUsageError(f"{text!r} is not a SIP URI like sip:user@host:port")
        host, colon, port = hostport.partition(":")
        if colon and not port.isdigit():
            raise PhoneUsageError(f"{text!r} has a bad port")
        return cls(user, host, int(port) if colon else 5060)


@dataclass(frozen=True, slots=True)
class PhoneOptions:
    listen: tuple[str, int] | None = None  # where our SIP socket binds; None with --dial: 127.0.0.1, any port
    dial: SipUri | None = None
    digits: str = ""
    digits_delay_s: float = 0.0  # wait after answer before sending the digits (an IVR starts listening first)
    play: Path | None = None
    say: str | None = None
    duration_s: float | None = None  # hang up this long after answer; None: wait for the far end
    calls: int | None = None  # listen: exit after this many calls
    username: str | None = None  # digest credentials for --dial
    password: str | None = None
    from_user: str = "phone"
    record: Path | None = None  # STEREO WAV of each call (heard left, sent right)
    cache_dir: Path = field(default_factory=lambda: Path("callplane-data") / "phone-cache")
    rtp_port_range: tuple[int, int] = (30000, 31000)


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _prompt(options: PhoneOptions) -> PlaySource | None:
    if options.play is not None:
        return FileSource(options.play)
    if options.say is not None:
        return SpeechSource(options.say)
    return None


def event_fields(event: EngineEvent) -> dict[str, Any] | None:
    """The JSON line for an engine event (None for events the phone does not report)."""
    if isinstance(event, IncomingCall):
        return {"event": "incoming", "call_id": event.call_id, "from": event.from_user, "to": event.to_user}
    if isinstance(event, CallRinging):
        return {"event": "ringing", "call_id": event.call_id, "status": event.status}
    if isinstance(event, CallEarlyMedia):
        return {"event": "early_media", "call_id": event.call_id, "status": event.status}
    if isinstance(event, CallAnswered):
        return {"event": "answered", "call_id": event.call_id}
    if isinstance(event, DtmfReceived):
        return {"event": "dtmf", "call_id": event.call_id, "digit": event.digit}
    if isinstance(event, PlaybackFinished):
        return {"event": "playback_finished", "call_id": event.call_id, "completed": event.completed}
    if isinstance(event, CallEnded):
        return {
            "event": "hangup",
            "call_id": event.call_id,
            "initiator": event.initiator,
            "answered": event.answered,
            "sip_status": event.sip_status,
            "reason": str(event.reason) if event.reason else None,
        }
    return None


class Phone:
    def __init__(self, options: PhoneOptions, emit: Emit) -> None:
        if options.listen is None and options.dial is None:
            raise PhoneUsageError("give --listen host:port or --dial sip:user@host:port")
        if options.play is not None and options.say is not None:
            raise PhoneUsageError("--play and --say are exclusive")
        self.options = options
        self.emit = emit
        host, port = options.listen or ("127.0.0.1", 0)
        self.engine = SippyCallEngine(
            EngineConfig(
                sip_host=host,
                sip_port=port or _free_udp_port(host),
                rtp_host=host,
                rtp_port_range=options.rtp_port_range,
                cache_dir=options.cache_dir,
                user_agent="callplane-phone",
            )
        )
        self._hangup_timers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._recordings = 0

    async def run(self, stop: asyncio.Event) -> int:
        """Run until `stop`, the last call of `--calls`, or the end of the dialed call; returns the exit code."""
        await self.engine.start()
        events = self.engine.subscribe()
        self.emit({"event": "started", "sip": f"{self.engine.config.sip_host}:{self.engine.config.sip_port}"})
        try:
            if self.options.dial is not None:
                return await self._dial(events, stop)
            return await self._listen(events, stop)
        finally:
            for task in [*self._hangup_timers.values(), *self._tasks]:
                task.cancel()
            await self.engine.stop()
            self.emit({"event": "stopped"})

    async def _next(self, events: asyncio.Queue[EngineEvent], stop: asyncio.Event) -> EngineEvent | None:
        getter = asyncio.ensure_future(events.get())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if getter in done:
            event = getter.result()
            fields = event_fields(event)
            if fields is not None:
                self.emit(fields)
            return event
        getter.cancel()
        return None

    async def _on_answered(self, call_id: str) -> None:
        """What the phone does once a call is up, either way: record, prompt, digits, a timed hangup."""
        if self.options.record is not None:
            self._recordings += 1
            path = self.options.record
            if self._recordings > 1:
                path = path.with_name(f"{path.stem}-{self._recordings}{path.suffix}")
            await self.engine.start_recording(call_id, path, RecordingChannels.STEREO)
        prompt = _prompt(self.options)
        if prompt is not None:
            await self.engine.play(call_id, prompt)
        if self.options.digits:
            self._spawn(self._send_digits(call_id))
        if self.options.duration_s is not None:
            self._hangup_timers[call_id] = asyncio.create_task(self._hang_up_later(call_id, self.options.duration_s))

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_digits(self, call_id: str) -> None:
        await asyncio.sleep(self.options.digits_delay_s)
        try:
            await self.engine.send_dtmf(call_id, self.options.digits)
        except CallplaneError as error:  # the call ended before the digits went out
            self.emit({"event": "error", "call_id": call_id, "detail": error.message})
            return
        self.emit({"event": "digits_sent", "call_id": call_id, "digits": self.options.digits})

    async def _hang_up_later(self, call_id: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        with contextlib.suppress(Exception):  # the far end may have hung up meanwhile; CallEnded reports it
            await self.engine.hangup(call_id)

    async def _listen(self, events: asyncio.Queue[EngineEvent], stop: asyncio.Event) -> int:
        finished = 0
        while (event := await self._next(events, stop)) is not None:
            if isinstance(event, IncomingCall):
                await self.engine.send_ringing(event.call_id)
                await self.engine.answer(event.call_id)
            elif isinstance(event, CallAnswered):
                await self._on_answered(event.call_id)
            elif isinstance(event, CallEnded):
                self._hangup_timers.pop(event.call_id, asyncio.Future()).cancel()
                finished += 1
                if self.options.calls is not None and finished >= self.options.calls:
                    return 0
        return 0

    async def _dial(self, events: asyncio.Queue[EngineEvent], stop: asyncio.Event) -> int:
        assert self.options.dial is not None
        target = self.options.dial
        call_id = await self.engine.dial(
            OutboundCall(
                to_user=target.user,
                trunk=SipTrunk(target.host, target.port, self.options.username, self.options.password),
                from_user=self.options.from_user,
            )
        )
        self.emit({"event": "dialing", "call_id": call_id, "to": f"sip:{target.user}@{target.host}:{target.port}"})
        answered = False
        while (event := await self._next(events, stop)) is not None:
            if isinstance(event, CallAnswered) and event.call_id == call_id:
                answered = True
                await self._on_answered(call_id)
            elif isinstance(event, CallEnded) and event.call_id == call_id:
                return 0 if answered else 1
        with contextlib.suppress(Exception):
            await self.engine.hangup(call_id)
        return 0 if answered else 1


def parse_host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        raise PhoneUsageError(f"{text!r} is not host:port")
    return host or "0.0.0.0", int(port)  # noqa: S104 - a bare :port means every interface, as asked


async def run_phone(options: PhoneOptions, emit: Emit, *, stop: asyncio.Event | None = None) -> int:
    phone = Phone(options, emit)
    return await phone.run(stop or asyncio.Event())


def json_line_emitter(write: Callable[[str], object]) -> Emit:
    """Each event as one JSON line with a wall-clock timestamp."""
    import json

    def emit(fields: dict[str, Any]) -> None:
        write(json.dumps({"at": round(time.time(), 3), **fields}, default=str))

    return emit
