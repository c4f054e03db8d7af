"""Call control for live calls: the voice service commands the media engine and turns its events into state,
webhook events and leg events (docs/voice.md).

One `VoiceService` per process that runs the engine (an API process without one gets a detached engine and relays
commands to the node carrying each call). It owns its units of work (each command or engine event is one
transaction, committed before the HTTP answer or before the next event) because it sits between two outside
actors: the API and the engine. Its components share the registry of live calls (live/calls.py): media actions
(live/media_actions.py) and dialogs (live/dialogs.py). Every command another node may run is a `@relayed` method of
this class: that list is the node protocol (live/dispatch.py).

Exactly one terminal event per call: a call leaves a live state through `_finish`, whose UPDATE is
conditional on the call still being live, so whichever path gets there first (engine event, API hangup,
restart recovery) writes the terminal state and its terminal event (finished or failed), and every later one is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.contact_center.models import TransferKind
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.transcripts.engine import AsrSettings
from callplane.core.transcripts.streaming import LiveAsr
from callplane.core.voice import records, trunks
from callplane.core.voice.conference_models import VoiceConference
from callplane.core.voice.configurations import get_configuration, route_for
from callplane.core.voice.events import VoiceEvent, VoiceEventRenderer, VoiceEventType
from callplane.core.voice.events import publish as publish_event
from callplane.core.voice.models import (
    EndpointType,
    HangupSource,
    VoiceCall,
    VoiceCallState,
    VoiceDialog,
    VoiceRecording,
)
from callplane.core.voice.outbound import check_sip_values, split_host_port
from callplane.core.voice.schemas import (
    DEFAULT_MAX_DURATION_S,
    CaptureRequest,
    DialogRecordingRequest,
    Endpoint,
    JoinOptions,
    MediaStreamRequest,
    NewCall,
    NewConference,
    ParticipantUpdate,
    PlayContent,
    PlayOptions,
    RecordingRequest,
    Speech,
    SpeechCaptureRequest,
    TranscriptionRequest,
)
from callplane.core.voice.states import (
    LIVE_STATES,
    REJECT_STATUS,
    Ending,
    ErrorCode,
    InvalidCallState,
    can_move,
    state_for_error,
)
from callplane.db.base import new_id, utcnow
from callplane.errors import CallplaneError, InvalidInput, TransientError
from callplane.live import registrar
from callplane.live.calls import LegChange, LegEvent, LegListener, LiveCall, LiveCalls, ending_for
from callplane.live.conferences import Conferences
from callplane.live.dialogs import Dialogs
from callplane.live.dispatch import Forwarder, relayed
from callplane.live.hold import Holds
from callplane.live.inbound import InboundPlan, InboundPlanner
from callplane.live.machine_detection import MachineDetection
from callplane.live.media_actions import MediaActions
from callplane.live.media_streams import MediaStreams
from callplane.live.nodes import calls_of_dead_nodes
from callplane.live.reads import VoiceReads
from callplane.live.speech_capture import SpeechCaptures
from callplane.live.transcription import LiveTranscription
from callplane.live.transfers import ApplicationTransfers, BlindTransfers
from callplane.media.engine import (
    CallAnswered,
    CallDirection,
    CallEarlyMedia,
    CallEnded,
    CallEngine,
    CallRinging,
    DtmfReceived,
    EngineEvent,
    IncomingCall,
    OutboundCall,
    PlaybackFinished,
    RecordingFinished,
    SipReasonHeader,
    SipTrunk,
    TransferRequested,
)

if TYPE_CHECKING:  # the runtime is built on this service (live/contact_center.py imports this module)
    from callplane.live.contact_center import ContactCenterRuntime

log = logging.getLogger("callplane.voice")

DEFAULT_CONNECT_TIMEOUT_S = 60
MAX_CONNECT_TIMEOUT_S = 60
# Calls whose events are handled at the same time (each needs a pooled connection; the pool holds 10 by default).
EVENT_LANES = 4
DEFAULT_INBOUND_ANSWER_TIMEOUT_S = 120.0
# The outbox's event type for each state a leg moves to (rendered for its subscribers by the surface's renderer).
OUTBOX_EVENTS = {
    LegEvent.RINGING: VoiceEventType.CALL_RINGING,
    LegEvent.EARLY_MEDIA: VoiceEventType.CALL_EARLY_MEDIA,
    LegEvent.ESTABLISHED: VoiceEventType.CALL_ESTABLISHED,
    LegEvent.FINISHED: VoiceEventType.CALL_FINISHED,
    LegEvent.FAILED: VoiceEventType.CALL_FAILED,
}


class UnsupportedEndpoint(InvalidInput):
    """This endpoint type is not supported yet: use SIP (or PHONE through a SIP trunk)."""


class VoiceService(VoiceReads):
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
        relay: Forwarder | None = None,
        inbound_planner: InboundPlanner | None = None,
        inbound_answer_timeout_s: float = DEFAULT_INBOUND_ANSWER_TIMEOUT_S,
        listeners: Iterable[LegListener] = (),
        job_max_attempts: int | None = None,
        live_asr: LiveAsr | None = None,
    ) -> None:
        """`relay`: where commands for calls carried by another media node go (live/relay.py; None: embedded).
        `inbound_planner`: takes inbound calls that no route owns (call tracking's promo numbers).
        `inbound_answer_timeout_s`: an inbound call the application has not answered after this long ends
        NO_ANSWER (480, Q.850 cause 19, source PLATFORM). `listeners`: told every leg event after its
        change is committed, before this service's dialogs hear it; each must return quickly.
        `job_max_attempts`: of the post-call processing jobs it queues (None: the queue's default).
        `live_asr`: the speech-to-text of live transcription and speech capture (None: the registry model under
        `data_dir`/models; loaded on the first decode)."""
        super().__init__(sessions=sessions, data_dir=data_dir)
        self.engine = engine
        self.secret_box = secret_box
        self.renderer = renderer
        self.node_id = node_id
        self.fetch_policy = fetch_policy
        self.trunk_channels = trunk_channels or trunks.TrunkChannels()
        self.relay = relay
        self.contact_center: ContactCenterRuntime | None = None  # set where this process carries calls
        self.inbound_planner = inbound_planner
        self.inbound_answer_timeout_s = inbound_answer_timeout_s
        self.job_max_attempts = job_max_attempts
        self._listeners: list[LegListener] = list(listeners)
        self.calls = LiveCalls(engine=engine, sessions=sessions, renderer=renderer, data_dir=data_dir)
        self.media = MediaActions(calls=self.calls, fetch_policy=fetch_policy)
        self.dialogs = Dialogs(calls=self.calls, media=self.media, control=self)
        self.live_asr = live_asr or LiveAsr(AsrSettings(data_dir=data_dir / "models"))
        self.transcription = LiveTranscription(calls=self.calls, asr=self.live_asr)
        self.speech = SpeechCaptures(calls=self.calls, asr=self.live_asr)
        self.media_streams = MediaStreams(
            calls=self.calls, sessions=sessions, secret_box=secret_box, policy=fetch_policy
        )
        self._listeners.append(self.media_streams.on_leg)  # a call's end ends its stream
        self.machine_detection = MachineDetection(calls=self.calls)
        self._listeners.append(self.machine_detection.on_leg)  # a listener like any other: its errors are logged
        self.conferences = Conferences(calls=self.calls, media=self.media, control=self)
        self.holds = Holds(calls=self.calls, media=self.media)
        self.app_transfers = ApplicationTransfers(calls=self.calls)
        self.blind_transfers = BlindTransfers(calls=self.calls, holds=self.holds, control=self)
        self._listeners.append(self.blind_transfers.on_leg)  # a REFER's target answered or failed
        self._consumer: asyncio.Task[None] | None = None
        self._lanes: dict[str, asyncio.Task[Any]] = {}  # by engine call id: the last event task of that call
        self._lane_slots = asyncio.Semaphore(EVENT_LANES)
        self._serial_events = asyncio.Lock()

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> int:
        """Start the engine, end what a previous process left live, consume events. Returns calls recovered."""
        queue = self.engine.subscribe()
        await self.engine.start()
        recovered = await self.recover_orphans()
        await self.conferences.recover(self.node_id)  # their calls ended with the previous process
        self._consumer = asyncio.create_task(self._consume(queue), name="voice-events")
        return recovered

    async def stop(self) -> None:
        """Hang up every live call (their terminal events are written), then stop the engine."""
        shutdown = Ending(VoiceCallState.FAILED, HangupSource.PLATFORM, ErrorCode.ENGINE_RESTARTED)
        for live in self.calls.by_call.values():
            live.requested = shutdown  # the engine's LOCAL hangups below end them as a platform shutdown
        await self.engine.stop()
        await asyncio.sleep(0)
        if self._consumer is not None:
            # let the CallEnded events of the engine's own hangups be recorded before we go
            for _ in range(100):
                if not self.calls.by_call:
                    break
                await asyncio.sleep(0.02)
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        for live in list(self.calls.by_call.values()):
            await self._finish(live.call_id, shutdown)
        # a call whose ending the cancel above cut short (forgotten in memory, its terminal write rolled back)
        await self._end_live_calls_of_this_node(shutdown)
        self.calls.cancel_tasks()
        self.live_asr.close()

    async def recover_orphans(self) -> int:
        """Calls this node left live when it stopped uncleanly end now: FAILED, PLATFORM, ENGINE_RESTARTED."""
        ending = Ending(VoiceCallState.FAILED, HangupSource.PLATFORM, ErrorCode.ENGINE_RESTARTED)
        ended = await self._end_live_calls_of_this_node(ending)
        if ended:
            log.warning("ended calls left live by a previous process", extra={"fields": {"calls": ended}})
        return ended

    async def _end_live_calls_of_this_node(self, ending: Ending) -> int:
        async with self.sessions() as session:
            ids = list(
                await session.scalars(
                    select(VoiceCall.id).where(VoiceCall.node_id == self.node_id, VoiceCall.state.in_(LIVE_STATES))
                )
            )
        for call_id in ids:
            await self._finish(call_id, ending)
        return len(ids)

    async def end_calls_of_dead_nodes(self, dead_after_s: float) -> int:
        """Calls left live by nodes that died (killed: no clean stop, stale heartbeat) end here and now, as their own
        node would on restart: FAILED, PLATFORM, ENGINE_RESTARTED, one terminal event each (the update is
        conditional, so when several nodes do this at once each call still ends once). Run after each heartbeat."""
        async with self.sessions() as session:
            ids = await calls_of_dead_nodes(session, dead_after_s=dead_after_s, this_node=self.node_id)
        ending = Ending(VoiceCallState.FAILED, HangupSource.PLATFORM, ErrorCode.ENGINE_RESTARTED)
        ended = 0
        for call_id in ids:
            ended += await self._finish(call_id, ending)
        if ended:
            log.warning("ended calls of a dead media node", extra={"fields": {"calls": ended}})
        return ended

    # ---- reads (any process; also for other voice routes) ----------------------------------------

    def carries(self, arguments: Mapping[str, Any]) -> bool:
        """Whether this process carries the call a command names (the in-process path of `@relayed`)."""
        return self.calls.carries(arguments) or self.conferences.carries(arguments)

    def live_count(self) -> int:
        return self.calls.count()

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
            session.add_all(records.call_rows(call))
            await session.flush()
            if request.dialog_id is not None:  # the dialog knows its child before the child can answer
                await session.execute(
                    update(VoiceDialog)
                    .where(VoiceDialog.id == request.dialog_id, VoiceDialog.child_call_id.is_(None))
                    .values(child_call_id=call.id)
                )
            # the guide's first event of an outbound call: committed with it, so before anything its far end says
            started = VoiceEvent(VoiceEventType.CALL_STARTED, call)
            await publish_event(session=session, renderer=self.renderer, event=started)
            await session.commit()
            call_id = call.id
        trunk_id = request.endpoint.trunk_id if request.endpoint.type is EndpointType.PHONE else None
        self.calls.dialing += 1
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
            self.calls.dialing -= 1
        live = LiveCall(
            call_id=call_id,
            engine_id=engine_id,
            account_id=account_id,
            direction=CallDirection.OUTBOUND,
            max_duration_s=request.max_duration_s,
            trunk_id=trunk_id,
            record_on_answer=request.recording,
            machine_detection=request.machine_detection,
        )
        self._register(live)
        async with self.sessions() as session, session.begin():
            await session.execute(update(VoiceCall).where(VoiceCall.id == call_id).values(engine_call_id=engine_id))
        return await self.get_call(account_id=account_id, call_id=call_id)

    async def _outbound(
        self, session: AsyncSession, account_id: str, request: NewCall, ring_timeout_s: int
    ) -> OutboundCall:
        endpoint = request.endpoint
        peer = await self.check_target(session, account_id, request)
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

    async def check_target(self, session: AsyncSession, account_id: str, request: NewCall) -> SipTrunk:
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
        return await registrar.pinned_peer(self.fetch_policy, peer, what=what)

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

    def _register(self, live: LiveCall) -> None:
        self.calls.register(live)
        if live.direction is CallDirection.INBOUND:
            asyncio.get_running_loop().call_later(
                self.inbound_answer_timeout_s, lambda: self.calls.spawn(self._answer_timeout(live), "answer-timeout")
            )

    async def _answer_timeout(self, live: LiveCall) -> None:
        """Nobody answered the inbound call in time: 480 to the caller, the call ends NO_ANSWER (PLATFORM)."""
        if self.calls.by_call.get(live.call_id) is not live:
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
        live = await self.calls.require(account_id, call_id)
        self._require_inbound(live)
        await self.engine.send_ringing(live.engine_id)
        await self.move(call_id, VoiceCallState.RINGING, LegEvent.RINGING, ringing=True)

    @relayed
    async def pre_answer(self, *, account_id: str, call_id: str, ringing: bool = False) -> None:
        live = await self.calls.require(account_id, call_id)
        self._require_inbound(live)
        if ringing:
            await self.engine.send_ringing(live.engine_id)
        await self.engine.pre_answer(live.engine_id)
        await self.move(call_id, VoiceCallState.PRE_ESTABLISHED, LegEvent.EARLY_MEDIA)

    @relayed
    async def answer(
        self,
        *,
        account_id: str,
        call_id: str,
        recording: RecordingRequest | None = None,
        custom_data: Mapping[str, str] | None = None,
    ) -> None:
        live = await self.calls.require(account_id, call_id)
        self._require_inbound(live)
        live.record_on_answer = recording
        await self._merge_custom_data(call_id, custom_data)
        await self.engine.answer(live.engine_id)  # CallAnswered moves it to ESTABLISHED

    @relayed
    async def hangup(self, *, account_id: str, call_id: str, error_code: ErrorCode | None = None) -> VoiceCall:
        """End the call; answers with the call as it is now (the terminal state follows from the engine)."""
        live = await self.calls.require(account_id, call_id)
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

    @staticmethod
    def _require_inbound(live: LiveCall) -> None:
        if live.direction is not CallDirection.INBOUND:
            raise InvalidCallState("only an inbound call can be answered, pre-answered or rung")

    # ---- media actions and dialogs (components; relayed here, so the node protocol is this one class) -----

    @relayed
    async def say(self, *, account_id: str, call_id: str, speech: Speech, options: PlayOptions) -> None:
        await self.media.say(account_id=account_id, call_id=call_id, speech=speech, options=options)

    @relayed
    async def play(self, *, account_id: str, call_id: str, content: PlayContent, options: PlayOptions) -> None:
        await self.media.play(account_id=account_id, call_id=call_id, content=content, options=options)

    @relayed
    async def stop_play(self, *, account_id: str, call_id: str) -> None:
        await self.media.stop_play(account_id=account_id, call_id=call_id)

    @relayed
    async def send_dtmf(self, *, account_id: str, call_id: str, digits: str) -> None:
        await self.media.send_dtmf(account_id=account_id, call_id=call_id, digits=digits)

    @relayed
    async def capture_dtmf(self, *, account_id: str, call_id: str, request: CaptureRequest) -> None:
        await self.media.capture_dtmf(account_id=account_id, call_id=call_id, request=request)

    @relayed
    async def start_recording(self, *, account_id: str, call_id: str, request: RecordingRequest) -> None:
        await self.media.start_recording(account_id=account_id, call_id=call_id, request=request)

    @relayed
    async def stop_recording(self, *, account_id: str, call_id: str) -> None:
        await self.media.stop_recording(account_id=account_id, call_id=call_id)

    @relayed
    async def start_transcription(self, *, account_id: str, call_id: str, request: TranscriptionRequest) -> None:
        await self.transcription.start(account_id=account_id, call_id=call_id, request=request)

    @relayed
    async def stop_transcription(self, *, account_id: str, call_id: str) -> None:
        await self.transcription.stop(account_id=account_id, call_id=call_id)

    @relayed
    async def start_media_stream(self, *, account_id: str, call_id: str, request: MediaStreamRequest) -> None:
        await self.media_streams.start(account_id=account_id, call_id=call_id, request=request)

    @relayed
    async def stop_media_stream(self, *, account_id: str, call_id: str) -> None:
        await self.media_streams.stop(account_id=account_id, call_id=call_id)

    @relayed
    async def capture_speech(self, *, account_id: str, call_id: str, request: SpeechCaptureRequest) -> None:
        await self.speech.capture(account_id=account_id, call_id=call_id, request=request)

    # ---- a contact-center agent's actions: run on the node carrying the end user's leg (`call_id`) -------------

    def _agent_actions(self) -> ContactCenterRuntime:
        if self.contact_center is None:
            raise TransientError("Hold and transfers run in the process that carries the calls")
        return self.contact_center

    @relayed
    async def contact_center_hold(
        self, *, account_id: str, call_id: str, cc_call_id: int, music: PlayContent | None = None
    ) -> None:
        await self._agent_actions().hold(call_id=cc_call_id, music=music)

    @relayed
    async def contact_center_resume(self, *, account_id: str, call_id: str, cc_call_id: int) -> None:
        await self._agent_actions().resume(call_id=cc_call_id)

    @relayed
    async def contact_center_transfer(
        self,
        *,
        account_id: str,
        call_id: str,
        cc_call_id: int,
        kind: str,
        to_agent_id: int | None = None,
        to_menu_id: int | None = None,
    ) -> int:
        return await self._agent_actions().transfer(
            call_id=cc_call_id, kind=TransferKind(kind), to_agent_id=to_agent_id, to_menu_id=to_menu_id
        )

    @relayed
    async def contact_center_complete_transfer(
        self, *, account_id: str, call_id: str, cc_call_id: int, transfer_id: int
    ) -> None:
        await self._agent_actions().complete_transfer(call_id=cc_call_id, transfer_id=transfer_id)

    @relayed
    async def contact_center_cancel_transfer(
        self, *, account_id: str, call_id: str, cc_call_id: int, transfer_id: int
    ) -> None:
        await self._agent_actions().cancel_transfer(call_id=cc_call_id, transfer_id=transfer_id)

    @relayed
    async def create_dialog(
        self,
        *,
        account_id: str,
        parent_call_id: str,
        child: NewCall | None,
        child_hangup_ends_parent: bool = True,
        child_ringing: bool = False,
        ringback: bool = False,
    ) -> VoiceDialog:
        return await self.dialogs.create_dialog(
            account_id=account_id,
            parent_call_id=parent_call_id,
            child=child,
            child_hangup_ends_parent=child_hangup_ends_parent,
            child_ringing=child_ringing,
            ringback=ringback,
        )

    @relayed
    async def dialog_from_calls(
        self, *, account_id: str, parent_call_id: str, child_call_id: str, child_hangup_ends_parent: bool = True
    ) -> VoiceDialog:
        return await self.dialogs.dialog_from_calls(
            account_id=account_id,
            parent_call_id=parent_call_id,
            child_call_id=child_call_id,
            child_hangup_ends_parent=child_hangup_ends_parent,
        )

    @relayed
    async def hangup_dialog(self, *, account_id: str, dialog_id: str) -> VoiceDialog:
        return await self.dialogs.hangup_dialog(account_id=account_id, dialog_id=dialog_id)

    @relayed
    async def dialog_say(self, *, account_id: str, dialog_id: str, speech: Speech, loop_count: int = 1) -> None:
        await self.dialogs.dialog_say(account_id=account_id, dialog_id=dialog_id, speech=speech, loop_count=loop_count)

    @relayed
    async def dialog_play(self, *, account_id: str, dialog_id: str, content: PlayContent, loop_count: int = 1) -> None:
        await self.dialogs.dialog_play(
            account_id=account_id, dialog_id=dialog_id, content=content, loop_count=loop_count
        )

    @relayed
    async def dialog_stop_play(self, *, account_id: str, dialog_id: str) -> None:
        await self.dialogs.dialog_stop_play(account_id=account_id, dialog_id=dialog_id)

    @relayed
    async def start_dialog_recording(self, *, account_id: str, dialog_id: str, request: DialogRecordingRequest) -> None:
        await self.dialogs.start_dialog_recording(account_id=account_id, dialog_id=dialog_id, request=request)

    @relayed
    async def record_dialog_when_established(self, *, dialog_id: str, request: DialogRecordingRequest) -> None:
        await self.dialogs.record_dialog_when_established(dialog_id=dialog_id, request=request)

    @relayed
    async def stop_dialog_recording(self, *, account_id: str, dialog_id: str) -> None:
        await self.dialogs.stop_dialog_recording(account_id=account_id, dialog_id=dialog_id)

    @relayed
    async def limit_dialog_duration(self, *, dialog_id: str, max_duration_s: int) -> None:
        await self.dialogs.limit_dialog_duration(dialog_id=dialog_id, max_duration_s=max_duration_s)

    async def compose_dialog_recording(
        self, *, account_id: str, dialog_id: str, delete_call_recordings: bool = True, multi_channel: bool = False
    ) -> None:
        await self.dialogs.compose_dialog_recording(
            account_id=account_id,
            dialog_id=dialog_id,
            delete_call_recordings=delete_call_recordings,
            multi_channel=multi_channel,
        )

    # ---- conferences (live/conferences.py) ------------------------------------------------------------

    @relayed
    async def create_conference(self, *, account_id: str, request: NewConference) -> VoiceConference:
        return await self.conferences.create_conference(account_id=account_id, request=request)

    @relayed
    async def connect_calls(
        self, *, account_id: str, call_id: str, other_call_ids: list[str], conference: NewConference | None = None
    ) -> VoiceConference:
        """`POST /connect`: `call_id` and `other_call_ids` in a new conference (named by the first call, so the
        relay finds the node that carries them)."""
        return await self.conferences.connect(
            account_id=account_id, call_ids=[call_id, *other_call_ids], conference=conference
        )

    @relayed
    async def connect_with_new_call(
        self,
        *,
        account_id: str,
        call_id: str,
        request: NewCall,
        options: JoinOptions,
        conference: NewConference | None = None,
    ) -> VoiceConference:
        created, _ = await self.conferences.connect_with_new_call(
            account_id=account_id, call_id=call_id, request=request, options=options, conference=conference
        )
        return created

    @relayed
    async def add_conference_call(
        self, *, account_id: str, conference_id: str, request: NewCall, options: JoinOptions
    ) -> VoiceCall:
        return await self.conferences.add_new_call(
            account_id=account_id, conference_id=conference_id, request=request, options=options
        )

    @relayed
    async def add_existing_conference_call(
        self, *, account_id: str, conference_id: str, call_id: str, options: JoinOptions
    ) -> VoiceConference:
        return await self.conferences.add_existing_call(
            account_id=account_id, conference_id=conference_id, call_id=call_id, options=options
        )

    @relayed
    async def remove_conference_call(self, *, account_id: str, conference_id: str, call_id: str) -> None:
        await self.conferences.remove_participant(account_id=account_id, conference_id=conference_id, call_id=call_id)

    @relayed
    async def update_conference_call(
        self, *, account_id: str, conference_id: str, call_id: str, update: ParticipantUpdate
    ) -> None:
        await self.conferences.update_participant(
            account_id=account_id, conference_id=conference_id, call_id=call_id, update=update
        )

    @relayed
    async def update_conference(self, *, account_id: str, conference_id: str, update: ParticipantUpdate) -> None:
        await self.conferences.update_all(account_id=account_id, conference_id=conference_id, update=update)

    @relayed
    async def hangup_conference(self, *, account_id: str, conference_id: str) -> VoiceConference:
        return (await self.conferences.hangup(account_id=account_id, conference_id=conference_id)).conference

    @relayed
    async def conference_say(self, *, account_id: str, conference_id: str, speech: Speech, loop_count: int = 1) -> None:
        await self.conferences.say(
            account_id=account_id, conference_id=conference_id, speech=speech, loop_count=loop_count
        )

    @relayed
    async def conference_play(
        self, *, account_id: str, conference_id: str, content: PlayContent, loop_count: int = 1
    ) -> None:
        await self.conferences.play(
            account_id=account_id, conference_id=conference_id, content=content, loop_count=loop_count
        )

    @relayed
    async def conference_stop_play(self, *, account_id: str, conference_id: str) -> None:
        await self.conferences.stop_play(account_id=account_id, conference_id=conference_id)

    @relayed
    async def start_conference_recording(
        self, *, account_id: str, conference_id: str, request: DialogRecordingRequest
    ) -> None:
        await self.conferences.start_recording(account_id=account_id, conference_id=conference_id, request=request)

    @relayed
    async def stop_conference_recording(self, *, account_id: str, conference_id: str) -> None:
        await self.conferences.stop_recording(account_id=account_id, conference_id=conference_id)

    async def compose_conference_recording(
        self, *, account_id: str, conference_id: str, delete_call_recordings: bool = True, multi_channel: bool = False
    ) -> None:
        await self.conferences.compose_recording(
            account_id=account_id,
            conference_id=conference_id,
            delete_call_recordings=delete_call_recordings,
            multi_channel=multi_channel,
        )

    # ---- hold (live/hold.py) ----------------------------------------------------------------------

    @relayed
    async def hold(self, *, account_id: str, call_id: str, music: PlayContent | None = None) -> None:
        """The call hears music (its own, else the default) instead of the party it is bridged with."""
        await self.holds.hold(account_id=account_id, call_id=call_id, music=music)

    @relayed
    async def resume(self, *, account_id: str, call_id: str, rebridge: bool = True) -> None:
        await self.holds.resume(account_id=account_id, call_id=call_id, rebridge=rebridge)

    # ---- application transfer (live/transfers.py) -------------------------------------------------

    @relayed
    async def application_transfer(
        self,
        *,
        account_id: str,
        call_id: str,
        destination_configuration_id: str,
        timeout_s: int = 30,
        custom_data: Mapping[str, str] | None = None,
    ) -> None:
        await self.app_transfers.request(
            account_id=account_id,
            call_id=call_id,
            destination_configuration_id=destination_configuration_id,
            timeout_s=timeout_s,
            custom_data=custom_data,
        )

    @relayed
    async def accept_application_transfer(self, *, account_id: str, call_id: str, transfer_id: str) -> None:
        await self.app_transfers.accept(account_id=account_id, call_id=call_id, transfer_id=transfer_id)

    @relayed
    async def reject_application_transfer(self, *, account_id: str, call_id: str, transfer_id: str) -> None:
        await self.app_transfers.reject(account_id=account_id, call_id=call_id, transfer_id=transfer_id)

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
            lane = self.calls.spawn(self._lane(self._lanes.get(key), event), "voice-event")
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
        live = self.calls.by_engine.get(getattr(event, "call_id", ""))
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

    async def _handle(self, event: EngineEvent) -> None:
        if await self.conferences.on_engine_event(event):  # a conference room's prompt or recording
            return
        if isinstance(event, IncomingCall):
            await self._on_incoming(event)
            return
        engine_id = getattr(event, "call_id", None)
        if engine_id is None:
            return  # registration events belong to the trunk registrar
        if engine_id in self.calls.refused:
            if isinstance(event, CallEnded):
                self.calls.refused.discard(engine_id)
            return
        if engine_id in self.calls.ended:
            return
        live = await self.calls.known(engine_id)
        if live is None:
            return
        if isinstance(event, CallRinging):
            await self.move(live.call_id, VoiceCallState.RINGING, LegEvent.RINGING, ringing=True)
        elif isinstance(event, CallEarlyMedia):
            await self._on_early_media(live)
        elif isinstance(event, CallAnswered):
            await self._on_answered(live)
        elif isinstance(event, DtmfReceived):
            await self.media.on_digit(live, event.digit)
            await self._publish(LegChange(live.call_id, LegEvent.DIGITS, digits=event.digit))
        elif isinstance(event, PlaybackFinished):
            await self.media.on_playback_finished(live, event)
            await self._publish(LegChange(live.call_id, LegEvent.PLAYBACK_FINISHED))
        elif isinstance(event, RecordingFinished):
            await self._on_recording_finished(live, event)
        elif isinstance(event, TransferRequested):
            await self.blind_transfers.on_requested(live, event)
        elif isinstance(event, CallEnded):
            await self._on_ended(live, event)

    async def _on_incoming(self, event: IncomingCall) -> None:
        async with self.sessions() as session:
            route = await route_for(session=session, called_user=event.to_user)
            plan: InboundPlan | None = None
            if route is None and self.inbound_planner is not None:
                plan = await self.inbound_planner.plan(session=session, event=event)
            if route is None and plan is None:
                self.calls.refused.add(event.call_id)
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
            session.add_all(records.call_rows(call))
            await session.flush()
            if plan is not None and self.inbound_planner is not None:
                await self.inbound_planner.accepted(session=session, call=call, plan=plan)
            await publish_event(
                session=session, renderer=self.renderer, event=VoiceEvent(VoiceEventType.CALL_RECEIVED, call)
            )
            await session.commit()
            self._register(
                LiveCall(
                    call_id=call.id,
                    engine_id=event.call_id,
                    account_id=call.account_id,
                    direction=CallDirection.INBOUND,
                    max_duration_s=call.max_duration_s,
                    record_on_answer=RecordingRequest(channels=plan.record) if plan and plan.record else None,
                )
            )
        if plan is not None and self.inbound_planner is not None:
            self.calls.spawn(self.inbound_planner.connect(voice=self, call=call, plan=plan), "inbound-connect")

    async def _on_answered(self, live: LiveCall) -> None:
        call = await self.move(
            live.call_id, VoiceCallState.ESTABLISHED, LegEvent.ESTABLISHED, answered=True, publish=False
        )
        if call is None:
            return
        loop = asyncio.get_running_loop()
        live.max_duration_timer = loop.call_later(
            live.max_duration_s, lambda: self.calls.spawn(self._max_duration_reached(live), "max-duration")
        )
        try:
            if live.record_on_answer is not None:
                await self.media.record_on_answer(live, call, live.record_on_answer)
        finally:  # the listeners hear of the answer even when its recording could not start
            await self._publish(LegChange(call.id, LegEvent.ESTABLISHED, dialog_id=call.dialog_id))

    async def _on_early_media(self, live: LiveCall) -> None:
        """183 with SDP from the far end. The guide: "Calls to WebRTC and SIP never go through the PRE_ESTABLISHED
        states", so a SIP call's early media is ringing (RINGING, its ringing event; none if it rang already);
        in-process listeners hear EARLY_MEDIA either way (a dialog's propagation, connecting on early media)."""
        call = await self.get_call(account_id=live.account_id, call_id=live.call_id)
        if call.endpoint_type != EndpointType.SIP:
            await self.move(live.call_id, VoiceCallState.PRE_ESTABLISHED, LegEvent.EARLY_MEDIA, ringing=True)
            return
        if call.state not in (VoiceCallState.CALLING, VoiceCallState.RINGING):
            return
        moved = await self.move(
            live.call_id,
            VoiceCallState.RINGING,
            LegEvent.EARLY_MEDIA,
            ringing=True,
            publish=False,
            outbox=VoiceEventType.CALL_RINGING,
        )
        if moved is not None or call.state == VoiceCallState.RINGING:
            await self._publish(LegChange(live.call_id, LegEvent.EARLY_MEDIA, dialog_id=call.dialog_id))

    async def _max_duration_reached(self, live: LiveCall) -> None:
        live.requested = Ending(VoiceCallState.FINISHED, HangupSource.PLATFORM, ErrorCode.MAX_DURATION_REACHED)
        with contextlib.suppress(CallplaneError):
            await self.engine.hangup(live.engine_id)

    async def _on_recording_finished(self, live: LiveCall, event: RecordingFinished) -> None:
        recording_id, live.recording_id, live.recording_dialog_id = live.recording_id, None, None
        if recording_id is None:
            return
        size = await self.calls.store.publish_path(event.path)  # a shared store takes it before it is READY
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
                for step in (VoiceEventType.CALL_RECORDING_STOPPED, VoiceEventType.CALL_RECORDING_READY):
                    await publish_event(
                        session=session, renderer=self.renderer, event=VoiceEvent(step, call, recording=recording)
                    )
        await self._publish(
            LegChange(live.call_id, LegEvent.RECORDING_READY, dialog_id=dialog_id, recording_id=recording_id)
        )

    async def recordings_deleted(
        self, session: AsyncSession, call: VoiceCall, recordings: list[VoiceRecording]
    ) -> None:
        """A call's recording files were deleted (in this transaction): CALL_RECORDING_DELETED (a dialog's files are
        the dialog's)."""
        if any(recording.dialog_id is None for recording in recordings):
            event = VoiceEvent(VoiceEventType.CALL_RECORDING_DELETED, call)
            await publish_event(session=session, renderer=self.renderer, event=event)

    async def _on_ended(self, live: LiveCall, event: CallEnded) -> None:
        ending = ending_for(event, live.direction, requested=live.requested)
        await self._finish(live.call_id, ending, sip_status=event.sip_status, reason=event.reason)

    # ---- state changes --------------------------------------------------------------------------

    async def move(
        self,
        call_id: str,
        target: VoiceCallState,
        event: LegEvent,
        *,
        ringing: bool = False,
        answered: bool = False,
        publish: bool = True,
        outbox: VoiceEventType | None = None,
    ) -> VoiceCall | None:
        """Move a live call forward (a conditional UPDATE), write its event to the outbox (`outbox`, else the leg
        event's), and (unless `publish` is off: the caller publishes later) tell the listeners; the moved call, or
        None when it cannot move."""
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
            await records.touch_core(session, call)
            await publish_event(
                session=session, renderer=self.renderer, event=VoiceEvent(outbox or OUTBOX_EVENTS[event], call, at=now)
            )
        if publish:
            await self._publish(LegChange(call_id, event, dialog_id=call.dialog_id))
        return call

    async def _publish(self, change: LegChange) -> None:
        # The subscribers first, then this service's own dialogs (which may end or bridge the other leg).
        for listener in [*self._listeners, self.dialogs.on_leg, self.conferences.on_leg]:
            try:
                await listener(change)
            except Exception:  # an observer's failure must not stop the call's own handling; logged with its cause
                log.exception(
                    "voice listener failed", extra={"fields": {"call_id": change.call_id, "event": change.event}}
                )

    async def _finish(
        self, call_id: str, ending: Ending, *, sip_status: int | None = None, reason: SipReasonHeader | None = None
    ) -> bool:
        """The one way a call ends: terminal state, core Call closed and exactly one terminal event."""
        live = self.calls.forget(call_id)
        self.transcription.call_ended(call_id)
        await self.speech.call_ended(call_id)  # its HANGUP outcome goes before the terminal event
        self.holds.forget(call_id)
        await self.app_transfers.report_ended(call_id)  # a transfer still pending fails before the call's end
        if live is not None:
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
            await records.touch_core(session, call, ended=True)
            await records.queue_post_call(session, call, max_attempts=self.job_max_attempts)
            event = LegEvent.FINISHED if ending.state == VoiceCallState.FINISHED else LegEvent.FAILED
            await publish_event(
                session=session, renderer=self.renderer, event=VoiceEvent(OUTBOX_EVENTS[event], call, at=now)
            )
            dialog_id = call.dialog_id
        await self._publish(LegChange(call_id, event, dialog_id=dialog_id))
        return True

    async def _merge_custom_data(self, call_id: str, custom_data: Mapping[str, str] | None) -> None:
        if not custom_data:
            return
        async with self.sessions() as session, session.begin():
            call = await session.get(VoiceCall, call_id)
            if call is not None:
                call.custom_data = {**call.custom_data, **custom_data}
