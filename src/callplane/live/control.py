"""The control plane for live calls: commands the media engine and turns its events into state and webhooks.

One `VoiceService` per process that runs the engine. It owns its units of work (each command or engine
event is one transaction, committed before the HTTP answer or before the next event) because it sits
between two outside actors: the API and the engine.

Exactly one terminal event per call: a call leaves a live state through `_finish`, whose UPDATE is
conditional on the call still being live, so whichever path gets there first (engine event, API hangup,
restart recovery) writes the terminal state and its CALL_FINISHED/CALL_FAILED, and every later one is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.calls.models import Call, CallOrigin, CallStatus
from callplane.core.jobs.models import Job, JobKind, JobStatus
from callplane.core.recordings.fetch import FetchLimits, fetch_http
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.voice import files as media_files
from callplane.core.voice import trunks
from callplane.core.voice.configurations import get_configuration, route_for
from callplane.core.voice.events import VoiceEvent, VoiceEventRenderer, publish
from callplane.core.voice.models import (
    CallsConfiguration,
    DialogHangupSource,
    DialogState,
    EndpointType,
    HangupSource,
    VoiceCall,
    VoiceCallState,
    VoiceDialog,
    VoiceRecording,
)
from callplane.core.voice.outbound import check_sip_values, pinned_peer, split_host_port
from callplane.core.voice.queries import RECORDINGS_DIRECTORY
from callplane.core.voice.schemas import (
    DEFAULT_MAX_DURATION_S,
    CallFilter,
    CaptureRequest,
    DialogRecordingRequest,
    Endpoint,
    NewCall,
    PlayContent,
    PlayOptions,
    RecordingRequest,
    Speech,
)
from callplane.core.voice.states import (
    LIVE_STATES,
    REJECT_STATUS,
    TERMINAL_STATES,
    CallNotLive,
    Ending,
    ErrorCode,
    InvalidCallState,
    can_move,
    ending_for,
    state_for_error,
)
from callplane.db.base import new_id, utcnow
from callplane.errors import CallplaneError, InvalidInput, NotFound
from callplane.live import registrar
from callplane.live.dispatch import Forwarder, relayed
from callplane.live.inbound import InboundPlan, InboundPlanner
from callplane.media.engine import (
    RINGBACK,
    CallAnswered,
    CallDirection,
    CallEarlyMedia,
    CallEnded,
    CallEngine,
    CallRinging,
    CollectionEnd,
    DtmfCollection,
    DtmfReceived,
    EngineEvent,
    FileSource,
    IncomingCall,
    OutboundCall,
    PlaybackFinished,
    PlaySource,
    RecordingFinished,
    SipReasonHeader,
    SipTrunk,
    SpeechSource,
    compose_tracks,
)
from callplane.media.engine import RecordingChannels as EngineChannels

log = logging.getLogger("callplane.voice")

DEFAULT_CONNECT_TIMEOUT_S = 60
MAX_CONNECT_TIMEOUT_S = 60
URL_CACHE_DIRECTORY = "voice-url-cache"
DEFAULT_WORDS_PER_MINUTE = 160
ENDED_REMEMBERED = 10_000
# Calls whose events are handled at the same time (each needs a pooled connection; the pool holds 10 by default).
EVENT_LANES = 4
DEFAULT_INBOUND_ANSWER_TIMEOUT_S = 120.0
RINGBACK_LOOPS = 1000  # cadences of ringback: far longer than any connectTimeout


class VoiceCallNotFound(NotFound):
    """Call not found."""


class UnsupportedEndpoint(InvalidInput):
    """This endpoint type is not supported yet: use SIP (or PHONE through a SIP trunk)."""


class RecordingNotFound(NotFound):
    """Recording not found."""


class DialogNotFound(NotFound):
    """Dialog not found."""


DIALOG_LIVE = (DialogState.CREATED, DialogState.PRE_ESTABLISHED, DialogState.ESTABLISHED)
DIALOG_TERMINAL = (DialogState.FINISHED, DialogState.FAILED)


class CallOnAnotherNode(CallplaneError):
    """The call is carried by another media node; send the command to that node's API."""

    permanent = False


# ---- in-memory state of a call this process carries ---------------------------------------------


@dataclass
class _Playback:
    kind: str  # SAY_FINISHED | PLAY_FINISHED
    started: float
    stop_on_dtmf: bool
    terminator: str | None
    custom_data: dict[str, str]
    digits: str = ""
    dialog_id: str | None = None  # a dialog's prompt (played to both parties): reported for the dialog


@dataclass
class _DialogRecording:
    """A dialog recording in progress: its files (one composed, or one per call) until all are ready."""

    files: list[str]
    pending: set[str]
    stopping: bool = False


@dataclass
class _Live:
    call_id: str
    engine_id: str
    account_id: str
    direction: CallDirection
    max_duration_s: int
    trunk_id: str | None = None
    requested: Ending | None = None  # how we asked for it to end (LOCAL hangups)
    playbacks: dict[str, _Playback] = field(default_factory=dict)
    capture: asyncio.Task[None] | None = None
    pending_play: tuple[asyncio.Task[Any], str, dict[str, str]] | None = None  # accepted, audio still loading
    recording_id: str | None = None
    record_on_answer: RecordingRequest | None = None
    max_duration_timer: asyncio.TimerHandle | None = None
    in_dialog: bool = False  # its events may touch another call's: they are handled one at a time (see _consume)


