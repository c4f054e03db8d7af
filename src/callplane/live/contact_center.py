"""The contact center at work: queues, scheduled calls, ringing agents and end users, and call states.

Runs in the process that carries the media engine, next to `VoiceService`:
- a loop fires due scheduled calls, hands queued calls to the longest-idle available agent of their menu and
  rings assigned calls whose legs have not started (outbound API calls, calls just dispatched). Everything it
  acts on is in the database and every step is a conditional UPDATE, so a restart resumes where it stopped and
  nothing fires or rings twice;
- the voice service tells it about its legs' state changes (`LegEvent`s into its `LegInbox`, a listener the voice
  service is built with; no polling): the
  agent answered -> dial the end user in a dialog (bridged when they answer), the end user answered ->
  connected, a leg ended -> finished or failed, the agent is idle again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.calls.models import Call, CallStatus
from callplane.core.calls.service import queue_for_processing
from callplane.core.contact_center.errors import AgentNotAvailable, ContactCenterInvalid, NotAValidAgentEmail
from callplane.core.contact_center.models import (
    Agent,
    AgentStatus,
    CcCall,
    CcCallStatus,
    CcCallType,
    CcParticipant,
    CcTransfer,
    Menu,
    MenuAgent,
    ParticipantKind,
    ParticipantStatus,
    TransferKind,
    TransferStatus,
)
from callplane.core.contact_center.service import LIVE_STATUSES
from callplane.core.voice.configurations import create_configuration
from callplane.core.voice.models import (
    CallsConfiguration,
    EndpointType,
    HangupSource,
    VoiceCall,
    VoiceCallState,
    VoiceRecording,
)
from callplane.core.voice.schemas import Endpoint, NewCall, PlayContent, RecordingChannels, RecordingRequest
from callplane.core.voice.states import TERMINAL_STATES, ErrorCode
from callplane.db.base import utcnow
from callplane.errors import CallplaneError
from callplane.live.calls import LegChange, LegEvent
from callplane.live.control import VoiceService

log = logging.getLogger("callplane.contact_center")

AGENT = ParticipantKind.AGENT
END_USER = ParticipantKind.END_USER
DISPATCH_BATCH = 100
MAX_OFFERS = 3  # agents a queued call is offered to before it fails (ours; the seed is silent)
STOP = None  # tells the consumer to return once what was queued before it is handled
LEG_EVENTS = frozenset({LegEvent.ESTABLISHED, LegEvent.FINISHED, LegEvent.FAILED})


NOT_CONNECTED = "Only a connected call can be held or transferred"


class LegInbox:
    """The leg changes the contact center acts on, queued until its consumer takes them.

    Made before both: the voice service is built with `put` among its listeners, the runtime with the inbox, so
    neither is wired to the other after construction (runtime.py). Changes queued before the runtime starts (the
    voice service's restart recovery) are handled once it does.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, LegEvent] | None] = asyncio.Queue()

    async def put(self, change: LegChange) -> None:
        if change.event in LEG_EVENTS:  # every voice call's changes come here; only these can move ours
            self.queue.put_nowait((change.call_id, change.event))


class _Lost(Exception):
    """A conditional UPDATE matched nothing: another pass or process got there first."""


def configuration_id_for(account_id: str) -> str:
    """The calls configuration the contact center's legs belong to (made on first use, one per account)."""
    return f"contact-center-{account_id}"


class ContactCenterRuntime:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        voice: VoiceService,
        legs: LegInbox,
        ring_timeout_s: int = 30,
        poll_s: float = 1.0,
        job_max_attempts: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.job_max_attempts = job_max_attempts  # of the post-call jobs of recorded calls (None: the default)
        self.voice = voice
        self.ring_timeout_s = ring_timeout_s
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._events = legs.queue
        self._tasks: list[asyncio.Task[None]] = []
        self._ringing: set[asyncio.Task[None]] = set()

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.reconcile()
        self._tasks = [
            asyncio.create_task(self._loop(), name="contact-center-loop"),
            asyncio.create_task(self._consume(), name="contact-center-events"),
        ]

    async def stop(self) -> None:
        loop_tasks = [task for task in self._tasks if task.get_name() != "contact-center-events"]
        consumer = [task for task in self._tasks if task.get_name() == "contact-center-events"]
        for task in [*loop_tasks, *self._ringing]:
            task.cancel()
        for task in [*loop_tasks, *self._ringing]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # The consumer finishes what the legs reported while the engine stopped (their terminal events): an event
        # cut off halfway would leave a participant open. Bounded, then cancelled.
        for task in consumer:
            self._events.put_nowait(STOP)
            try:
                await asyncio.wait_for(task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("contact center events not all handled at stop; the next start reconciles them")
        self._tasks = []
        # What the legs reported while the engine stopped (their terminal events) is handled before we go.
        while not self._events.empty():
            queued = self._events.get_nowait()
            if queued is STOP:
                continue
            call_id, event = queued
            try:
                await self._on_leg_event(call_id, event)
            except Exception:  # logged with its cause; the next start reconciles what is left
                log.exception("contact center event failed", extra={"fields": {"call_id": call_id}})

    def poke(self) -> None:
        """Something changed (a call accepted, an agent available): look at the queues now."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.fire_due()
                await self.dispatch()
            except Exception:  # the loop must outlive one bad pass (e.g. the database restarting); logged
                log.exception("contact center pass failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)

    async def _consume(self) -> None:
        while True:
            queued = await self._events.get()
            if queued is STOP:
                return
            call_id, event = queued
            try:
                await self._on_leg_event(call_id, event)
            except Exception:  # one bad event must not stop the consumer; logged with its cause
                log.exception("contact center event failed", extra={"fields": {"call_id": call_id}})

    # ---- scheduled calls and queues -------------------------------------------------------------

    async def fire_due(self) -> int:
        """Scheduled calls whose time has come join their menu's queue (once: a conditional UPDATE)."""
        now = utcnow()
        async with self.sessions() as session, session.begin():
            due = list(
                await session.scalars(
                    select(CcCall.id)
                    .where(CcCall.status == CcCallStatus.SCHEDULED, CcCall.scheduled_at <= now)
                    .order_by(CcCall.scheduled_at)
                    .limit(DISPATCH_BATCH)
                )
            )
            fired = 0
            for call_id in due:
                result = await session.execute(
                    update(CcCall)
                    .where(CcCall.id == call_id, CcCall.status == CcCallStatus.SCHEDULED)
                    .values(status=CcCallStatus.QUEUED, queued_at=now, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    fired += 1
                    await self._touch_core(session, call_id, CcCallStatus.QUEUED)
        if fired:
            log.info("scheduled calls fired", extra={"fields": {"calls": fired}})
        return fired

    async def dispatch(self) -> None:
        """Queued calls get the longest-idle available agent of their menu; assigned calls get rung."""
        # Only calls whose menu has an available agent: a pass over long queues nobody can take costs one query.
        ready_menus = (
            select(MenuAgent.menu_id)
            .join(Agent, Agent.id == MenuAgent.agent_id)
            .where(Agent.status == AgentStatus.AVAILABLE)
        )
        async with self.sessions() as session:
            queued = list(
                await session.execute(
                    select(CcCall.id, CcCall.menu_id)
                    .where(CcCall.status == CcCallStatus.QUEUED, CcCall.menu_id.in_(ready_menus))
                    .order_by(CcCall.queued_at, CcCall.id)
                    .limit(DISPATCH_BATCH)
                )
            )
        for call_id, menu_id in queued:
            if menu_id is not None:
                await self._assign(call_id, menu_id)
        async with self.sessions() as session:
            to_ring = list(
                await session.scalars(
                    select(CcCall.id)
                    .where(CcCall.status == CcCallStatus.ASSIGNED, CcCall.legs_started.is_(False))
                    .order_by(CcCall.id)
                    .limit(DISPATCH_BATCH)
                )
            )
        for call_id in to_ring:
            task = asyncio.create_task(self.ring_agent(call_id), name="contact-center-ring")
            self._ringing.add(task)
            task.add_done_callback(self._ringing.discard)

    async def _assign(self, call_id: int, menu_id: int) -> bool:
        try:
            return await self._assign_once(call_id, menu_id)
        except _Lost:
            return False

    async def _assign_once(self, call_id: int, menu_id: int) -> bool:
        now = utcnow()
        async with self.sessions() as session, session.begin():
            agent = await session.scalar(
                select(Agent)
                .join(MenuAgent, MenuAgent.agent_id == Agent.id)
                .where(MenuAgent.menu_id == menu_id, Agent.status == AgentStatus.AVAILABLE)
                .order_by(Agent.last_idle_at.asc().nulls_first(), Agent.id)
                .limit(1)
            )
            if agent is None:
                return False
            taken = await session.execute(
                update(Agent)
                .where(Agent.id == agent.id, Agent.status == AgentStatus.AVAILABLE)
                .values(status=AgentStatus.BUSY)
                .execution_options(synchronize_session=False)
            )
            if getattr(taken, "rowcount", 0) != 1:
                return False
            assigned = await session.execute(
                update(CcCall)
                .where(CcCall.id == call_id, CcCall.status == CcCallStatus.QUEUED)
                .values(status=CcCallStatus.ASSIGNED, agent_id=agent.id, assigned_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if getattr(assigned, "rowcount", 0) != 1:
                raise _Lost()  # someone else took the call: the agent's UPDATE is rolled back with the transaction
            session.add(CcParticipant(call_id=call_id, kind=AGENT, agent_id=agent.id))
            core_id = await session.scalar(select(CcCall.core_call_id).where(CcCall.id == call_id))
            core = await session.get(Call, core_id)
            if core is not None:
                core.agent = {
                    "id": agent.id,
                    "email": agent.email,
                    "name": f"{agent.first_name} {agent.last_name}".strip(),
                }
            await self._touch_core(session, call_id, CcCallStatus.ASSIGNED)
        return True

    # ---- legs -----------------------------------------------------------------------------------

    async def ring_agent(self, call_id: int) -> None:
        """Claim the call (legs_started false -> true) and ring its agent's endpoint."""
        async with self.sessions() as session, session.begin():
            claimed = await session.execute(
                update(CcCall)
                .where(CcCall.id == call_id, CcCall.status == CcCallStatus.ASSIGNED, CcCall.legs_started.is_(False))
                .values(legs_started=True, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                return
            call = await session.get(CcCall, call_id)
            assert call is not None
            agent = await session.get(Agent, call.agent_id) if call.agent_id is not None else None
            configuration_id = await self._configuration(session, call.account_id)
            core = await session.get(Call, call.core_call_id)
            if core is not None:
                core.status = CallStatus.PROCESSING
        if agent is None:
            await self._end(call_id, None, fail_reason="agent_not_found", details="the assigned agent was deleted")
            return
        recording = (
            RecordingRequest(channels=RecordingChannels.STEREO)
            if call.recording_permission == "recording_permission_granted"
            else None
        )
        try:
            leg = await self.voice.create_call(
                account_id=call.account_id,
                request=NewCall(
                    configuration_id=configuration_id,
                    endpoint=Endpoint(
                        EndpointType(agent.endpoint_type),
                        agent.endpoint_user,
                        trunk_id=agent.trunk_id,
                        host=agent.endpoint_host,
                    ),
                    from_user=call.end_user_e164,
                    connect_timeout_s=self.ring_timeout_s,
                    custom_data={"cc_call_id": str(call_id), "cc_leg": AGENT},
                    recording=recording,
                ),
            )
        except CallplaneError as error:
            await self._end(call_id, None, fail_reason="agent_unreachable", details=error.message)
            return
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(CcCall).where(CcCall.id == call_id, CcCall.agent_leg_id.is_(None)).values(agent_leg_id=leg.id)
            )
            await self._participant(session, call_id, AGENT, status=ParticipantStatus.CONNECTING, only_waiting=True)

    async def _on_leg_event(self, voice_call_id: str, event: LegEvent) -> None:
        async with self.sessions() as session:
            leg = await session.get(VoiceCall, voice_call_id)
        if leg is None or "cc_call_id" not in leg.custom_data:
            return
        call_id = int(leg.custom_data["cc_call_id"])
        if leg.custom_data.get("cc_released") == "true":
            return  # an agent who handed the call over (a transfer): their part was closed then
        transfer_id = leg.custom_data.get("cc_transfer_id")
        if transfer_id is not None and await self._transfer_leg_event(call_id, int(transfer_id), leg, event):
            return
        role = ParticipantKind(leg.custom_data.get("cc_leg", AGENT))
        if event is LegEvent.ESTABLISHED:
            if role is AGENT:
                await self._agent_answered(call_id, leg)
            else:
                await self._end_user_answered(call_id, leg)
        elif event in (LegEvent.FINISHED, LegEvent.FAILED):
            await self._leg_ended(call_id, role, leg)

    async def _agent_answered(self, call_id: int, leg: VoiceCall) -> None:
        """The agent picked up: connecting; dial the end user from the outbound number, bridged on answer."""
        if await self._transfer_agent_answered(call_id, leg):
            return
        now = utcnow()
        async with self.sessions() as session, session.begin():
            moved = await session.execute(
                update(CcCall)
                .where(CcCall.id == call_id, CcCall.status == CcCallStatus.ASSIGNED)
                .values(status=CcCallStatus.CONNECTING, updated_at=now, agent_leg_id=leg.id)
                .execution_options(synchronize_session=False)
            )
            if getattr(moved, "rowcount", 0) != 1:
                return
            await self._participant(
                session, call_id, AGENT, status=ParticipantStatus.CONNECTED, connected_at=leg.answered_at or now
            )
            await self._touch_core(session, call_id, CcCallStatus.CONNECTING)
            call = await session.get(CcCall, call_id)
            assert call is not None
        if call.outbound_trunk_id is None:
            await self._end(
                call_id, None, fail_reason="no_outbound_trunk", details="the outbound number has no SIP trunk"
            )
            await self._hang_up(call.account_id, leg.id)
            return
        try:
            dialog = await self.voice.create_dialog(
                account_id=call.account_id,
                parent_call_id=leg.id,
                child=NewCall(
                    configuration_id=leg.configuration_id,
                    endpoint=Endpoint(EndpointType.PHONE, call.end_user_e164, trunk_id=call.outbound_trunk_id),
                    from_user=call.outbound_number_e164,
                    connect_timeout_s=self.ring_timeout_s,
                    custom_data={"cc_call_id": str(call_id), "cc_leg": END_USER},
                ),
            )
        except CallplaneError as error:
            await self._end(call_id, END_USER, fail_reason="end_user_unreachable", details=error.message)
            await self._hang_up(call.account_id, leg.id)
            return
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(CcCall)
                .where(CcCall.id == call_id, CcCall.end_user_leg_id.is_(None))
                .values(end_user_leg_id=dialog.child_call_id)
            )
            await self._participant(session, call_id, END_USER, status=ParticipantStatus.CONNECTING, only_waiting=True)

    async def _end_user_answered(self, call_id: int, leg: VoiceCall) -> None:
        now = leg.answered_at or utcnow()
        async with self.sessions() as session, session.begin():
            moved = await session.execute(
                update(CcCall)
                .where(CcCall.id == call_id, CcCall.status == CcCallStatus.CONNECTING)
                .values(status=CcCallStatus.CONNECTED, connected_at=now, updated_at=utcnow(), end_user_leg_id=leg.id)
                .execution_options(synchronize_session=False)
            )
            if getattr(moved, "rowcount", 0) != 1:
                return
            await self._participant(session, call_id, END_USER, status=ParticipantStatus.CONNECTED, connected_at=now)
            await self._touch_core(session, call_id, CcCallStatus.CONNECTED)

    async def _leg_ended(self, call_id: int, role: ParticipantKind, leg: VoiceCall) -> None:
        answered = leg.answered_at is not None
        async with self.sessions() as session, session.begin():
            call = await session.get(CcCall, call_id)
            await self._participant(
                session,
                call_id,
                role,
                # the call's agent: after a transfer the call has agent participants of other agents
                agent_id=call.agent_id if role is AGENT and call is not None else None,
                status=ParticipantStatus.FINISHED if answered else ParticipantStatus.FAILED,
                ended_at=leg.ended_at or utcnow(),
                fail_reason="nothing" if answered else _fail_reason(role, leg),
            )
        if role is AGENT and not answered and await self._offer_again(call_id, leg):
            return
        async with self.sessions() as session:
            transfer = await self._active_transfer(session, call_id)
        if leg.hangup_source == HangupSource.ENDPOINT:
            disconnected_by = f"disconnected_by_{role}"
        elif leg.hangup_source == HangupSource.API:
            disconnected_by = "disconnected_by_api"
        else:
            disconnected_by = "disconnected_by_system"
        await self._end(
            call_id,
            role,
            fail_reason=_fail_reason(role, leg),
            details=f"{role} leg {leg.state} ({_error_name(leg.error_code)})",
            disconnected_by=disconnected_by,
            ended_at=leg.ended_at,
            transfer_fail_reason=_fail_reason(role, leg).replace("nothing", f"{role}_hung_up"),
        )
        if transfer is not None:  # no dialog links the legs during a transfer: the others are hung up here
            await self._hang_up_legs(call_id, but=leg.id)
        if role is AGENT:
            await self._queue_recording(call_id, leg)

    async def _offer_again(self, call_id: int, leg: VoiceCall) -> bool:
        """A queued call whose agent did not answer goes back to its queue (keeping its place: `queued_at`) for
        the next agent, up to MAX_OFFERS agents; the agent who missed it is available again, now the least idle.
        Outbound calls have their one agent, so they fail instead."""
        now = utcnow()
        async with self.sessions() as session, session.begin():
            call = await session.get(CcCall, call_id)
            if call is None or call.status != CcCallStatus.ASSIGNED:
                return False
            transfer = await self._active_transfer(session, call_id)
            to_queue = transfer is not None and transfer.to_menu_id is not None
            if call.call_type == CcCallType.OUTBOUND and not to_queue:
                return False
            offers = int(call.extras.get("offers", 0)) + 1
            if offers >= MAX_OFFERS:
                return False
            result = await session.execute(
                update(CcCall)
                .where(CcCall.id == call_id, CcCall.status == CcCallStatus.ASSIGNED)
                .values(
                    status=CcCallStatus.QUEUED,
                    agent_id=None,
                    assigned_at=None,
                    legs_started=False,
                    agent_leg_id=None,
                    updated_at=now,
                    extras={**call.extras, "offers": offers},
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                return False
            if call.agent_id is not None:
                await session.execute(
                    update(Agent)
                    .where(Agent.id == call.agent_id, Agent.status == AgentStatus.BUSY)
                    .values(status=AgentStatus.AVAILABLE, last_idle_at=now)
                    .execution_options(synchronize_session=False)
                )
            core = await session.get(Call, call.core_call_id)
            if core is not None:
                core.status = CallStatus.QUEUED
                core.agent = {}
                core.extras = {**core.extras, "contact_center_status": CcCallStatus.QUEUED}
                core.updated_at = now
        log.info("call offered again", extra={"fields": {"call_id": call_id, "offers": offers}})
        self.poke()
        return True

    async def _queue_recording(self, call_id: int, leg: VoiceCall) -> None:
        """A call the end user allowed to record: the agent leg's recording (both parties: stereo) goes through the
        post-call pipeline as the contact-center call's recording."""
        async with self.sessions() as session, session.begin():
            call = await session.get(CcCall, call_id)
            if call is None or call.recording_permission != "recording_permission_granted":
                return
            recording = await session.scalar(
                select(VoiceRecording)
                .where(VoiceRecording.call_id == leg.id, VoiceRecording.ready.is_(True))
                .order_by(VoiceRecording.started_at.desc())
                .limit(1)
            )
            core = await session.get(Call, call.core_call_id)
            if recording is None or core is None or core.recording_filename:
                return
            call.extras = {**call.extras, "recording_file_id": recording.id}
            await queue_for_processing(session, core, recording.storage_key, max_attempts=self.job_max_attempts)

    async def _end(
        self,
        call_id: int,
        role: ParticipantKind | None,
        *,
        fail_reason: str,
        details: str | None,
        disconnected_by: str = "disconnected_by_unknown",
        ended_at: Any = None,
        transfer_fail_reason: str = "call_ended",
    ) -> None:
        """The call ends once: finished when it was connected (also before a transfer), else failed; its agent is
        idle again, and so is the agent a transfer in progress was ringing."""
        now = ended_at or utcnow()
        async with self.sessions() as session, session.begin():
            call = await session.get(CcCall, call_id)
            if call is None:
                return
            requeued = call.status == CcCallStatus.QUEUED and call.connected_at is not None  # transferred to a queue
            if call.status not in LIVE_STATUSES and not requeued:
                return
            connected = call.connected_at is not None
            values: dict[str, Any] = {"ends_at": now, "updated_at": utcnow()}
            if connected:
                values.update(status=CcCallStatus.FINISHED, disconnected_by=disconnected_by)
            else:
                values.update(status=CcCallStatus.FAILED, fail_reason=fail_reason, fail_details=details)
            result = await session.execute(
                update(CcCall)
                .where(CcCall.id == call_id, CcCall.status == call.status)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                return
            for participant in await session.scalars(
                select(CcParticipant).where(
                    CcParticipant.call_id == call_id,
                    CcParticipant.status.in_([ParticipantStatus.WAITING, ParticipantStatus.CONNECTING]),
                    CcParticipant.kind != role,
                )
            ):
                participant.status = ParticipantStatus.FAILED
                participant.ended_at = now
            await self._end_hold(session, call_id, now)
            await self._fail_transfers(session, call_id, transfer_fail_reason, now)
            if call.agent_id is not None:
                await session.execute(
                    update(Agent)
                    .where(Agent.id == call.agent_id, Agent.status == AgentStatus.BUSY)
                    .values(status=AgentStatus.AVAILABLE, last_idle_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
            await session.refresh(call)
            core = await session.get(Call, call.core_call_id)
            if core is not None:
                core.status = CallStatus.COMPLETED
                core.status_reason = call.status
                core.ended_at = now
                if call.connected_at is not None:
                    core.duration_ms = max(0, round((now - call.connected_at).total_seconds() * 1000))
                core.extras = {**core.extras, "contact_center_status": call.status}
                core.updated_at = utcnow()
        self.poke()

    async def _hang_up(self, account_id: str, voice_call_id: str) -> None:
        with contextlib.suppress(CallplaneError):
            await self.voice.hangup(account_id=account_id, call_id=voice_call_id)

    # ---- hold and transfers (an agent's actions on a connected call) -------------------------------

    async def hold(self, *, call_id: int, music: PlayContent | None = None) -> None:
        """The end user hears music (the call's own, else the default) and the agent silence, until `resume`."""
        call = await self._connected(call_id)
        if self.voice.holds.held(call.end_user_leg_id or ""):
            raise ContactCenterInvalid("The call is already on hold")
        await self._start_hold(call, music)

    async def resume(self, *, call_id: int) -> None:
        """The end user and the agent hear each other again."""
        call = await self._connected(call_id)
        if not self.voice.holds.held(call.end_user_leg_id or ""):
            raise ContactCenterInvalid("The call is not on hold")
        assert call.end_user_leg_id is not None
        await self.voice.resume(account_id=call.account_id, call_id=call.end_user_leg_id)
        async with self.sessions() as session, session.begin():
            await self._end_hold(session, call_id, utcnow())

    async def transfer(
        self, *, call_id: int, kind: TransferKind, to_agent_id: int | None = None, to_menu_id: int | None = None
    ) -> int:
        """Hand a connected call to another agent or to a queue; the end user hears music meanwhile.

        Cold: the first agent leaves at once; the new agent (or the queue's, when one is free) is rung, and the end
        user is bridged to them when they answer. Warm: the new agent (a queue's longest-idle available agent) is
        rung while the first agent stays, the two talk when they answer, and `complete_transfer` hands the end user
        over (the first agent leaves then). Returns the transfer's id."""
        if (to_agent_id is None) == (to_menu_id is None):
            raise ContactCenterInvalid("agent_email or menu_id required")
        call = await self._connected(call_id)
        now = utcnow()
        async with self.sessions() as session, session.begin():
            agent = await session.get(Agent, to_agent_id) if to_agent_id is not None else None
            if to_agent_id is not None and (agent is None or agent.account_id != call.account_id):
                raise NotAValidAgentEmail()
            menu = await session.get(Menu, to_menu_id) if to_menu_id is not None else None
            if to_menu_id is not None and (menu is None or menu.account_id != call.account_id or menu.deleted):
                raise ContactCenterInvalid(f"menu_id {to_menu_id} is not found")
            if agent is not None and agent.id == call.agent_id:
                raise ContactCenterInvalid("The call is already with this agent")
            if kind is TransferKind.WARM and menu is not None:
                agent = await session.scalar(
                    select(Agent)
                    .join(MenuAgent, MenuAgent.agent_id == Agent.id)
                    .where(MenuAgent.menu_id == menu.id, Agent.status == AgentStatus.AVAILABLE)
                    .order_by(Agent.last_idle_at.asc().nulls_first(), Agent.id)
                    .limit(1)
                )
                if agent is None:
                    raise AgentNotAvailable()
            if agent is not None:
                taken = await session.execute(
                    update(Agent)
                    .where(Agent.id == agent.id, Agent.status == AgentStatus.AVAILABLE)
                    .values(status=AgentStatus.BUSY)
                    .execution_options(synchronize_session=False)
                )
                if getattr(taken, "rowcount", 0) != 1:
                    raise AgentNotAvailable()
            transfer = CcTransfer(
                call_id=call_id,
                kind=kind,
                status=TransferStatus.TRANSFERRING,
                from_agent_id=call.agent_id,
                to_agent_id=agent.id if agent is not None else None,
                from_menu_id=call.menu_id,
                to_menu_id=menu.id if menu is not None else None,
                created_at=now,
            )
            session.add(transfer)
            await session.flush()
            transfer_id = transfer.id
        if not self.voice.holds.held(call.end_user_leg_id or ""):
            await self._start_hold(call, None)
        log.info("transfer", extra={"fields": {"call_id": call_id, "transfer_id": transfer_id, "kind": kind}})
        if kind is TransferKind.COLD:
            await self._release_first_agent(call)
            await self._requeue_for_transfer(call_id, agent, menu)
        else:
            assert agent is not None
            await self._ring_transfer_agent(call, transfer_id, agent)
        return transfer_id

    async def complete_transfer(self, *, call_id: int, transfer_id: int) -> None:
        """A warm transfer whose new agent has answered: the first agent leaves, the end user joins the new one."""
        call = await self._connected(call_id, transferring=True)
        async with self.sessions() as session:
            transfer = await session.get(CcTransfer, transfer_id)
            if transfer is None or transfer.call_id != call_id:
                raise ContactCenterInvalid(f"transfer {transfer_id} is not found")
            if transfer.status != TransferStatus.TRANSFERRING or transfer.kind != TransferKind.WARM:
                raise ContactCenterInvalid("Only a warm transfer in progress can be completed")
            target = await session.get(VoiceCall, transfer.target_leg_id) if transfer.target_leg_id else None
        if target is None or target.state != VoiceCallState.ESTABLISHED:
            raise ContactCenterInvalid("The agent of the transfer has not answered yet")
        await self._release_first_agent(call)
        await self._connect_transfer(call_id, transfer_id, target)

    async def cancel_transfer(self, *, call_id: int, transfer_id: int) -> None:
        """A warm transfer in progress is called off: the new agent's leg is hung up (they are idle again) and the
        end user stays on hold with the first agent, who resumes them."""
        call = await self._connected(call_id, transferring=True)
        now = utcnow()
        async with self.sessions() as session, session.begin():
            cancelled = await session.execute(
                update(CcTransfer)
                .where(
                    CcTransfer.id == transfer_id,
                    CcTransfer.call_id == call_id,
                    CcTransfer.kind == TransferKind.WARM,
                    CcTransfer.status == TransferStatus.TRANSFERRING,
                )
                .values(status=TransferStatus.CANCELLED, fail_reason="cancelled", ended_at=now)
                .execution_options(synchronize_session=False)
            )
            if getattr(cancelled, "rowcount", 0) != 1:
                raise ContactCenterInvalid("Only a warm transfer in progress can be cancelled")
            transfer = await session.get(CcTransfer, transfer_id)
            assert transfer is not None
        if call.agent_leg_id is not None:
            with contextlib.suppress(CallplaneError):
                await self.voice.holds.disconnect(account_id=call.account_id, call_id=call.agent_leg_id)
        if transfer.target_leg_id is not None:
            await self._hang_up(call.account_id, transfer.target_leg_id)  # its end closes the agent's part
        else:
            await self._transfer_failed(call_id, transfer_id, transfer.to_agent_id, "cancelled", leg=None)

    async def _connected(self, call_id: int, *, transferring: bool = False) -> CcCall:
        async with self.sessions() as session:
            call = await session.get(CcCall, call_id)
            active = await self._active_transfer(session, call_id) if call is not None else None
        if call is None or call.status != CcCallStatus.CONNECTED or not call.end_user_leg_id or not call.agent_leg_id:
            raise ContactCenterInvalid(NOT_CONNECTED)
        if active is not None and not transferring:
            raise ContactCenterInvalid("A transfer of this call is in progress")
        return call

    @staticmethod
    async def _active_transfer(session: AsyncSession, call_id: int) -> CcTransfer | None:
        transfer: CcTransfer | None = await session.scalar(
            select(CcTransfer)
            .where(CcTransfer.call_id == call_id, CcTransfer.status == TransferStatus.TRANSFERRING)
            .order_by(CcTransfer.id.desc())
            .limit(1)
        )
        return transfer

    async def _start_hold(self, call: CcCall, music: PlayContent | None) -> None:
        assert call.end_user_leg_id is not None
        await self.voice.hold(account_id=call.account_id, call_id=call.end_user_leg_id, music=music)
        now = utcnow()
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(CcCall)
                .where(CcCall.id == call.id, CcCall.hold_started_at.is_(None))
                .values(hold_started_at=now)
                .execution_options(synchronize_session=False)
            )
            participant = await session.scalar(
                select(CcParticipant)
                .where(CcParticipant.call_id == call.id, CcParticipant.kind == END_USER)
                .order_by(CcParticipant.id.desc())
                .limit(1)
            )
            if participant is not None and participant.hold_started_at is None:
                participant.hold_started_at = now

    @staticmethod
    async def _end_hold(session: AsyncSession, call_id: int, now: Any) -> None:
        """Close the hold under way (of the call and its participants) into their totals."""
        call = await session.get(CcCall, call_id)
        held: list[CcCall | CcParticipant] = [call] if call is not None else []
        held += list(
            await session.scalars(
                select(CcParticipant).where(
                    CcParticipant.call_id == call_id, CcParticipant.hold_started_at.is_not(None)
                )
            )
        )
        for item in held:
            if item.hold_started_at is not None:
                spent = max(0, round((now - item.hold_started_at).total_seconds() * 1000))
                item.hold_ms = (item.hold_ms or 0) + spent
                item.hold_started_at = None

    @staticmethod
    async def _fail_transfers(session: AsyncSession, call_id: int, reason: str, now: Any) -> None:
        """Transfers still in progress when the call ends fail; the agents they were ringing are idle again."""
        for transfer in await session.scalars(
            select(CcTransfer).where(CcTransfer.call_id == call_id, CcTransfer.status == TransferStatus.TRANSFERRING)
        ):
            transfer.status = TransferStatus.FAILED
            transfer.fail_reason = reason
            transfer.ended_at = now
            if transfer.to_agent_id is not None:
                await session.execute(
                    update(Agent)
                    .where(Agent.id == transfer.to_agent_id, Agent.status == AgentStatus.BUSY)
                    .values(status=AgentStatus.AVAILABLE, last_idle_at=utcnow())
                    .execution_options(synchronize_session=False)
                )

    async def _release_first_agent(self, call: CcCall) -> None:
        """The agent who hands the call over leaves it: their dialog with the end user ends (the end user's leg
        stays up), their leg is hung up and marked released (its end is not the call's), they are idle again."""
        assert call.end_user_leg_id is not None and call.agent_leg_id is not None
        await self.voice.holds.leave_dialog(account_id=call.account_id, call_id=call.end_user_leg_id)
        now = utcnow()
        async with self.sessions() as session, session.begin():
            leg = await session.get(VoiceCall, call.agent_leg_id)
            if leg is not None:
                leg.custom_data = {**leg.custom_data, "cc_released": "true"}
            if call.agent_id is not None:
                await session.execute(
                    update(Agent)
                    .where(Agent.id == call.agent_id, Agent.status == AgentStatus.BUSY)
                    .values(status=AgentStatus.AVAILABLE, last_idle_at=now)
                    .execution_options(synchronize_session=False)
                )
                participant = await session.scalar(
                    select(CcParticipant)
                    .where(
                        CcParticipant.call_id == call.id,
                        CcParticipant.kind == AGENT,
                        CcParticipant.agent_id == call.agent_id,
                        CcParticipant.status == ParticipantStatus.CONNECTED,
                    )
                    .order_by(CcParticipant.id.desc())
                    .limit(1)
                )
                if participant is not None:
                    participant.status = ParticipantStatus.FINISHED
                    participant.ended_at = now
        await self._hang_up(call.account_id, call.agent_leg_id)
        self.poke()

    async def _requeue_for_transfer(self, call_id: int, agent: Agent | None, menu: Menu | None) -> None:
        """A cold transfer: the call is assigned to the new agent (rung by the loop), or queued in the menu."""
        now = utcnow()
        async with self.sessions() as session, session.begin():
            call = await session.get(CcCall, call_id)
            assert call is not None
            values: dict[str, Any] = {"legs_started": False, "agent_leg_id": None, "updated_at": now}
            if agent is not None:
                values.update(status=CcCallStatus.ASSIGNED, agent_id=agent.id, assigned_at=now)
                session.add(CcParticipant(call_id=call_id, kind=AGENT, agent_id=agent.id))
            else:
                assert menu is not None
                values.update(
                    status=CcCallStatus.QUEUED,
                    agent_id=None,
                    menu_id=menu.id,
                    queued_at=call.queued_at or now,
                    extras={**call.extras, "offers": 0},
                )
            await session.execute(
                update(CcCall).where(CcCall.id == call_id).values(**values).execution_options(synchronize_session=False)
            )
            await self._touch_core(session, call_id, CcCallStatus(values["status"]))
        self.poke()

    async def _ring_transfer_agent(self, call: CcCall, transfer_id: int, agent: Agent) -> None:
        """A warm transfer: ring the new agent now; they talk to the first agent when they answer."""
        async with self.sessions() as session, session.begin():
            session.add(
                CcParticipant(call_id=call.id, kind=AGENT, agent_id=agent.id, status=ParticipantStatus.CONNECTING)
            )
            configuration_id = await self._configuration(session, call.account_id)
        try:
            leg = await self.voice.create_call(
                account_id=call.account_id,
                request=NewCall(
                    configuration_id=configuration_id,
                    endpoint=Endpoint(
                        EndpointType(agent.endpoint_type),
                        agent.endpoint_user,
                        trunk_id=agent.trunk_id,
                        host=agent.endpoint_host,
                    ),
                    from_user=call.end_user_e164,
                    connect_timeout_s=self.ring_timeout_s,
                    custom_data={"cc_call_id": str(call.id), "cc_leg": AGENT, "cc_transfer_id": str(transfer_id)},
                ),
            )
        except CallplaneError as error:
            log.info("transfer agent unreachable", extra={"fields": {"call_id": call.id, "error": error.message}})
            await self._transfer_failed(call.id, transfer_id, agent.id, "agent_unreachable", leg=None)
            return
        async with self.sessions() as session, session.begin():
            await session.execute(update(CcTransfer).where(CcTransfer.id == transfer_id).values(target_leg_id=leg.id))

    async def _transfer_leg_event(self, call_id: int, transfer_id: int, leg: VoiceCall, event: LegEvent) -> bool:
        """A warm transfer's new agent answered (they talk to the first agent) or left before it completed (it
        fails; the end user stays on hold with the first agent). False: the transfer is over, the leg is the call's
        agent leg like any other."""
        async with self.sessions() as session:
            transfer = await session.get(CcTransfer, transfer_id)
            call = await session.get(CcCall, call_id)
        if transfer is None or call is None or transfer.status == TransferStatus.TRANSFERRED:
            return False  # the leg became the call's agent leg
        if transfer.status != TransferStatus.TRANSFERRING:  # cancelled, or failed when the call ended
            if event is not LegEvent.ESTABLISHED:
                await self._transfer_failed(call_id, transfer_id, transfer.to_agent_id, transfer.fail_reason, leg=leg)
            return True
        if event is LegEvent.ESTABLISHED:
            async with self.sessions() as session, session.begin():
                await self._participant(
                    session,
                    call_id,
                    AGENT,
                    status=ParticipantStatus.CONNECTED,
                    connected_at=leg.answered_at or utcnow(),
                )
            if call.agent_leg_id is not None:
                with contextlib.suppress(CallplaneError):
                    await self.voice.holds.connect(
                        account_id=call.account_id, call_id=call.agent_leg_id, other_call_id=leg.id
                    )
            return True
        reason = _fail_reason(AGENT, leg).replace("nothing", "agent_hung_up")
        await self._transfer_failed(call_id, transfer_id, transfer.to_agent_id, reason, leg=leg)
        if call.agent_leg_id is not None:
            with contextlib.suppress(CallplaneError):
                await self.voice.holds.disconnect(account_id=call.account_id, call_id=call.agent_leg_id)
        return True

    async def _transfer_failed(
        self, call_id: int, transfer_id: int, agent_id: int | None, reason: str, *, leg: VoiceCall | None
    ) -> None:
        now = utcnow()
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(CcTransfer)
                .where(CcTransfer.id == transfer_id, CcTransfer.status == TransferStatus.TRANSFERRING)
                .values(status=TransferStatus.FAILED, fail_reason=reason, ended_at=now)
                .execution_options(synchronize_session=False)
            )
            participant = await session.scalar(
                select(CcParticipant)
                .where(
                    CcParticipant.call_id == call_id, CcParticipant.kind == AGENT, CcParticipant.agent_id == agent_id
                )
                .order_by(CcParticipant.id.desc())
                .limit(1)
            )
            if participant is not None and participant.status not in (
                ParticipantStatus.FINISHED,
                ParticipantStatus.FAILED,
            ):
                answered = leg is not None and leg.answered_at is not None
                participant.status = ParticipantStatus.FINISHED if answered else ParticipantStatus.FAILED
                participant.ended_at = (leg.ended_at if leg is not None else None) or now
                participant.fail_reason = "nothing" if answered else reason
            if agent_id is not None:
                await session.execute(
                    update(Agent)
                    .where(Agent.id == agent_id, Agent.status == AgentStatus.BUSY)
                    .values(status=AgentStatus.AVAILABLE, last_idle_at=now)
                    .execution_options(synchronize_session=False)
                )
        self.poke()

    async def _transfer_agent_answered(self, call_id: int, leg: VoiceCall) -> bool:
        """The agent a cold transfer (or its queue) rang answered: the end user, on hold, is bridged to them."""
        async with self.sessions() as session:
            transfer = await self._active_transfer(session, call_id)
        if transfer is None or transfer.kind != TransferKind.COLD:
            return False
        await self._connect_transfer(call_id, transfer.id, leg)
        return True

    async def _connect_transfer(self, call_id: int, transfer_id: int, agent_leg: VoiceCall) -> None:
        async with self.sessions() as session:
            call = await session.get(CcCall, call_id)
            end_user_leg = await session.get(VoiceCall, call.end_user_leg_id) if call and call.end_user_leg_id else None
        if call is None or end_user_leg is None or end_user_leg.state != VoiceCallState.ESTABLISHED:
            await self._end(
                call_id, AGENT, fail_reason="end_user_failed", details="the end user left during a transfer"
            )
            await self._hang_up(agent_leg.account_id, agent_leg.id)
            return
        with contextlib.suppress(CallplaneError):
            await self.voice.resume(account_id=call.account_id, call_id=end_user_leg.id, rebridge=False)
        try:
            await self.voice.dialog_from_calls(
                account_id=call.account_id, parent_call_id=agent_leg.id, child_call_id=end_user_leg.id
            )
        except CallplaneError as error:
            log.warning("transfer could not bridge", extra={"fields": {"call_id": call_id, "error": error.message}})
            await self._end(call_id, None, fail_reason="technical_error", details=error.message)
            await self._hang_up_legs(call_id, but=None)
            await self._hang_up(agent_leg.account_id, agent_leg.id)
            return
        now = utcnow()
        async with self.sessions() as session, session.begin():
            transfer = await session.get(CcTransfer, transfer_id)
            call = await session.get(CcCall, call_id)
            assert transfer is not None and call is not None
            agent_id = transfer.to_agent_id or call.agent_id
            transfer.status = TransferStatus.TRANSFERRED
            transfer.to_agent_id = agent_id
            transfer.ended_at = now
            call.status = CcCallStatus.CONNECTED
            call.agent_id = agent_id
            call.agent_leg_id = agent_leg.id
            call.legs_started = True
            call.updated_at = now
            await self._end_hold(session, call_id, now)
            await self._participant(
                session, call_id, AGENT, status=ParticipantStatus.CONNECTED, connected_at=agent_leg.answered_at or now
            )
            agent = await session.get(Agent, agent_id) if agent_id is not None else None
            core = await session.get(Call, call.core_call_id)
            if core is not None and agent is not None:
                core.agent = {
                    "id": agent.id,
                    "email": agent.email,
                    "name": f"{agent.first_name} {agent.last_name}".strip(),
                }
            await self._touch_core(session, call_id, CcCallStatus.CONNECTED)
        log.info("transferred", extra={"fields": {"call_id": call_id, "transfer_id": transfer_id}})

    async def _hang_up_legs(self, call_id: int, *, but: str | None) -> None:
        """Hang up every leg of the call still up (the end user's, its agent's, a transfer's new agent's)."""
        async with self.sessions() as session:
            call = await session.get(CcCall, call_id)
            if call is None:
                return
            targets = list(await session.scalars(select(CcTransfer.target_leg_id).where(CcTransfer.call_id == call_id)))
        for leg_id in {call.end_user_leg_id, call.agent_leg_id, *targets}:
            if leg_id and leg_id != but:
                await self._hang_up(call.account_id, leg_id)

    async def reconcile(self) -> int:
        """Calls that were live when the process stopped: their legs ended on restart (voice recovery), so
        they end now too (failed or finished), and their agents are idle again."""
        async with self.sessions() as session:
            rows = list(
                await session.execute(
                    select(CcCall.id, CcCall.agent_leg_id, CcCall.end_user_leg_id).where(
                        CcCall.status.in_(LIVE_STATUSES), CcCall.legs_started.is_(True)
                    )
                )
            )
            stopped = []
            for call_id, agent_leg_id, end_user_leg_id in rows:
                legs = [
                    (role, await session.get(VoiceCall, leg_id) if leg_id else None)
                    for role, leg_id in ((AGENT, agent_leg_id), (END_USER, end_user_leg_id))
                ]
                if not any(leg is not None and leg.state not in TERMINAL_STATES for _, leg in legs):
                    stopped.append((call_id, legs))  # else: still carried (by another node)
        for call_id, legs in stopped:
            for role, leg in legs:
                if leg is not None:
                    await self._leg_ended(call_id, role, leg)
            await self._end(call_id, None, fail_reason="technical_error", details="the process carrying it stopped")
        ended = len(stopped)
        await self._close_open_participants()
        return ended

    async def _close_open_participants(self) -> None:
        """Participants of ended calls whose leg's end was never handled (the process stopped in between)."""
        async with self.sessions() as session:
            rows = list(
                await session.execute(
                    select(CcParticipant.call_id, CcParticipant.kind, CcCall.agent_leg_id, CcCall.end_user_leg_id)
                    .join(CcCall, CcCall.id == CcParticipant.call_id)
                    .where(
                        CcParticipant.status.in_([ParticipantStatus.CONNECTING, ParticipantStatus.CONNECTED]),
                        CcCall.status.not_in(LIVE_STATUSES),
                    )
                )
            )
            legs = []
            for call_id, kind, agent_leg_id, end_user_leg_id in rows:
                leg_id = agent_leg_id if kind == AGENT else end_user_leg_id
                leg = await session.get(VoiceCall, leg_id) if leg_id else None
                if leg is not None and leg.state in TERMINAL_STATES:
                    legs.append((call_id, ParticipantKind(kind), leg))
        for call_id, kind, leg in legs:
            await self._leg_ended(call_id, kind, leg)

    # ---- helpers --------------------------------------------------------------------------------

    @staticmethod
    async def _configuration(session: AsyncSession, account_id: str) -> str:
        configuration_id = configuration_id_for(account_id)
        if await session.get(CallsConfiguration, configuration_id) is None:
            await create_configuration(
                session=session, account_id=account_id, configuration_id=configuration_id, name="contact center"
            )
        return configuration_id

    @staticmethod
    async def _participant(
        session: AsyncSession,
        call_id: int,
        kind: ParticipantKind,
        *,
        status: ParticipantStatus,
        agent_id: int | None = None,
        only_waiting: bool = False,
        connected_at: Any = None,
        ended_at: Any = None,
        fail_reason: str | None = None,
    ) -> None:
        query = select(CcParticipant).where(CcParticipant.call_id == call_id, CcParticipant.kind == kind)
        if agent_id is not None:
            query = query.where(CcParticipant.agent_id == agent_id)
        participant = await session.scalar(query.order_by(CcParticipant.id.desc()).limit(1))
        if participant is None:
            return
        if only_waiting and participant.status != ParticipantStatus.WAITING:
            return
        if participant.status in (ParticipantStatus.FINISHED, ParticipantStatus.FAILED):
            return
        participant.status = status
        if connected_at is not None:
            participant.connected_at = connected_at
        if ended_at is not None:
            participant.ended_at = ended_at
        if fail_reason is not None:
            participant.fail_reason = fail_reason

    @staticmethod
    async def _touch_core(session: AsyncSession, call_id: int, status: CcCallStatus) -> None:
        core_id = await session.scalar(select(CcCall.core_call_id).where(CcCall.id == call_id))
        core = await session.get(Call, core_id) if core_id else None
        if core is None:
            return
        core.extras = {**core.extras, "contact_center_status": status}
        if status in LIVE_STATUSES:
            core.status = CallStatus.PROCESSING
        core.updated_at = utcnow()


def _fail_reason(role: ParticipantKind, leg: VoiceCall) -> str:
    """Ours (the seed lists only "nothing"): who did not connect, and why."""
    if leg.answered_at is not None:
        return "nothing"
    why = {
        VoiceCallState.BUSY: "busy",
        VoiceCallState.NO_ANSWER: "no_answer",
        VoiceCallState.CANCELLED: "cancelled",
    }.get(VoiceCallState(leg.state), "failed")
    return f"{role}_{why}"


def _error_name(code: int | None) -> str:
    if code is None:
        return "unknown"
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)
