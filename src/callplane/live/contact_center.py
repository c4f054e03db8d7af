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
from callplane.core.contact_center.models import (
    Agent,
    AgentStatus,
    CcCall,
    CcCallStatus,
    CcCallType,
    CcParticipant,
    MenuAgent,
    ParticipantKind,
    ParticipantStatus,
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
from callplane.core.voice.schemas import Endpoint, NewCall, RecordingChannels, RecordingRequest
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
            await self._participant(
                session,
                call_id,
                role,
                status=ParticipantStatus.FINISHED if answered else ParticipantStatus.FAILED,
                ended_at=leg.ended_at or utcnow(),
                fail_reason="nothing" if answered else _fail_reason(role, leg),
            )
        if role is AGENT and not answered and await self._offer_again(call_id, leg):
            return
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
        )
        if role is AGENT:
            await self._queue_recording(call_id, leg)

    async def _offer_again(self, call_id: int, leg: VoiceCall) -> bool:
        """A queued call whose agent did not answer goes back to its queue (keeping its place: `queued_at`) for
        the next agent, up to MAX_OFFERS agents; the agent who missed it is available again, now the least idle.
        Outbound calls have their one agent, so they fail instead."""
        now = utcnow()
        async with self.sessions() as session, session.begin():
            call = await session.get(CcCall, call_id)
            if call is None or call.call_type == CcCallType.OUTBOUND or call.status != CcCallStatus.ASSIGNED:
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
    ) -> None:
        """The call ends once: finished when it was connected, else failed; its agent is idle again."""
        now = ended_at or utcnow()
        async with self.sessions() as session, session.begin():
            call = await session.get(CcCall, call_id)
            if call is None or call.status not in LIVE_STATUSES:
                return
            connected = call.status == CcCallStatus.CONNECTED
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
        only_waiting: bool = False,
        connected_at: Any = None,
        ended_at: Any = None,
        fail_reason: str | None = None,
    ) -> None:
        participant = await session.scalar(
            select(CcParticipant)
            .where(CcParticipant.call_id == call_id, CcParticipant.kind == kind)
            .order_by(CcParticipant.id.desc())
            .limit(1)
        )
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