class VoiceService:
    # An inbound call the application has not answered after this long ends NO_ANSWER (480, Q.850 cause 19, source
    # PLATFORM); set from CALLPLANE_VOICE_INBOUND_ANSWER_TIMEOUT_SECONDS.
    inbound_answer_timeout_s: float = DEFAULT_INBOUND_ANSWER_TIMEOUT_S

    def __init__(
        self,
        *,
        engine: CallEngine,
        sessions: async_sessionmaker[AsyncSession],
        secret_box: SecretBox,
        renderer: VoiceEventRenderer,
        data_dir: Path,
        node_id: str,
        fetch_policy: TargetPolicy,
        trunk_channels: trunks.TrunkChannels | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.secret_box = secret_box
        self.renderer = renderer
        self.data_dir = data_dir
        self.node_id = node_id
        self.fetch_policy = fetch_policy
        self.trunk_channels = trunk_channels or trunks.TrunkChannels()
        self._live: dict[str, _Live] = {}
        self._by_engine: dict[str, _Live] = {}
        self._dialing = 0
        self._refused: set[str] = set()  # engine ids of inbound calls we refused (unrouted): their events are noise
        # Engine ids of calls that ended here: late events (a playback cancelled by the hangup) are dropped at once
        # instead of waiting for an in-flight dial to register them.
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._registered = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._lanes: dict[str, asyncio.Task[Any]] = {}  # by engine call id: the last event task of that call
        self._lane_slots = asyncio.Semaphore(EVENT_LANES)
        self._serial_events = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Takes inbound calls that no route owns (call tracking's promo numbers), when set.
        self.inbound_planner: InboundPlanner | None = None
        self._dialogs = _DialogMedia()
        # In-process observers of state changes (call id, event type), called after each change is committed;
        # e.g. the contact center drives its calls from its legs' events. They must return quickly.
        self.listeners: list[Callable[[str, str], Awaitable[None]]] = []
        # Commands for calls carried by another media node go through this (core/voice/relay.py); None: embedded.
        self.relay: Forwarder | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> int:
        """Start the engine, end what a previous process left live, consume events. Returns calls recovered."""
        queue = self.engine.subscribe()
        await self.engine.start()
        recovered = await self.recover_orphans()
        self._consumer = asyncio.create_task(self._consume(queue), name="voice-events")
        return recovered

    async def stop(self) -> None:
        """Hang up every live call (their terminal events are written), then stop the engine."""
        shutdown = Ending(VoiceCallState.FAILED, HangupSource.PLATFORM, ErrorCode.ENGINE_RESTARTED)
        for live in self._live.values():
            live.requested = shutdown  # the engine's LOCAL hangups below end them as a platform shutdown
        await self.engine.stop()
        await asyncio.sleep(0)
        if self._consumer is not None:
            # let the CallEnded events of the engine's own hangups be recorded before we go
            for _ in range(100):
                if not self._live:
                    break
                await asyncio.sleep(0.02)
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        for live in list(self._live.values()):
            await self._finish(live.call_id, shutdown)
        for task in list(self._tasks):
            task.cancel()

    async def recover_orphans(self) -> int:
        """Calls this node left live when it stopped uncleanly end now: FAILED, PLATFORM, ENGINE_RESTARTED."""
        async with self.sessions() as session:
            ids = list(
                await session.scalars(
                    select(VoiceCall.id).where(VoiceCall.node_id == self.node_id, VoiceCall.state.in_(LIVE_STATES))
                )
            )
        ending = Ending(VoiceCallState.FAILED, HangupSource.PLATFORM, ErrorCode.ENGINE_RESTARTED)
        for call_id in ids:
            await self._finish(call_id, ending)
        if ids:
            log.warning("ended calls left live by a previous process", extra={"fields": {"calls": len(ids)}})
        return len(ids)

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- lookups (also for other voice routes) --------------------------------------------------

    def carries(self, arguments: Mapping[str, Any]) -> bool:
        """Whether this process carries the call a command names (the in-process path of `@relayed`)."""
        return any(arguments.get(name) in self._live for name in ("call_id", "parent_call_id"))

    def live_count(self) -> int:
        return len(self._live)

    async def get_call(self, *, account_id: str, call_id: str, session: AsyncSession | None = None) -> VoiceCall:
        if session is None:
            async with self.sessions() as own:
                return await self.get_call(account_id=account_id, call_id=call_id, session=own)
        call = await session.get(VoiceCall, call_id)
        if call is None or call.account_id != account_id:
            raise VoiceCallNotFound()
        return call

    async def live_engine_call_id(self, *, account_id: str, call_id: str) -> str:
        """The engine's id of a live call this process carries (for bridging and other engine commands)."""
        return (await self._live_call(account_id, call_id)).engine_id

    async def _live_call(self, account_id: str, call_id: str) -> _Live:
        live = self._live.get(call_id)
        if live is not None and live.account_id == account_id:
            return live
        call = await self.get_call(account_id=account_id, call_id=call_id)
        if call.state in TERMINAL_STATES:
            raise CallNotLive()
        raise CallOnAnotherNode(f"call {call_id} is carried by media node {call.node_id}")

    async def list_calls(
        self, *, account_id: str, filters: CallFilter, offset: int, limit: int
    ) -> tuple[list[VoiceCall], int]:
        states = LIVE_STATES if filters.live else TERMINAL_STATES
        conditions: list[Any] = [VoiceCall.account_id == account_id]
        if filters.state:
            if filters.state not in states:
                return [], 0
            conditions.append(VoiceCall.state == filters.state)
        else:
            conditions.append(VoiceCall.state.in_(states))
        if filters.conference_id:
            return [], 0  # conferences are not built: no call is in one
        for column, value in (
            (VoiceCall.endpoint_type, filters.endpoint_type),
            (VoiceCall.configuration_id, filters.configuration_id),
            (VoiceCall.from_user, filters.from_user),
            (VoiceCall.to_user, filters.to_user),
            (VoiceCall.direction, filters.direction),
            (VoiceCall.dialog_id, filters.dialog_id),
        ):
            if value:
                conditions.append(column == value)
        if filters.start_time_after is not None:
            conditions.append(VoiceCall.created_at > filters.start_time_after)
        async with self.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(VoiceCall).where(*conditions)) or 0
            rows = await session.scalars(
                select(VoiceCall)
                .where(*conditions)
                .order_by(VoiceCall.created_at.desc(), VoiceCall.id)
                .offset(offset)
                .limit(limit)
            )
            return list(rows), total

    # ---- creating calls -------------------------------------------------------------------------

    @relayed
    async def create_call(self, *, account_id: str, request: NewCall) -> VoiceCall:
        """Commit the call (CALLING), then dial; a dial that fails at once ends the call FAILED with its event."""
        timeout = request.connect_timeout_s or DEFAULT_CONNECT_TIMEOUT_S
        if not 1 <= timeout <= MAX_CONNECT_TIMEOUT_S:
            raise InvalidInput(f"connectTimeout must be between 1 and {MAX_CONNECT_TIMEOUT_S} seconds")
        if request.max_duration_s < 1:
            raise InvalidInput("maxDuration must be at least 1 second")
        async with self.sessions() as session:
            await get_configuration(session=session, account_id=account_id, configuration_id=request.configuration_id)
            outbound = await self._outbound(session, account_id, request, timeout)
            call = self._new_call(
                account_id=account_id,
                configuration_id=request.configuration_id,
                direction=CallDirection.OUTBOUND,
                endpoint=request.endpoint,
                from_user=request.from_user or outbound.from_user,
                to_user=request.endpoint.user,
                custom_data=dict(request.custom_data),
                external_id=request.external_id,
                parent_call_id=request.parent_call_id,
                max_duration_s=request.max_duration_s,
                connect_timeout_s=timeout,
                dialog_id=request.dialog_id,
            )
            session.add_all(self._core_rows(call))
            await session.commit()
            call_id = call.id
        trunk_id = request.endpoint.trunk_id if request.endpoint.type is EndpointType.PHONE else None
        self._dialing += 1
        try:
            engine_id = await self.engine.dial(outbound)
        except CallplaneError as error:
            if trunk_id:
                self.trunk_channels.release(trunk_id)
            log.info("dial failed", extra={"fields": {"call_id": call_id, "error": type(error).__name__}})
            await self._finish(
                call_id, Ending(VoiceCallState.FAILED, HangupSource.PLATFORM, ErrorCode.DESTINATION_UNAVAILABLE)
            )
            return await self.get_call(account_id=account_id, call_id=call_id)
        finally:
            self._dialing -= 1
        live = _Live(
            call_id=call_id,
            engine_id=engine_id,
            account_id=account_id,
            direction=CallDirection.OUTBOUND,
            max_duration_s=request.max_duration_s,
            trunk_id=trunk_id,
            record_on_answer=request.recording,
        )
        self._register(live)
        async with self.sessions() as session, session.begin():
            await session.execute(update(VoiceCall).where(VoiceCall.id == call_id).values(engine_call_id=engine_id))
        return await self.get_call(account_id=account_id, call_id=call_id)

    async def _outbound(
        self, session: AsyncSession, account_id: str, request: NewCall, ring_timeout_s: int
    ) -> OutboundCall:
        endpoint = request.endpoint
        peer = await self._target(session, account_id, request)
        if endpoint.type is EndpointType.PHONE and endpoint.trunk_id is not None:  # _target refused one without
            call = await registrar.phone_call_through_trunk(
                session=session,
                account_id=account_id,
                trunk_id=endpoint.trunk_id,
                phone_number=endpoint.user,
                from_number=request.from_user,
                secret_box=self.secret_box,
                channels=self.trunk_channels,
                from_display_name=request.from_display_name,
                headers=endpoint.headers,
                ring_timeout_s=float(ring_timeout_s),
            )
            return replace(call, trunk=peer)
        return OutboundCall(
            to_user=endpoint.user,
            trunk=peer,
            from_user=request.from_user or "callplane",
            from_display_name=request.from_display_name,
            headers=dict(endpoint.headers),
            ring_timeout_s=float(ring_timeout_s),
        )

    async def _target(self, session: AsyncSession, account_id: str, request: NewCall) -> SipTrunk:
        """Where the INVITE goes, checked: what goes into its headers and URIs (no CR LF, no header the stack
        owns), and the peer's address under the outbound target policy, pinned so the INVITE goes to exactly
        the address checked (core/voice/outbound.py). Raises before anything is stored or sent."""
        endpoint = request.endpoint
        sip_users = (endpoint.user, request.from_user) if endpoint.type is EndpointType.SIP else ()
        check_sip_values(headers=endpoint.headers, display_name=request.from_display_name, users=sip_users)
        if endpoint.type is EndpointType.PHONE and endpoint.trunk_id is None:
            raise UnsupportedEndpoint("a PHONE endpoint needs a SIP trunk: give sipTrunkId")
        if endpoint.trunk_id is not None:
            trunk = await trunks.get_trunk(session=session, account_id=account_id, trunk_id=endpoint.trunk_id)
            peer, what = registrar.sip_peer(trunk, self.secret_box), f"SIP trunk {trunk.id} ({trunk.host})"
        elif endpoint.host:
            host, port = split_host_port(endpoint.host)
            peer, what = SipTrunk(host=host, port=port), f"SIP host {endpoint.host}"
        else:
            raise InvalidInput("a SIP endpoint needs sipTrunkId or host")
        return await pinned_peer(self.fetch_policy, peer, what=what)

    def _new_call(
        self,
        *,
        account_id: str,
        configuration_id: str,
        direction: CallDirection,
        endpoint: Endpoint,
        from_user: str | None,
        to_user: str | None,
        custom_data: dict[str, str],
        max_duration_s: int,
        external_id: str | None = None,
        parent_call_id: str | None = None,
        connect_timeout_s: int | None = None,
        sip_call_id: str | None = None,
        engine_call_id: str | None = None,
        dialog_id: str | None = None,
    ) -> VoiceCall:
        return VoiceCall(
            id=new_id(),
            account_id=account_id,
            configuration_id=configuration_id,
            direction=direction.value,
            state=VoiceCallState.CALLING,
            endpoint_type=endpoint.type,
            endpoint_user=endpoint.user,
            endpoint_host=endpoint.host,
            trunk_id=endpoint.trunk_id,
            from_user=from_user,
            to_user=to_user,
            external_id=external_id,
            parent_call_id=parent_call_id,
            dialog_id=dialog_id,
            custom_data=custom_data,
            sip_call_id=sip_call_id,
            engine_call_id=engine_call_id,
            node_id=self.node_id,
            connect_timeout_s=connect_timeout_s,
            max_duration_s=max_duration_s,
            created_at=utcnow(),
        )

    @staticmethod
    def _core_rows(call: VoiceCall) -> list[Any]:
        """The core Call (same id) first, so it is inserted before the voice row that references it."""
        contact = call.endpoint_user
        core = Call(
            id=call.id,
            account_id=call.account_id,
            origin=CallOrigin.VOICE,
            external_id=call.external_id,
            direction=call.direction.lower(),
            from_e164=_e164(call.from_user),
            to_e164=_e164(call.to_user),
            contact_e164=_e164(contact),
            started_at=call.created_at,
            status=CallStatus.PROCESSING,
            extras={"voice_state": call.state, "voice_configuration_id": call.configuration_id},
        )
        return [core, call]

    def _register(self, live: _Live) -> None:
        self._live[live.call_id] = live
        self._by_engine[live.engine_id] = live
        self._registered.set()
        if live.direction is CallDirection.INBOUND:
            asyncio.get_running_loop().call_later(
                self.inbound_answer_timeout_s, lambda: self._spawn(self._answer_timeout(live), "answer-timeout")
            )

    async def _answer_timeout(self, live: _Live) -> None:
        """Nobody answered the inbound call in time: 480 to the caller, the call ends NO_ANSWER (PLATFORM)."""
        if self._live.get(live.call_id) is not live:
            return
        call = await self.get_call(account_id=live.account_id, call_id=live.call_id)
        if call.state not in (VoiceCallState.CALLING, VoiceCallState.RINGING, VoiceCallState.PRE_ESTABLISHED):
            return
        live.requested = Ending(VoiceCallState.NO_ANSWER, HangupSource.PLATFORM, ErrorCode.NO_ANSWER)
        with contextlib.suppress(CallplaneError):
            await self.engine.reject(live.engine_id, status=480, reason=SipReasonHeader("Q.850", 19))

    # ---- actions --------------------------------------------------------------------------------

    @relayed
    async def send_ringing(self, *, account_id: str, call_id: str) -> None:
        live = await self._live_call(account_id, call_id)
        self._require_inbound(live)
        await self.engine.send_ringing(live.engine_id)
        await self._move(call_id, VoiceCallState.RINGING, "CALL_RINGING", ringing=True)

    @relayed
    async def pre_answer(self, *, account_id: str, call_id: str, ringing: bool = False) -> None:
        live = await self._live_call(account_id, call_id)
        self._require_inbound(live)
        if ringing:
            await self.engine.send_ringing(live.engine_id)
        await self.engine.pre_answer(live.engine_id)
        await self._move(call_id, VoiceCallState.PRE_ESTABLISHED, "CALL_PRE_ESTABLISHED")

    @relayed
    async def answer(
        self,
        *,
        account_id: str,
        call_id: str,
        recording: RecordingRequest | None = None,
        custom_data: Mapping[str, str] | None = None,
    ) -> None:
        live = await self._live_call(account_id, call_id)
        self._require_inbound(live)
        live.record_on_answer = recording
        await self._merge_custom_data(call_id, custom_data)
        await self.engine.answer(live.engine_id)  # CallAnswered moves it to ESTABLISHED

    @relayed
    async def hangup(self, *, account_id: str, call_id: str, error_code: ErrorCode | None = None) -> VoiceCall:
        """End the call; answers with the call as it is now (the terminal state follows from the engine)."""
        live = await self._live_call(account_id, call_id)
        call = await self.get_call(account_id=account_id, call_id=call_id)
        code = error_code or ErrorCode.NORMAL_HANGUP
        if call.state == VoiceCallState.ESTABLISHED:
            live.requested = Ending(VoiceCallState.FINISHED, HangupSource.API, code)
            await self.engine.hangup(live.engine_id)
        elif live.direction is CallDirection.INBOUND:
            status, cause = REJECT_STATUS.get(code, (480, 16))
            live.requested = Ending(state_for_error(code), HangupSource.API, code)
            await self.engine.reject(live.engine_id, status=status, reason=SipReasonHeader("Q.850", cause))
        else:
            live.requested = Ending(VoiceCallState.CANCELLED, HangupSource.API, error_code or ErrorCode.CANCELLED)
            await self.engine.hangup(live.engine_id)
        return call

    @relayed
    async def say(self, *, account_id: str, call_id: str, speech: Speech, options: PlayOptions) -> None:
        await self._start_playback(account_id, call_id, PlayContent(speech=speech), options, "SAY_FINISHED")

    @relayed
    async def play(self, *, account_id: str, call_id: str, content: PlayContent, options: PlayOptions) -> None:
        await self._start_playback(account_id, call_id, content, options, "PLAY_FINISHED")

    @relayed
    async def stop_play(self, *, account_id: str, call_id: str) -> None:
        live = await self._live_call(account_id, call_id)
        pending, live.pending_play = live.pending_play, None
        if pending is not None and not pending[0].done():
            pending[0].cancel()  # stopped before its audio was ready: it never played
            await self._emit(call_id, pending[1], played_completely=False, duration_ms=0, custom_data=pending[2])
            return
        await self.engine.stop_playback(live.engine_id)

    @relayed
    async def send_dtmf(self, *, account_id: str, call_id: str, digits: str) -> None:
        if not digits or any(digit not in "0123456789*#ABCDabcd" for digit in digits):
            raise InvalidInput("dtmf must be digits 0-9, *, # or A-D")
        live = await self._live_call(account_id, call_id)
        self._spawn(self._guarded(live, "SEND_DTMF", self.engine.send_dtmf(live.engine_id, digits.upper())), "dtmf")

    @relayed
    async def capture_dtmf(self, *, account_id: str, call_id: str, request: CaptureRequest) -> None:
        if request.max_length < 1:
            raise InvalidInput("maxLength must be at least 1")
        if request.timeout_ms < 1:
            raise InvalidInput("timeout must be a positive number of milliseconds")
        live = await self._live_call(account_id, call_id)
        if live.capture is not None and not live.capture.done():
            raise InvalidCallState("a DTMF capture is already running on this call")
        source = await self._source(account_id, request.play) if request.play is not None else None
        live.capture = self._spawn(self._capture(live, request, source), "capture")

    @relayed
    async def start_recording(self, *, account_id: str, call_id: str, request: RecordingRequest) -> None:
        live = await self._live_call(account_id, call_id)
        call = await self.get_call(account_id=account_id, call_id=call_id)
        if call.state not in (VoiceCallState.ESTABLISHED, VoiceCallState.PRE_ESTABLISHED):
            raise InvalidCallState("only a connected call can be recorded")
        await self._begin_recording(live, call, request)

    @relayed
    async def stop_recording(self, *, account_id: str, call_id: str) -> None:
        live = await self._live_call(account_id, call_id)
        if live.recording_id is None:
            raise InvalidCallState("the call is not being recorded")
        if self._dialogs.recording_of(live.recording_id) is not None:
            raise InvalidCallState("the call is recorded as part of its dialog: stop the dialog's recording")
        await self.engine.stop_recording(live.engine_id)  # RecordingFinished makes it ready

    # ---- recordings -----------------------------------------------------------------------------

    def recordings_dir(self) -> Path:
        return self.data_dir / RECORDINGS_DIRECTORY

    async def list_recordings(
        self,
        *,
        account_id: str,
        call_id: str | None = None,
        configuration_id: str | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[tuple[VoiceCall, list[VoiceRecording]]], int]:
        """Calls that have ready recordings, newest first, each with its files."""
        conditions: list[Any] = [
            VoiceRecording.account_id == account_id,
            VoiceRecording.ready.is_(True),
            VoiceRecording.dialog_id.is_(None),  # a dialog's files are listed under /recordings/dialogs
        ]
        if call_id:
            conditions.append(VoiceRecording.call_id == call_id)
        if configuration_id:
            conditions.append(VoiceRecording.configuration_id == configuration_id)
        async with self.sessions() as session:
            call_ids = select(VoiceRecording.call_id).where(*conditions).distinct().subquery()
            total = await session.scalar(select(func.count()).select_from(call_ids)) or 0
            calls = list(
                await session.scalars(
                    select(VoiceCall)
                    .where(VoiceCall.id.in_(select(call_ids.c.call_id)))
                    .order_by(VoiceCall.created_at.desc(), VoiceCall.id)
                    .offset(offset)
                    .limit(limit)
                )
            )
            files = list(
                await session.scalars(
                    select(VoiceRecording)
                    .where(*conditions, VoiceRecording.call_id.in_([call.id for call in calls]))
                    .order_by(VoiceRecording.started_at)
                )
            )
        return [(call, [f for f in files if f.call_id == call.id]) for call in calls], total

    async def call_recordings(self, *, account_id: str, call_id: str) -> tuple[VoiceCall, list[VoiceRecording]]:
        found, _ = await self.list_recordings(account_id=account_id, call_id=call_id, limit=1)
        if not found:
            raise RecordingNotFound()
        return found[0]

    async def delete_call_recordings(self, *, account_id: str, call_id: str) -> tuple[VoiceCall, list[VoiceRecording]]:
        call, recordings = await self.call_recordings(account_id=account_id, call_id=call_id)
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(VoiceRecording)
                .where(VoiceRecording.call_id == call_id, VoiceRecording.account_id == account_id)
                .values(ready=False, deleted_at=utcnow())
            )
        for recording in recordings:
            with contextlib.suppress(FileNotFoundError):
                (self.recordings_dir() / recording.storage_key).unlink()
        return call, recordings

    async def recording_file(self, *, account_id: str, file_id: str) -> tuple[VoiceRecording, Path]:
        async with self.sessions() as session:
            recording = await session.get(VoiceRecording, file_id)
        if recording is None or recording.account_id != account_id or not recording.ready:
            raise RecordingNotFound("Recording file not found.")
        path = self.recordings_dir() / recording.storage_key
        if not path.is_file():
            raise RecordingNotFound("Recording file not found.")
        return recording, path

    async def delete_recording_file(self, *, account_id: str, file_id: str) -> VoiceRecording:
        recording, path = await self.recording_file(account_id=account_id, file_id=file_id)
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(VoiceRecording).where(VoiceRecording.id == file_id).values(ready=False, deleted_at=utcnow())
            )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return recording

    # ---- engine events --------------------------------------------------------------------------

    async def _consume(self, queue: asyncio.Queue[EngineEvent]) -> None:
        """Each call's events in order on its own lane; lanes of different calls overlap (up to EVENT_LANES at a
        time), so one call's database round trips no longer wait behind every other call's. An event that may
        touch another call (outbound and dialog calls, whose legs and dialog rows are shared) still takes the one
        serial lock, as all events did before."""
        while True:
            event = await queue.get()
            key = getattr(event, "call_id", None)
            if key is None:  # registration events: in order, here
                await self._handle_logged(event)
                continue
            lane = self._spawn(self._lane(self._lanes.get(key), event), "voice-event")
            self._lanes[key] = lane
            lane.add_done_callback(functools.partial(self._lane_done, key))

    def _lane_done(self, key: str, done: asyncio.Task[Any]) -> None:
        if self._lanes.get(key) is done:
            del self._lanes[key]

    async def _lane(self, previous: asyncio.Task[Any] | None, event: EngineEvent) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its own failure was logged where it happened
        async with self._lane_slots:
            if self._crosses_calls(event):
                async with self._serial_events:
                    await self._handle_logged(event)
            else:
                await self._handle_logged(event)

    def _crosses_calls(self, event: EngineEvent) -> bool:
        """Whether handling `event` may read or change another call's state (then it runs alone)."""
        if isinstance(event, IncomingCall | DtmfReceived):
            return False  # a new call's rows; digits only touch this call's playbacks
        live = self._by_engine.get(getattr(event, "call_id", ""))
        if live is None or live.direction != CallDirection.INBOUND or live.in_dialog:
            return True  # a dial in flight, an outbound leg (dialogs, contact center) or a dialog's party
        if isinstance(event, PlaybackFinished):
            playback = live.playbacks.get(event.playback_id)
            return playback is not None and playback.dialog_id is not None
        return False

    async def _handle_logged(self, event: EngineEvent) -> None:
        try:
            await self._handle(event)
        except Exception:  # one bad event must not stop the others; logged with its cause
            log.exception("voice event handling failed", extra={"fields": {"event": type(event).__name__}})

    async def _known(self, engine_id: str) -> _Live | None:
        """The live call of an engine id; waits while a dial is in flight (its events can beat `dial()`'s return)."""
        for _ in range(500):
            live = self._by_engine.get(engine_id)
            if live is not None or self._dialing == 0:
                return live
            self._registered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._registered.wait(), timeout=0.02)
        return self._by_engine.get(engine_id)

    async def _handle(self, event: EngineEvent) -> None:
        if isinstance(event, IncomingCall):
            await self._on_incoming(event)
            return
        engine_id = getattr(event, "call_id", None)
        if engine_id is None:
            return  # registration events belong to the trunk registrar
        if engine_id in self._refused:
            if isinstance(event, CallEnded):
                self._refused.discard(engine_id)
            return
        if engine_id in self._ended:
            return
        live = await self._known(engine_id)
        if live is None:
            return
        if isinstance(event, CallRinging):
            await self._move(live.call_id, VoiceCallState.RINGING, "CALL_RINGING", ringing=True)
            await self._dialog_child_progress(live.call_id)
        elif isinstance(event, CallEarlyMedia):
            await self._move(live.call_id, VoiceCallState.PRE_ESTABLISHED, "CALL_PRE_ESTABLISHED", ringing=True)
            await self._dialog_child_progress(live.call_id)
        elif isinstance(event, CallAnswered):
            await self._on_answered(live)
        elif isinstance(event, DtmfReceived):
            await self._on_digit(live, event.digit)
        elif isinstance(event, PlaybackFinished):
            await self._on_playback_finished(live, event)
        elif isinstance(event, RecordingFinished):
            await self._on_recording_finished(live, event)
        elif isinstance(event, CallEnded):
            await self._on_ended(live, event)

    async def _on_incoming(self, event: IncomingCall) -> None:
        async with self.sessions() as session:
            route = await route_for(session=session, called_user=event.to_user)
            plan: InboundPlan | None = None
            if route is None and self.inbound_planner is not None:
                plan = await self.inbound_planner.plan(session=session, event=event)
            if route is None and plan is None:
                self._refused.add(event.call_id)
                await self.engine.reject(event.call_id, status=404, reason=SipReasonHeader("Q.850", 1))
                log.info("inbound call to an unrouted user", extra={"fields": {"to": event.to_user}})
                return
            owner = route or plan
            assert owner is not None
            call = self._new_call(
                account_id=owner.account_id,
                configuration_id=owner.configuration_id,
                direction=CallDirection.INBOUND,
                endpoint=Endpoint(EndpointType.SIP, event.from_user),
                from_user=event.from_user,
                to_user=event.to_user,
                custom_data={name: value for name, value in event.headers.items() if name.startswith("x-")},
                max_duration_s=DEFAULT_MAX_DURATION_S,
                sip_call_id=event.sip_call_id,
                engine_call_id=event.call_id,
            )
            session.add_all(self._core_rows(call))
            await session.flush()
            if plan is not None and self.inbound_planner is not None:
                await self.inbound_planner.accepted(session=session, call=call, plan=plan)
            await publish(session=session, renderer=self.renderer, event=VoiceEvent("CALL_RECEIVED", call))
            await session.commit()
            self._register(
                _Live(
                    call_id=call.id,
                    engine_id=event.call_id,
                    account_id=call.account_id,
                    direction=CallDirection.INBOUND,
                    max_duration_s=call.max_duration_s,
                    record_on_answer=RecordingRequest(channels=plan.record) if plan and plan.record else None,
                )
            )
        if plan is not None and self.inbound_planner is not None:
            self._spawn(self.inbound_planner.connect(voice=self, call=call, plan=plan), "inbound-connect")

    async def _on_answered(self, live: _Live) -> None:
        call = await self._move(live.call_id, VoiceCallState.ESTABLISHED, "CALL_ESTABLISHED", answered=True)
        if call is None:
            return
        loop = asyncio.get_running_loop()
        live.max_duration_timer = loop.call_later(
            live.max_duration_s, lambda: self._spawn(self._max_duration_reached(live), "max-duration")
        )
        if live.record_on_answer is not None:
            await self._begin_recording(live, call, live.record_on_answer)
        if call.dialog_id is not None:
            await self._dialog_leg_answered(call)

    async def _max_duration_reached(self, live: _Live) -> None:
        live.requested = Ending(VoiceCallState.FINISHED, HangupSource.PLATFORM, ErrorCode.MAX_DURATION_REACHED)
        with contextlib.suppress(CallplaneError):
            await self.engine.hangup(live.engine_id)

    async def _on_digit(self, live: _Live, digit: str) -> None:
        for playback_id, playback in list(live.playbacks.items()):
            if not playback.stop_on_dtmf:
                continue
            if playback.terminator is None or digit == playback.terminator:
                if playback.terminator is None:
                    playback.digits += digit
                with contextlib.suppress(CallplaneError):
                    await self.engine.stop_playback(live.engine_id)
                live.playbacks[playback_id] = playback
            else:
                playback.digits += digit

    async def _on_playback_finished(self, live: _Live, event: PlaybackFinished) -> None:
        playback = live.playbacks.pop(event.playback_id, None)
        if playback is None:
            return  # a capture's prompt or an unknown playback: nothing to report
        duration_ms = round((time.monotonic() - playback.started) * 1000)
        if playback.dialog_id is not None:
            await self._emit_dialog(
                playback.dialog_id, playback.kind, played_completely=event.completed, duration_ms=duration_ms
            )
            return
        await self._emit(
            live.call_id,
            playback.kind,
            played_completely=event.completed,
            duration_ms=duration_ms,
            digits=playback.digits if playback.stop_on_dtmf else None,
            custom_data=playback.custom_data,
        )

    async def _on_recording_finished(self, live: _Live, event: RecordingFinished) -> None:
        recording_id, live.recording_id = live.recording_id, None
        if recording_id is None:
            return
        size = event.path.stat().st_size if event.path.exists() else None
        async with self.sessions() as session, session.begin():
            recording = await session.get(VoiceRecording, recording_id)
            call = await session.get(VoiceCall, live.call_id)
            if recording is None or call is None:
                return
            recording.ready = True
            recording.ended_at = utcnow()
            recording.duration_ms = event.duration_ms
            recording.size_bytes = size
            await session.flush()
            dialog_id = recording.dialog_id
            if dialog_id is None:
                await publish(
                    session=session,
                    renderer=self.renderer,
                    event=VoiceEvent("CALL_RECORDING_READY", call, recording=recording),
                )
        if dialog_id is not None:
            await self._dialog_file_ready(dialog_id, recording_id)

    async def _on_ended(self, live: _Live, event: CallEnded) -> None:
        ending = ending_for(event, live.direction, requested=live.requested)
        await self._finish(live.call_id, ending, sip_status=event.sip_status, reason=event.reason)

    # ---- state changes --------------------------------------------------------------------------

    async def _move(
        self, call_id: str, target: VoiceCallState, event_type: str, *, ringing: bool = False, answered: bool = False
    ) -> VoiceCall | None:
        """Move a live call forward (a conditional UPDATE) and publish its event; the moved call, or None when it
        cannot move."""
        async with self.sessions() as session, session.begin():
            call = await session.get(VoiceCall, call_id)
            if call is None or not can_move(call.state, target):
                return None
            sources = [state for state in LIVE_STATES if can_move(state, target)]
            values: dict[str, Any] = {"state": target}
            now = utcnow()
            if ringing and call.ringing_at is None:
                values["ringing_at"] = now
            if answered:
                values["answered_at"] = now
            # RETURNING the row refreshes `call` in the same statement (a SELECT per move less than a refresh)
            moved = await session.scalar(
                update(VoiceCall)
                .where(VoiceCall.id == call_id, VoiceCall.state.in_(sources))
                .values(**values)
                .returning(VoiceCall)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
            if moved is None:
                return None
            call = moved
            await self._touch_core(session, call)
            await publish(session=session, renderer=self.renderer, event=VoiceEvent(event_type, call, at=now))
        await self._notify(call_id, event_type)
        return call

    async def _notify(self, call_id: str, event_type: str) -> None:
        for listener in self.listeners:
            try:
                await listener(call_id, event_type)
            except Exception:  # an observer's failure must not stop the call's own handling; logged with its cause
                log.exception("voice listener failed", extra={"fields": {"call_id": call_id, "event": event_type}})

    async def _finish(
        self, call_id: str, ending: Ending, *, sip_status: int | None = None, reason: SipReasonHeader | None = None
    ) -> bool:
        """The one way a call ends: terminal state, core Call closed and exactly one terminal event."""
        live = self._live.pop(call_id, None)
        if live is not None:
            self._by_engine.pop(live.engine_id, None)
            self._ended[live.engine_id] = None
            while len(self._ended) > ENDED_REMEMBERED:
                self._ended.popitem(last=False)
            if live.max_duration_timer is not None:
                live.max_duration_timer.cancel()
            if live.capture is not None:
                live.capture.cancel()
            if live.trunk_id is not None:
                self.trunk_channels.release(live.trunk_id)
        now = utcnow()
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(VoiceCall)
                .where(VoiceCall.id == call_id, VoiceCall.state.in_(LIVE_STATES))
                .values(
                    state=ending.state,
                    ended_at=now,
                    hangup_source=ending.hangup_source,
                    error_code=int(ending.error_code),
                    sip_status=sip_status,
                    sip_reason=str(reason) if reason is not None else None,
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                return False
            call = await session.get(VoiceCall, call_id)
            assert call is not None
            await self._touch_core(session, call, ended=True)
            await self._queue_post_call(session, call)
            event_type = "CALL_FINISHED" if ending.state == VoiceCallState.FINISHED else "CALL_FAILED"
            await publish(session=session, renderer=self.renderer, event=VoiceEvent(event_type, call, at=now))
            dialog_id = call.dialog_id
        await self._notify(call_id, event_type)
        if dialog_id is not None:
            await self._dialog_leg_ended(dialog_id, call_id)
        return True

    @staticmethod
    async def _touch_core(session: AsyncSession, call: VoiceCall, *, ended: bool = False) -> None:
        core = await session.get(Call, call.id)
        if core is None:
            return
        core.extras = {**core.extras, "voice_state": call.state}
        core.updated_at = utcnow()
        if ended:
            core.ended_at = call.ended_at
            core.status = CallStatus.COMPLETED
            core.status_reason = call.state
            start = call.answered_at or call.created_at
            if call.ended_at is not None and call.answered_at is not None:
                core.duration_ms = max(0, round((call.ended_at - start).total_seconds() * 1000))

    @staticmethod
    async def _queue_post_call(session: AsyncSession, call: VoiceCall) -> None:
        """When the configuration asks, the call's last recording goes through the post-call pipeline."""
        configuration = await session.get(CallsConfiguration, call.configuration_id)
        if configuration is None or not configuration.post_call_processing:
            return
        recording = await session.scalar(
            select(VoiceRecording)
            .where(VoiceRecording.call_id == call.id, VoiceRecording.ready.is_(True))
            .order_by(VoiceRecording.started_at.desc())
            .limit(1)
        )
        core = await session.get(Call, call.id)
        if recording is None or core is None:
            return
        core.recording_filename = recording.storage_key
        core.status = CallStatus.QUEUED
        core.status_reason = None
        session.add(
            Job(account_id=call.account_id, call_id=call.id, kind=JobKind.PROCESS_CALL, status=JobStatus.QUEUED)
        )

    async def _emit(self, call_id: str, event_type: str, **details: Any) -> None:
        async with self.sessions() as session, session.begin():
            call = await session.get(VoiceCall, call_id)
            if call is None:
                return
            await publish(session=session, renderer=self.renderer, event=VoiceEvent(event_type, call, **details))

    async def _merge_custom_data(self, call_id: str, custom_data: Mapping[str, str] | None) -> None:
        if not custom_data:
            return
        async with self.sessions() as session, session.begin():
            call = await session.get(VoiceCall, call_id)
            if call is not None:
                call.custom_data = {**call.custom_data, **custom_data}

    # ---- media helpers --------------------------------------------------------------------------

    @staticmethod
    def _require_inbound(live: _Live) -> None:
        if live.direction is not CallDirection.INBOUND:
            raise InvalidCallState("only an inbound call can be answered, pre-answered or rung")

    async def _start_playback(
        self, account_id: str, call_id: str, content: PlayContent, options: PlayOptions, kind: str
    ) -> None:
        if options.loop_count < 1:
            raise InvalidInput("loopCount must be at least 1")
        live = await self._live_call(account_id, call_id)
        # a URL is fetched in the background (it may be slow or fail: an ERROR event); the rest is checked now
        source = None if content.url is not None else await self._source(account_id, content)

        async def start() -> None:
            started = time.monotonic()
            playback_id = await self.engine.play(
                live.engine_id,
                source if source is not None else FileSource(await self._download(content.url or "")),
                loop_count=options.loop_count,
                offset_ms=options.offset_ms,
                timeout_ms=options.timeout_ms,
            )
            for previous, playing in list(live.playbacks.items()):
                if playing.dialog_id is None:  # replaced: the engine reports it stopped, we report only the new one
                    live.playbacks.pop(previous)
            live.playbacks[playback_id] = _Playback(
                kind=kind,
                started=started,
                stop_on_dtmf=options.stop_on_dtmf,
                terminator=options.stop_terminator,
                custom_data=dict(options.custom_data),
            )

        action = "SAY" if kind == "SAY_FINISHED" else "PLAY"
        if live.pending_play is not None:
            live.pending_play[0].cancel()  # replaced before it started
        task = self._spawn(self._guarded(live, action, start()), "play")
        live.pending_play = (task, kind, dict(options.custom_data))

    async def _guarded(self, live: _Live, action: str, work: Any) -> None:
        """Run an accepted action; a failure becomes an ERROR event (the API already answered 200)."""
        try:
            await work
        except CallplaneError as error:
            if live.call_id in self._live:
                await self._emit(live.call_id, "ERROR", action=action, detail=error.message)

    async def _source(self, account_id: str, content: PlayContent) -> PlaySource:
        if content.speech is not None:
            return _speech_source(content.speech)
        if content.file_id is not None:
            async with self.sessions() as session, session.begin():  # a play moves the file's unused expiry
                path = await media_files.resolve_file_path(
                    session=session, account_id=account_id, file_id=content.file_id, data_dir=self.data_dir
                )
            return FileSource(path)
        if content.recording_file_id is not None:
            _, path = await self.recording_file(account_id=account_id, file_id=content.recording_file_id)
            return FileSource(path)
        if content.url is not None:
            return FileSource(await self._download(content.url))
        raise InvalidInput("content needs a file, a recording, a URL or text")

    async def _download(self, url: str) -> Path:
        """A customer URL, fetched once through the SSRF-safe fetcher and cached by URL."""
        cache = self.data_dir / URL_CACHE_DIRECTORY
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / hashlib.sha256(url.encode()).hexdigest()
        if not target.is_file():
            await fetch_http(url, dest=target, policy=self.fetch_policy, limits=FetchLimits(max_bytes=64 * 1024 * 1024))
        return target

    async def _capture(self, live: _Live, request: CaptureRequest, prompt: PlaySource | None) -> None:
        if prompt is not None:
            await self.engine.play(live.engine_id, prompt)
        try:
            collected: DtmfCollection = await self.engine.collect_dtmf(
                live.engine_id,
                max_length=request.max_length,
                terminator=request.terminator,
                first_digit_timeout_s=request.timeout_ms / 1000,
                inter_digit_timeout_s=(request.digit_timeout_ms or request.timeout_ms) / 1000,
            )
        except CallplaneError as error:
            if live.call_id in self._live:
                await self._emit(live.call_id, "ERROR", action="CAPTURE_DTMF", detail=error.message)
            return
        if prompt is not None:
            with contextlib.suppress(CallplaneError):
                await self.engine.stop_playback(live.engine_id)
        if live.call_id not in self._live or collected.ended_by is CollectionEnd.HANGUP:
            return  # the call ended while collecting: its terminal event says so
        await self._emit(
            live.call_id,
            "DTMF_CAPTURED",
            digits=collected.digits,
            timed_out=collected.ended_by is CollectionEnd.TIMEOUT,
            custom_data=dict(request.custom_data),
        )

    async def _begin_recording(self, live: _Live, call: VoiceCall, request: RecordingRequest) -> None:
        if live.recording_id is not None:
            raise InvalidCallState("the call is already being recorded")
        file_id = new_id()
        storage_key = f"{call.account_id}/{file_id}.wav"
        name = f"{request.file_prefix or ''}{call.id}_{file_id}.wav"
        async with self.sessions() as session, session.begin():
            session.add(
                VoiceRecording(
                    id=file_id,
                    account_id=call.account_id,
                    call_id=call.id,
                    configuration_id=call.configuration_id,
                    name=name,
                    storage_key=storage_key,
                    channels=request.channels.value,
                    custom_data=dict(request.custom_data),
                    started_at=utcnow(),
                )
            )
        live.recording_id = file_id
        try:
            await self.engine.start_recording(
                live.engine_id, self.recordings_dir() / storage_key, EngineChannels(request.channels)
            )
        except CallplaneError:
            live.recording_id = None
            raise

    # ---- dialogs: two calls bridged ----------------------------------------------------------

    @relayed
    async def create_dialog(
        self, *, account_id: str, parent_call_id: str, child: NewCall | None, child_hangup_ends_parent: bool = True
    ) -> VoiceDialog:
        """A dialog for a live parent call, placing `child` (its configuration is the parent's); the child's answer
        answers an unanswered inbound parent and bridges the two."""
        await self._live_call(account_id, parent_call_id)
        parent = await self.get_call(account_id=account_id, call_id=parent_call_id)
        if parent.dialog_id is not None:
            raise InvalidCallState("the call is already in a dialog")
        if child is None:
            raise InvalidInput("childCallRequest is required")
        async with self.sessions() as session:
            await self._target(session, account_id, child)  # refused before a dialog exists (create_call checks again)
        dialog = await self._new_dialog(parent, child_hangup_ends_parent)
        placed = await self.create_call(
            account_id=account_id,
            request=NewCall(
                configuration_id=parent.configuration_id,
                endpoint=child.endpoint,
                from_user=child.from_user,
                from_display_name=child.from_display_name,
                connect_timeout_s=child.connect_timeout_s,
                custom_data=child.custom_data,
                parent_call_id=parent.id,
                dialog_id=dialog.id,
            ),
        )
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(VoiceDialog)
                .where(VoiceDialog.id == dialog.id, VoiceDialog.child_call_id.is_(None))
                .values(child_call_id=placed.id)
            )
        return await self.get_dialog(account_id=account_id, dialog_id=dialog.id)

    @relayed
    async def dialog_from_calls(
        self, *, account_id: str, parent_call_id: str, child_call_id: str, child_hangup_ends_parent: bool = True
    ) -> VoiceDialog:
        """Bridge two live, answered calls of the account into a dialog at once."""
        if parent_call_id == child_call_id:
            raise InvalidInput("a dialog needs two different calls")
        legs = [await self._live_call(account_id, parent_call_id), await self._live_call(account_id, child_call_id)]
        calls = [await self.get_call(account_id=account_id, call_id=leg.call_id) for leg in legs]
        if any(call.dialog_id is not None for call in calls):
            raise InvalidCallState("the call is already in a dialog")
        if any(call.state != VoiceCallState.ESTABLISHED for call in calls):
            raise InvalidCallState("both calls must be answered (ESTABLISHED) to be joined in a dialog")
        dialog = await self._new_dialog(calls[0], child_hangup_ends_parent, child_call_id=child_call_id)
        await self._bridge_dialog(dialog.id)
        return await self.get_dialog(account_id=account_id, dialog_id=dialog.id)

    async def _new_dialog(
        self, parent: VoiceCall, child_hangup_ends_parent: bool, *, child_call_id: str | None = None
    ) -> VoiceDialog:
        async with self.sessions() as session, session.begin():
            dialog = VoiceDialog(
                id=new_id(),
                account_id=parent.account_id,
                configuration_id=parent.configuration_id,
                state=DialogState.CREATED,
                parent_call_id=parent.id,
                child_call_id=child_call_id,
                child_hangup_ends_parent=child_hangup_ends_parent,
                created_at=utcnow(),
            )
            session.add(dialog)
            ids = [parent.id] + ([child_call_id] if child_call_id else [])
            for call_id in ids:  # from now on their events may touch each other's (see _consume)
                if (live := self._live.get(call_id)) is not None:
                    live.in_dialog = True
            await session.execute(update(VoiceCall).where(VoiceCall.id.in_(ids)).values(dialog_id=dialog.id))
            await session.flush()
            await self._publish_dialog(session, dialog, "DIALOG_CREATED")
        return dialog

    async def get_dialog(self, *, account_id: str, dialog_id: str) -> VoiceDialog:
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        if dialog is None or dialog.account_id != account_id:
            raise DialogNotFound()
        return dialog

    async def dialog_calls(self, dialog: VoiceDialog) -> tuple[VoiceCall | None, VoiceCall | None]:
        async with self.sessions() as session:
            parent = await session.get(VoiceCall, dialog.parent_call_id)
            child = await session.get(VoiceCall, dialog.child_call_id) if dialog.child_call_id else None
        return parent, child

    async def list_dialogs(
        self,
        *,
        account_id: str,
        live: bool,
        configuration_id: str | None = None,
        state: str | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[VoiceDialog], int]:
        states = DIALOG_LIVE if live else DIALOG_TERMINAL
        conditions: list[Any] = [VoiceDialog.account_id == account_id, VoiceDialog.state.in_(states)]
        if state:
            conditions.append(VoiceDialog.state == state)
        if configuration_id:
            conditions.append(VoiceDialog.configuration_id == configuration_id)
        async with self.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(VoiceDialog).where(*conditions)) or 0
            rows = await session.scalars(
                select(VoiceDialog)
                .where(*conditions)
                .order_by(VoiceDialog.created_at.desc(), VoiceDialog.id)
                .offset(offset)
                .limit(limit)
            )
            return list(rows), total

    @relayed
    async def hangup_dialog(self, *, account_id: str, dialog_id: str) -> VoiceDialog:
        """Hang up both calls; the dialog ends FINISHED (or FAILED if it never connected) with source API."""
        dialog = await self.get_dialog(account_id=account_id, dialog_id=dialog_id)
        if dialog.state in DIALOG_TERMINAL:
            raise CallNotLive("The dialog has already ended.")
        await self._end_dialog(dialog.id, DialogHangupSource.API, ErrorCode.NORMAL_HANGUP)
        for call_id in (dialog.parent_call_id, dialog.child_call_id):
            live = self._live.get(call_id or "")
            if live is not None:
                await self._end_leg(live, HangupSource.API)
        return await self.get_dialog(account_id=account_id, dialog_id=dialog_id)

    async def _dialog_leg_answered(self, call: VoiceCall) -> None:
        """The child answered: answer an unanswered inbound parent, then bridge."""
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, call.dialog_id)
        if dialog is None or dialog.state != DialogState.CREATED or dialog.parent_call_id == call.id:
            return
        parent = self._live.get(dialog.parent_call_id)
        if parent is None:
            return
        async with self.sessions() as session:
            parent_call = await session.get(VoiceCall, dialog.parent_call_id)
        if parent_call is not None and parent_call.state != VoiceCallState.ESTABLISHED:
            if parent.direction is not CallDirection.INBOUND:
                return  # an outbound parent that has not answered cannot be answered by us
            await self.engine.answer(parent.engine_id)
        await self._bridge_dialog(dialog.id)

    async def _bridge_dialog(self, dialog_id: str) -> None:
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        if dialog is None or dialog.child_call_id is None:
            return
        parent, child = self._live.get(dialog.parent_call_id), self._live.get(dialog.child_call_id)
        if parent is None or child is None:
            return
        await self._stop_ringback(dialog.child_call_id)
        await self.engine.bridge(parent.engine_id, child.engine_id)
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(VoiceDialog)
                .where(
                    VoiceDialog.id == dialog_id,
                    VoiceDialog.state.in_([DialogState.CREATED, DialogState.PRE_ESTABLISHED]),
                )
                .values(state=DialogState.ESTABLISHED, established_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) == 1:
                refreshed = await session.get(VoiceDialog, dialog_id)
                assert refreshed is not None
                await session.refresh(refreshed)
                await self._publish_dialog(session, refreshed, "DIALOG_ESTABLISHED")
        await self._dialog_established(dialog_id)

    async def _dialog_leg_ended(self, dialog_id: str, call_id: str) -> None:
        """One leg ended: end the dialog once, and the other leg (the parent only if propagation asks)."""
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
            call = await session.get(VoiceCall, call_id)
        if dialog is None or call is None or dialog.state in DIALOG_TERMINAL:
            return
        is_parent = dialog.parent_call_id == call_id
        if call.hangup_source == HangupSource.ENDPOINT:
            source = DialogHangupSource.PARENT_ENDPOINT if is_parent else DialogHangupSource.CHILD_ENDPOINT
        else:
            source = DialogHangupSource(call.hangup_source or DialogHangupSource.PLATFORM)
        await self._end_dialog(dialog_id, source, ErrorCode(call.error_code or ErrorCode.NORMAL_HANGUP))
        await self._dialog_ended_media(dialog)
        other_id = dialog.child_call_id if is_parent else dialog.parent_call_id
        other = self._live.get(other_id or "")
        if other is not None and (is_parent or dialog.child_hangup_ends_parent):
            await self._end_leg(other, HangupSource.PLATFORM)

    async def _end_leg(self, live: _Live, source: HangupSource) -> None:
        call = await self.get_call(account_id=live.account_id, call_id=live.call_id)
        with contextlib.suppress(CallplaneError):
            if call.state == VoiceCallState.ESTABLISHED:
                live.requested = Ending(VoiceCallState.FINISHED, source, ErrorCode.NORMAL_HANGUP)
                await self.engine.hangup(live.engine_id)
            elif live.direction is CallDirection.INBOUND:
                live.requested = Ending(VoiceCallState.FINISHED, source, ErrorCode.NORMAL_HANGUP)
                await self.engine.reject(live.engine_id, status=480, reason=SipReasonHeader("Q.850", 16))
            else:
                live.requested = Ending(VoiceCallState.CANCELLED, source, ErrorCode.CANCELLED)
                await self.engine.hangup(live.engine_id)

    async def _end_dialog(self, dialog_id: str, source: DialogHangupSource, code: ErrorCode) -> None:
        async with self.sessions() as session, session.begin():
            dialog = await session.get(VoiceDialog, dialog_id)
            if dialog is None:
                return
            state = DialogState.FINISHED if dialog.state == DialogState.ESTABLISHED else DialogState.FAILED
            result = await session.execute(
                update(VoiceDialog)
                .where(VoiceDialog.id == dialog_id, VoiceDialog.state.in_(DIALOG_LIVE))
                .values(state=state, ended_at=utcnow(), hangup_source=source, error_code=int(code))
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                return
            await session.refresh(dialog)
            await self._publish_dialog(session, dialog, f"DIALOG_{state}")

    async def _publish_dialog(self, session: AsyncSession, dialog: VoiceDialog, event_type: str) -> None:
        parent = await session.get(VoiceCall, dialog.parent_call_id)
        child = await session.get(VoiceCall, dialog.child_call_id) if dialog.child_call_id else None
        if parent is None:
            return
        await publish(
            session=session,
            renderer=self.renderer,
            event=VoiceEvent(event_type, parent, dialog=dialog, child=child),
        )

    # ---- dialogs: prompts both parties hear, recordings ------------------------------------------

    async def _established_dialog(self, account_id: str, dialog_id: str) -> tuple[VoiceDialog, _Live, _Live]:
        dialog = await self.get_dialog(account_id=account_id, dialog_id=dialog_id)
        if dialog.state in DIALOG_TERMINAL:
            raise CallNotLive("The dialog has already ended.")
        if dialog.state != DialogState.ESTABLISHED or dialog.child_call_id is None:
            raise InvalidCallState("the dialog is not established yet")
        parent, child = self._live.get(dialog.parent_call_id), self._live.get(dialog.child_call_id)
        if parent is None or child is None:
            raise CallOnAnotherNode(f"dialog {dialog_id} is carried by another media node")
        return dialog, parent, child

    @relayed
    async def dialog_say(self, *, account_id: str, dialog_id: str, speech: Speech, loop_count: int = 1) -> None:
        """Say text to both parties (mixed over what they hear of each other) -> SAY_FINISHED for the dialog."""
        await self._start_dialog_playback(account_id, dialog_id, PlayContent(speech=speech), loop_count, "SAY_FINISHED")

    @relayed
    async def dialog_play(self, *, account_id: str, dialog_id: str, content: PlayContent, loop_count: int = 1) -> None:
        """Play audio to both parties -> PLAY_FINISHED for the dialog."""
        await self._start_dialog_playback(account_id, dialog_id, content, loop_count, "PLAY_FINISHED")

    @relayed
    async def dialog_stop_play(self, *, account_id: str, dialog_id: str) -> None:
        dialog, parent, _ = await self._established_dialog(account_id, dialog_id)
        pending = self._dialogs.pending_play.pop(dialog.id, None)
        if pending is not None and not pending[0].done():
            pending[0].cancel()  # stopped before its audio was ready: it never played
            await self._emit_dialog(dialog.id, pending[1], played_completely=False, duration_ms=0)
            return
        await self.engine.stop_bridge_playback(parent.engine_id)

    async def _start_dialog_playback(
        self, account_id: str, dialog_id: str, content: PlayContent, loop_count: int, kind: str
    ) -> None:
        if loop_count < 1:
            raise InvalidInput("loopCount must be at least 1")
        dialog, parent, _ = await self._established_dialog(account_id, dialog_id)
        source = None if content.url is not None else await self._source(account_id, content)

        async def start() -> None:
            started = time.monotonic()
            playback_id = await self.engine.play_to_bridge(
                parent.engine_id,
                source if source is not None else FileSource(await self._download(content.url or "")),
                loop_count=loop_count,
            )
            for previous, playing in list(parent.playbacks.items()):
                if playing.dialog_id == dialog.id:
                    parent.playbacks.pop(previous)  # replaced: only the new prompt is reported
            parent.playbacks[playback_id] = _Playback(
                kind=kind, started=started, stop_on_dtmf=False, terminator=None, custom_data={}, dialog_id=dialog.id
            )

        previous = self._dialogs.pending_play.get(dialog.id)
        if previous is not None:
            previous[0].cancel()  # replaced before it started
        action = "SAY" if kind == "SAY_FINISHED" else "PLAY"
        task = self._spawn(self._guarded_dialog(dialog.id, action, start()), "dialog-play")
        self._dialogs.pending_play[dialog.id] = (task, kind)

    async def _guarded_dialog(self, dialog_id: str, action: str, work: Any) -> None:
        """An accepted dialog action; a failure becomes the dialog's ERROR event (the API already answered)."""
        try:
            await work
        except CallplaneError as error:
            await self._emit_dialog(dialog_id, "ERROR", action=action, detail=error.message)

    async def _emit_dialog(self, dialog_id: str, event_type: str, **details: Any) -> None:
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

    @relayed
    async def start_dialog_recording(self, *, account_id: str, dialog_id: str, request: DialogRecordingRequest) -> None:
        """Composed: one file of both parties mixed (the parent leg's mix of what it hears and sends). Not composed:
        one file per call with that party alone. DIALOG_RECORDING_READY when all files of this recording are ready."""
        dialog, parent, child = await self._established_dialog(account_id, dialog_id)
        await self._record_dialog(dialog, parent, child, request)

    @relayed
    async def record_dialog_when_established(self, *, dialog_id: str, request: DialogRecordingRequest) -> None:
        """The dialog request's `recording`: started when the dialog is established (this process's dialogs)."""
        self._dialogs.record_on_establish[dialog_id] = request
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        if dialog is not None and dialog.state == DialogState.ESTABLISHED:
            await self._dialog_established(dialog_id)  # it connected before we got here

    @relayed
    async def stop_dialog_recording(self, *, account_id: str, dialog_id: str) -> None:
        dialog = await self.get_dialog(account_id=account_id, dialog_id=dialog_id)
        if dialog.state in DIALOG_TERMINAL:
            raise CallNotLive("The dialog has already ended.")
        recording = self._dialogs.recordings.get(dialog.id)
        if recording is None or recording.stopping:
            raise InvalidCallState("the dialog is not being recorded")
        await self._stop_dialog_files(dialog)

    async def _record_dialog(
        self, dialog: VoiceDialog, parent: _Live, child: _Live, request: DialogRecordingRequest
    ) -> None:
        if dialog.id in self._dialogs.recordings:
            raise InvalidCallState("the dialog is already being recorded")
        if parent.recording_id is not None or child.recording_id is not None:
            raise InvalidCallState("a call of the dialog is being recorded (call and dialog recordings are exclusive)")
        legs = (
            [(parent, EngineChannels.MONO)]
            if request.composed
            else [(parent, EngineChannels.HEARD), (child, EngineChannels.HEARD)]
        )
        now = utcnow()
        planned: list[tuple[_Live, EngineChannels, str, str]] = []
        async with self.sessions() as session, session.begin():
            for live, channels in legs:
                file_id = new_id()
                storage_key = f"{live.account_id}/{file_id}.wav"
                session.add(
                    VoiceRecording(
                        id=file_id,
                        account_id=live.account_id,
                        call_id=live.call_id,
                        configuration_id=dialog.configuration_id,
                        name=f"{request.file_prefix or ''}{file_id}.wav",
                        storage_key=storage_key,
                        channels="MONO",
                        custom_data=dict(request.custom_data),
                        started_at=now,
                        dialog_id=dialog.id,
                        composed=request.composed,
                    )
                )
                planned.append((live, channels, file_id, storage_key))
        ids = [file_id for _, _, file_id, _ in planned]
        self._dialogs.recordings[dialog.id] = _DialogRecording(files=ids, pending=set(ids))
        for live, channels, file_id, storage_key in planned:
            live.recording_id = file_id
            try:
                await self.engine.start_recording(live.engine_id, self.recordings_dir() / storage_key, channels)
            except CallplaneError:
                live.recording_id = None
                await self._stop_dialog_files(dialog)  # the legs already started finish (and are reported)
                self._dialogs.recordings[dialog.id].pending.discard(file_id)
                raise

    async def _stop_dialog_files(self, dialog: VoiceDialog) -> None:
        recording = self._dialogs.recordings.get(dialog.id)
        if recording is None:
            return
        recording.stopping = True
        for live in (self._live.get(dialog.parent_call_id), self._live.get(dialog.child_call_id or "")):
            if live is not None and live.recording_id in recording.pending:
                with contextlib.suppress(CallplaneError):
                    await self.engine.stop_recording(live.engine_id)  # RecordingFinished makes the file ready

    @relayed
    async def limit_dialog_duration(self, *, dialog_id: str, max_duration_s: int) -> None:
        """The dialog request's `maxDuration`, counted from the bridge: then both calls are hung up and the dialog
        ends FINISHED, source PLATFORM, MAX_DURATION_REACHED (each call's own maxDuration still applies)."""
        if max_duration_s < 1:
            raise InvalidInput("maxDuration must be at least 1 second")
        self._dialogs.max_duration[dialog_id] = max_duration_s
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        if dialog is not None and dialog.state == DialogState.ESTABLISHED:
            self._arm_dialog_max_duration(dialog_id)  # it connected before we got here

    def _arm_dialog_max_duration(self, dialog_id: str) -> None:
        seconds = self._dialogs.max_duration.pop(dialog_id, None)
        if seconds is not None:
            asyncio.get_running_loop().call_later(
                seconds, lambda: self._spawn(self._dialog_max_duration_reached(dialog_id), "dialog-max-duration")
            )

    async def _dialog_max_duration_reached(self, dialog_id: str) -> None:
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        if dialog is None or dialog.state in DIALOG_TERMINAL:
            return
        await self._end_dialog(dialog_id, DialogHangupSource.PLATFORM, ErrorCode.MAX_DURATION_REACHED)
        await self._dialog_ended_media(dialog)
        for call_id in (dialog.parent_call_id, dialog.child_call_id):
            live = self._live.get(call_id or "")
            if live is not None:
                live.requested = Ending(VoiceCallState.FINISHED, HangupSource.PLATFORM, ErrorCode.MAX_DURATION_REACHED)
                with contextlib.suppress(CallplaneError):
                    await self.engine.hangup(live.engine_id)

    async def _dialog_established(self, dialog_id: str) -> None:
        self._arm_dialog_max_duration(dialog_id)
        request = self._dialogs.record_on_establish.pop(dialog_id, None)
        if request is None:
            return
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        parent = self._live.get(dialog.parent_call_id) if dialog else None
        child = self._live.get(dialog.child_call_id or "") if dialog else None
        if dialog is None or parent is None or child is None:
            return
        try:
            await self._record_dialog(dialog, parent, child, request)
        except CallplaneError as error:
            await self._emit_dialog(dialog_id, "DIALOG_RECORDING_FAILED", detail=error.message)

    async def _dialog_ended_media(self, dialog: VoiceDialog) -> None:
        """The dialog ended: a leg that stays up (no propagation) stops recording for it; nothing is pending."""
        self._dialogs.record_on_establish.pop(dialog.id, None)
        self._dialogs.max_duration.pop(dialog.id, None)
        if dialog.child_call_id is not None:
            await self._stop_ringback(dialog.child_call_id)
            self._dialogs.progress.pop(dialog.child_call_id, None)
        pending = self._dialogs.pending_play.pop(dialog.id, None)
        if pending is not None:
            pending[0].cancel()
        await self._stop_dialog_files(dialog)

    async def _dialog_file_ready(self, dialog_id: str, file_id: str) -> None:
        recording = self._dialogs.recordings.get(dialog_id)
        if recording is None:
            return
        recording.pending.discard(file_id)
        if recording.pending:
            return
        del self._dialogs.recordings[dialog_id]
        async with self.sessions() as session, session.begin():
            dialog = await session.get(VoiceDialog, dialog_id)
            files = list(
                await session.scalars(
                    select(VoiceRecording)
                    .where(VoiceRecording.id.in_(recording.files), VoiceRecording.ready.is_(True))
                    .order_by(VoiceRecording.composed.desc(), VoiceRecording.started_at, VoiceRecording.id)
                )
            )
            if dialog is None or not files:
                return
            parent = await session.get(VoiceCall, dialog.parent_call_id)
            child = await session.get(VoiceCall, dialog.child_call_id) if dialog.child_call_id else None
            if parent is None:
                return
            event = VoiceEvent("DIALOG_RECORDING_READY", parent, dialog=dialog, child=child, recordings=files)
            await publish(session=session, renderer=self.renderer, event=event)

    # ---- dialogs: what the parent hears while the child rings -----------------------------------

    @relayed
    async def propagate_child_progress(self, *, dialog_id: str, ringing: bool, ringback: bool) -> None:
        """The dialog request's propagationOptions: the child's ringing reaches an unanswered inbound parent as a
        180 (`childCallRinging`), or the parent hears a generated ringback until the bridge (`ringbackGeneration`:
        an unanswered inbound parent is pre-answered, 183, for it)."""
        if not (ringing or ringback):
            return
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        if dialog is None or dialog.child_call_id is None:
            return
        # registered before the child's state is read: a ring that lands in between then finds it and applies it
        self._dialogs.progress[dialog.child_call_id] = _Progress(dialog.id, ringing=ringing, ringback=ringback)
        async with self.sessions() as session:
            child = await session.get(VoiceCall, dialog.child_call_id)
        if child is not None and child.state in (VoiceCallState.RINGING, VoiceCallState.PRE_ESTABLISHED):
            await self._dialog_child_progress(child.id)  # it rang before we got here

    async def _dialog_child_progress(self, call_id: str) -> None:
        progress = self._dialogs.progress.get(call_id)
        if progress is None or progress.applied:
            return
        progress.applied = True
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, progress.dialog_id)
            parent = await session.get(VoiceCall, dialog.parent_call_id) if dialog else None
        live = self._live.get(parent.id) if parent else None
        if dialog is None or parent is None or live is None or dialog.state != DialogState.CREATED:
            return
        inbound = live.direction is CallDirection.INBOUND
        unanswered = parent.state in (VoiceCallState.CALLING, VoiceCallState.RINGING)
        with contextlib.suppress(CallplaneError):
            if progress.ringing and inbound and parent.state == VoiceCallState.CALLING:
                await self.engine.send_ringing(live.engine_id)
                await self._move(parent.id, VoiceCallState.RINGING, "CALL_RINGING", ringing=True)
            if progress.ringback and (inbound or not unanswered):
                if unanswered:
                    await self.engine.pre_answer(live.engine_id)
                    await self._move(parent.id, VoiceCallState.PRE_ESTABLISHED, "CALL_PRE_ESTABLISHED")
                await self.engine.play(live.engine_id, RINGBACK, loop_count=RINGBACK_LOOPS)
                progress.ringback_playing = True

    async def _stop_ringback(self, child_call_id: str) -> None:
        progress = self._dialogs.progress.get(child_call_id)
        if progress is None or not progress.ringback_playing:
            return
        progress.ringback_playing = False
        async with self.sessions() as session:
            dialog = await session.get(VoiceDialog, progress.dialog_id)
        live = self._live.get(dialog.parent_call_id) if dialog else None
        if live is not None:
            with contextlib.suppress(CallplaneError):
                await self.engine.stop_playback(live.engine_id)

    # ---- dialog recordings ----------------------------------------------------------------------

    async def list_dialog_recordings(
        self,
        *,
        account_id: str,
        dialog_id: str | None = None,
        configuration_id: str | None = None,
        call_id: str | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[DialogRecordings], int]:
        """Dialogs that have ready recording files, newest first, each with its files and calls."""
        conditions: list[Any] = [
            VoiceRecording.account_id == account_id,
            VoiceRecording.ready.is_(True),
            VoiceRecording.dialog_id.is_not(None),
        ]
        if dialog_id:
            conditions.append(VoiceRecording.dialog_id == dialog_id)
        if configuration_id:
            conditions.append(VoiceRecording.configuration_id == configuration_id)
        async with self.sessions() as session:
            dialog_ids = select(VoiceRecording.dialog_id).where(*conditions).distinct().subquery()
            dialog_conditions: list[Any] = [VoiceDialog.id.in_(select(dialog_ids.c.dialog_id))]
            if call_id:
                dialog_conditions.append(
                    (VoiceDialog.parent_call_id == call_id) | (VoiceDialog.child_call_id == call_id)
                )
            total = await session.scalar(select(func.count()).select_from(VoiceDialog).where(*dialog_conditions)) or 0
            dialogs = list(
                await session.scalars(
                    select(VoiceDialog)
                    .where(*dialog_conditions)
                    .order_by(VoiceDialog.created_at.desc(), VoiceDialog.id)
                    .offset(offset)
                    .limit(limit)
                )
            )
            ids = [dialog.id for dialog in dialogs]
            files = list(
                await session.scalars(
                    select(VoiceRecording)
                    .where(*conditions, VoiceRecording.dialog_id.in_(ids))
                    .order_by(VoiceRecording.started_at, VoiceRecording.id)
                )
            )
            call_ids = {f.call_id for f in files}
            rows = await session.scalars(select(VoiceCall).where(VoiceCall.id.in_(call_ids)))
            calls = {call.id: call for call in rows}
        found = [DialogRecordings(dialog, [f for f in files if f.dialog_id == dialog.id], calls) for dialog in dialogs]
        return found, total

    async def dialog_recordings(self, *, account_id: str, dialog_id: str) -> DialogRecordings:
        found, _ = await self.list_dialog_recordings(account_id=account_id, dialog_id=dialog_id, limit=1)
        if not found:
            raise RecordingNotFound()
        return found[0]

    async def delete_dialog_recordings(self, *, account_id: str, dialog_id: str) -> DialogRecordings:
        """Remove the files; the metadata stays (as for calls). Answers what was deleted."""
        found = await self.dialog_recordings(account_id=account_id, dialog_id=dialog_id)
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(VoiceRecording)
                .where(VoiceRecording.dialog_id == dialog_id, VoiceRecording.account_id == account_id)
                .values(ready=False, deleted_at=utcnow())
            )
        for recording in found.files:
            with contextlib.suppress(FileNotFoundError):
                (self.recordings_dir() / recording.storage_key).unlink()
        return found

    async def compose_dialog_recording(
        self, *, account_id: str, dialog_id: str, delete_call_recordings: bool = True, multi_channel: bool = False
    ) -> None:
        """Compose the dialog's per-call files into one file per recording (each start/stop), in the background:
        mono mixed, or one channel per call (parent first) with `multi_channel` -> DIALOG_COMPOSITION_FINISHED."""
        found = await self.dialog_recordings(account_id=account_id, dialog_id=dialog_id)
        if not any(not f.composed for f in found.files):
            raise InvalidInput("the dialog has no per-call recording files to compose")
        self._spawn(self._compose(found, delete_call_recordings, multi_channel), "dialog-compose")

    async def _compose(self, found: DialogRecordings, delete_call_recordings: bool, multi_channel: bool) -> None:
        dialog = found.dialog
        sessions: dict[Any, list[VoiceRecording]] = {}
        for recording in found.files:
            if not recording.composed:
                sessions.setdefault(recording.started_at, []).append(recording)  # one start: same started_at
        composed: list[VoiceRecording] = []
        try:
            for started_at, files in sorted(sessions.items(), key=lambda item: item[0]):
                files.sort(key=lambda f: (f.call_id != dialog.parent_call_id, f.id))  # the parent first
                file_id = new_id()
                storage_key = f"{dialog.account_id}/{file_id}.wav"
                target = self.recordings_dir() / storage_key
                duration_ms = await asyncio.to_thread(
                    compose_tracks,
                    [self.recordings_dir() / f.storage_key for f in files],
                    target,
                    multi_channel=multi_channel,
                )
                composed.append(
                    VoiceRecording(
                        id=file_id,
                        account_id=dialog.account_id,
                        call_id=dialog.parent_call_id,
                        configuration_id=dialog.configuration_id,
                        name=f"{file_id}.wav",
                        storage_key=storage_key,
                        channels="STEREO" if multi_channel and len(files) == 2 else "MONO",
                        size_bytes=target.stat().st_size,
                        duration_ms=duration_ms,
                        custom_data=dict(files[0].custom_data),
                        started_at=started_at,
                        ended_at=max((f.ended_at for f in files if f.ended_at), default=utcnow()),
                        ready=True,
                        dialog_id=dialog.id,
                        composed=True,
                    )
                )
        except (OSError, ValueError) as error:
            await self._emit_dialog(dialog.id, "DIALOG_COMPOSITION_FAILED", detail=f"composition failed: {error}")
            return
        sources = [f for files in sessions.values() for f in files]
        async with self.sessions() as session, session.begin():
            session.add_all(composed)
            if delete_call_recordings:
                await session.execute(
                    update(VoiceRecording)
                    .where(VoiceRecording.id.in_([f.id for f in sources]))
                    .values(ready=False, deleted_at=utcnow())
                )
        if delete_call_recordings:
            for recording in sources:
                with contextlib.suppress(FileNotFoundError):
                    (self.recordings_dir() / recording.storage_key).unlink()
        await self._emit_dialog(dialog.id, "DIALOG_COMPOSITION_FINISHED", recordings=composed)


