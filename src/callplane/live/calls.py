"""The calls this node carries: their in-memory state, the registry that finds them by our id or the engine's,
and the neutral leg events the call control publishes to in-process listeners.

`LegEvent` is the system's own vocabulary for what happens to a call leg (docs/decisions.md "A neutral call-leg
event vocabulary"); what the outbox records is core's `VoiceEventType`; vendor event names exist only where a
surface renders them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.recordings.voice_files import VoiceFileStore
from callplane.core.voice import queries
from callplane.core.voice.events import VoiceEvent, VoiceEventRenderer, VoiceEventType, publish
from callplane.core.voice.models import HangupSource, VoiceCall, VoiceCallState, VoiceDialog
from callplane.core.voice.queries import RECORDINGS_DIRECTORY
from callplane.core.voice.schemas import MachineDetectionRequest, RecordingRequest
from callplane.core.voice.states import (
    Q850_NO_ANSWER,
    STATUS_ERRORS,
    TERMINAL_STATES,
    CallNotLive,
    Ending,
    ErrorCode,
    state_for_error,
)
from callplane.errors import Conflict
from callplane.media.engine import CallDirection, CallEnded, CallEngine, HangupInitiator

log = logging.getLogger("callplane.voice")

ENDED_REMEMBERED = 10_000


class CallOnAnotherNode(Conflict):
    """The call is carried by another media node; send the command to that node's API. A Conflict, so each surface
    answers it as its own 4xx (joining calls that live on two nodes is refused, docs/decisions.md), never a 500."""

    permanent = False


class LegEvent(StrEnum):
    """What happened to a call leg, for in-process listeners (dialogs, the contact center, call tracking)."""

    RINGING = "RINGING"  # the far end rings (180), or we sent ringing to an inbound caller
    EARLY_MEDIA = "EARLY_MEDIA"  # 183: media before the answer (pre-answered)
    ESTABLISHED = "ESTABLISHED"  # answered
    FINISHED = "FINISHED"  # ended after a normal course
    FAILED = "FAILED"  # ended any other way (busy, no answer, cancelled, failed)
    DIGITS = "DIGITS"  # a DTMF digit arrived
    PLAYBACK_FINISHED = "PLAYBACK_FINISHED"  # a say/play ended (completely or not)
    RECORDING_READY = "RECORDING_READY"  # a recording file of the leg is complete


@dataclass(frozen=True, slots=True)
class LegChange:
    """One leg event, published after its state change is committed."""

    call_id: str
    event: LegEvent
    dialog_id: str | None = None  # the leg's dialog (or the dialog a recording file belongs to)
    recording_id: str | None = None  # RECORDING_READY: the file
    digits: str | None = None  # DIGITS


LegListener = Callable[[LegChange], Awaitable[None]]


@dataclass
class Playback:
    kind: VoiceEventType  # SAY_FINISHED | PLAY_FINISHED
    started: float
    stop_on_dtmf: bool
    terminator: str | None
    custom_data: dict[str, str]
    digits: str = ""
    dialog_id: str | None = None  # a dialog's prompt (played to both parties): reported for the dialog


@dataclass
class LiveCall:
    call_id: str
    engine_id: str
    account_id: str
    direction: CallDirection
    max_duration_s: int
    trunk_id: str | None = None
    requested: Ending | None = None  # how we asked for it to end (LOCAL hangups)
    playbacks: dict[str, Playback] = field(default_factory=dict)
    capture: asyncio.Task[None] | None = None
    pending_play: tuple[asyncio.Task[Any], VoiceEventType, dict[str, str]] | None = (
        None  # accepted, audio still loading
    )
    recording_id: str | None = None
    recording_dialog_id: str | None = None  # the dialog whose recording `recording_id` is (stopped with it)
    recording_limited: bool = False  # `recording_id` has maxSilence/maxDuration: it stops by itself
    recording_beeping: bool = False  # `recording_id` waits for its beep to end before it starts
    record_on_answer: RecordingRequest | None = None
    max_duration_timer: asyncio.TimerHandle | None = None
    in_dialog: bool = False  # its events may touch another call's: they are handled one at a time (see _consume)
    machine_detection: MachineDetectionRequest | None = None  # asked for on the answer (live/machine_detection.py)


def ending_for(event: CallEnded, direction: CallDirection, *, requested: Ending | None = None) -> Ending:
    """How an engine `CallEnded` ends our call; `requested` is what we asked for when we ended it ourselves."""
    if event.initiator is HangupInitiator.LOCAL and requested is not None:
        return requested
    cause = event.reason.cause if event.reason is not None else None
    if event.answered:
        if event.initiator is HangupInitiator.ENGINE:
            return Ending(VoiceCallState.FAILED, HangupSource.PLATFORM, ErrorCode.MEDIA_FAILURE)
        source = HangupSource.API if event.initiator is HangupInitiator.LOCAL else HangupSource.ENDPOINT
        return Ending(VoiceCallState.FINISHED, source, ErrorCode.NORMAL_HANGUP)
    if event.initiator is HangupInitiator.ENGINE:
        if cause == Q850_NO_ANSWER:
            return Ending(VoiceCallState.NO_ANSWER, HangupSource.PLATFORM, ErrorCode.NO_ANSWER)
        return Ending(VoiceCallState.FAILED, HangupSource.PLATFORM, ErrorCode.MEDIA_FAILURE)
    if event.initiator is HangupInitiator.LOCAL:
        return Ending(VoiceCallState.CANCELLED, HangupSource.API, ErrorCode.CANCELLED)
    if direction is CallDirection.INBOUND:  # the caller gave up (CANCEL) before we answered
        return Ending(VoiceCallState.CANCELLED, HangupSource.ENDPOINT, ErrorCode.CANCELLED)
    code = STATUS_ERRORS.get(event.sip_status or 0, ErrorCode.DESTINATION_UNAVAILABLE)
    return Ending(state_for_error(code), HangupSource.ENDPOINT, code)


class LiveCalls:
    """The registry of the calls this process carries, shared by the live plane's components (call control,
    media actions, dialogs): lookups, the background tasks they spawn, and the events they emit."""

    def __init__(
        self,
        *,
        engine: CallEngine,
        sessions: async_sessionmaker[AsyncSession],
        renderer: VoiceEventRenderer,
        data_dir: Path,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.renderer = renderer
        self.data_dir = data_dir
        self.store = VoiceFileStore(data_dir)  # runtime attaches the shared store (voice_files.py)
        self.by_call: dict[str, LiveCall] = {}
        self.by_engine: dict[str, LiveCall] = {}
        self.dialing = 0  # dials in flight: their events may arrive before `dial()` returns
        self.refused: set[str] = set()  # engine ids of inbound calls we refused (unrouted): their events are noise
        # Engine ids of calls that ended here: late events (a playback cancelled by the hangup) are dropped at once
        # instead of waiting for an in-flight dial to register them.
        self.ended: OrderedDict[str, None] = OrderedDict()
        self._registered = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def recordings_dir(self) -> Path:
        return self.data_dir / RECORDINGS_DIRECTORY

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def carries(self, arguments: Mapping[str, Any]) -> bool:
        """Whether this process carries the call a command names (the in-process path of `@relayed`)."""
        return any(arguments.get(name) in self.by_call for name in ("call_id", "parent_call_id"))

    def count(self) -> int:
        return len(self.by_call)

    def get(self, call_id: str | None) -> LiveCall | None:
        return self.by_call.get(call_id or "")

    def register(self, live: LiveCall) -> None:
        self.by_call[live.call_id] = live
        self.by_engine[live.engine_id] = live
        self._registered.set()

    def forget(self, call_id: str) -> LiveCall | None:
        """The call ended: it leaves the registry, its engine id is remembered (late events are dropped)."""
        live = self.by_call.pop(call_id, None)
        if live is not None:
            self.by_engine.pop(live.engine_id, None)
            self.ended[live.engine_id] = None
            while len(self.ended) > ENDED_REMEMBERED:
                self.ended.popitem(last=False)
        return live

    async def known(self, engine_id: str) -> LiveCall | None:
        """The live call of an engine id; waits while a dial is in flight (its events can beat `dial()`'s return)."""
        for _ in range(500):
            live = self.by_engine.get(engine_id)
            if live is not None or self.dialing == 0:
                return live
            self._registered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._registered.wait(), timeout=0.02)
        return self.by_engine.get(engine_id)

    async def get_call(self, *, account_id: str, call_id: str) -> VoiceCall:
        async with self.sessions() as session:
            return await queries.get_call(session, account_id=account_id, call_id=call_id)

    async def require(self, account_id: str, call_id: str) -> LiveCall:
        """The live call a command names, carried here (else why not: not live, or on another node)."""
        live = self.by_call.get(call_id)
        if live is not None and live.account_id == account_id:
            return live
        call = await self.get_call(account_id=account_id, call_id=call_id)
        if call.state in TERMINAL_STATES:
            raise CallNotLive()
        raise CallOnAnotherNode(f"call {call_id} is carried by media node {call.node_id}")

    async def emit(self, call_id: str, event_type: VoiceEventType, **details: Any) -> None:
        """A call's event (its own transaction) to the subscribers of its configuration."""
        async with self.sessions() as session, session.begin():
            call = await session.get(VoiceCall, call_id)
            if call is None:
                return
            await publish(session=session, renderer=self.renderer, event=VoiceEvent(event_type, call, **details))

    async def emit_dialog(self, dialog_id: str, event_type: VoiceEventType, **details: Any) -> None:
        """A dialog's event (its own transaction), carrying both of its calls."""
        async with self.sessions() as session, session.begin():
            dialog = await session.get(VoiceDialog, dialog_id)
            if dialog is None:
                return
            parent = await session.get(VoiceCall, dialog.parent_call_id)
            child = await session.get(VoiceCall, dialog.child_call_id) if dialog.child_call_id else None
            if parent is None:
                return
            event = VoiceEvent(event_type, parent, dialog=dialog, child=child, **details)
            await publish(session=session, renderer=self.renderer, event=event)