@dataclass(frozen=True, slots=True)
class DialogRecordings:
    """A dialog's ready recording files (composed ones have `composed` set) and the calls they belong to."""

    dialog: VoiceDialog
    files: list[VoiceRecording]
    calls: dict[str, VoiceCall]


@dataclass
class _Progress:
    """A dialog's propagation options for its child's ringing (applied once, on the first 180/183)."""

    dialog_id: str
    ringing: bool = False
    ringback: bool = False
    applied: bool = False
    ringback_playing: bool = False


@dataclass
class _DialogMedia:
    """What this process keeps of its dialogs' media (all of it ends with the calls, like the calls' own)."""

    pending_play: dict[str, tuple[asyncio.Task[Any], str]] = field(default_factory=dict)  # accepted, still loading
    recordings: dict[str, _DialogRecording] = field(default_factory=dict)  # in progress
    record_on_establish: dict[str, DialogRecordingRequest] = field(default_factory=dict)
    progress: dict[str, _Progress] = field(default_factory=dict)  # by child call id: what its ringing does
    max_duration: dict[str, int] = field(default_factory=dict)  # seconds, armed when the dialog is established

    def recording_of(self, file_id: str) -> str | None:
        """The dialog whose recording this file is (while it records)."""
        for dialog_id, recording in self.recordings.items():
            if file_id in recording.pending:
                return dialog_id
        return None


def _speech_source(speech: Speech) -> SpeechSource:
    if not speech.text.strip():
        raise InvalidInput("text must not be empty")
    if not 0.5 <= speech.speech_rate <= 2.0:
        raise InvalidInput("speechRate must be between 0.5 and 2.0")
    voice = speech.language.lower()
    if speech.gender == "FEMALE":
        voice += "+f3"
    elif speech.gender == "MALE":
        voice += "+m3"
    return SpeechSource(speech.text, voice=voice, words_per_minute=round(DEFAULT_WORDS_PER_MINUTE * speech.speech_rate))


def _e164(value: str | None) -> str | None:
    """A number that fits the core's E.164 columns, else nothing (a SIP user stays on the voice row)."""
    if value and value.startswith("+") and value[1:].isdigit() and len(value) <= 20:
        return value
    return None
