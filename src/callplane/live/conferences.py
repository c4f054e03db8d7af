"""Conferences: up to 15 calls in one room of the engine's mixer (a mix whose id is the conference id), what the room
hears (prompts, a ringback while a new participant rings), its recordings and their composition.

A component of the voice service over the registry of live calls, like dialogs: it learns what happens to the
participants' calls from the call control's leg events (`on_leg`: a call that answers joins, a call that ends
leaves, and the conference ends when its last participant has left, as the guide says), and from the engine's
events of its mixes (`on_engine_event`: the room's prompt finished, its recording closed). Each change is one
transaction with its webhook events (core/voice/events.py), written in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.voice import conferences as queries
from callplane.core.voice.conference_models import (
    MAX_PARTICIPANTS,
    ConferenceState,
    ParticipantRole,
    ParticipantState,
    VoiceConference,
    VoiceConferenceParticipant,
)
from callplane.core.voice.conferences import ConferenceRecordings, ConferenceView
from callplane.core.voice.configurations import get_configuration
from callplane.core.voice.events import VoiceEvent, VoiceEventType, publish
from callplane.core.voice.models import HangupSource, VoiceCall, VoiceCallState, VoiceDialog, VoiceRecording
from callplane.core.voice.queries import recording_key
from callplane.core.voice.schemas import (
    DialogRecordingRequest,
    JoinOptions,
    NewCall,
    NewConference,
    ParticipantUpdate,
    PlayContent,
    Speech,
)
from callplane.core.voice.states import DIALOG_LIVE, TERMINAL_STATES, CallNotLive, Ending, ErrorCode, InvalidCallState
from callplane.db.base import new_id, utcnow
from callplane.errors import CallplaneError, InvalidInput
from callplane.live.calls import CallOnAnotherNode, LegChange, LegEvent, LiveCall, LiveCalls
from callplane.live.compositions import ComposedOwner, compose_sessions
from callplane.live.media_actions import MediaActions
from callplane.media.engine import (
    RINGBACK,
    CallDirection,
    MixRecordingFinished,
    PlaybackFinished,
    SipReasonHeader,
)

log = logging.getLogger("callplane.voice.conferences")

RINGBACK_LOOPS = 1000  # cadences of ringback: far longer than any connectTimeout
ROLES = frozenset(ParticipantRole)


class ConferenceFull(InvalidInput):
    """The conference already has its maximum of participants."""


class CallPlacer(Protocol):
    """What conferences ask of the call control (the voice service is one)."""

    def create_call(self, *, account_id: str, request: NewCall) -> Awaitable[VoiceCall]: ...

    async def check_target(self, session: AsyncSession, account_id: str, request: NewCall) -> object: ...


@dataclass
class _Recording:
    """The room's recording in progress (one start/stop)."""

    file_id: str
    path: Path
    member_dir: Path | None
    request: DialogRecordingRequest
    started_at: Any
    room: _Room  # its calls' engine ids name the per-participant files (the room may be gone when they close)


@dataclass
class _Room:
    """What this node keeps of a live conference (the rest is in the database)."""

    conference_id: str
    account_id: str
    engine_ids: dict[str, str] = field(default_factory=dict)  # call id -> engine id, of every call that joined
    prompt: tuple[str, VoiceEventType, float] | None = None  # playback id, kind, started (monotonic)
    pending_prompt: tuple[asyncio.Task[Any], VoiceEventType] | None = None  # accepted, audio still loading
    ringback_for: set[str] = field(default_factory=set)  # new calls whose ringing the room hears as ringback
    ringback_id: str | None = None  # the ringback playing in the room
    record_on_join: DialogRecordingRequest | None = None
    timer: asyncio.TimerHandle | None = None
    ending: Ending | None = None  # how the calls are being ended (hangup, max duration)


class Conferences:
    def __init__(self, *, calls: LiveCalls, media: MediaActions, control: CallPlacer) -> None:
        self.calls = calls
        self.engine = calls.engine
        self.media = media
        self.control = control
        self._rooms: dict[str, _Room] = {}  # by conference id: the live conferences this node mixes
        self._by_call: dict[str, str] = {}  # call id -> conference id, while the call is (or is joining) in one
        self._joining: set[str] = set()  # call ids being put into their room now
        self._recordings: dict[str, _Recording] = {}  # by conference id
        # Live calls that have early media (a SIP call's 183 leaves it RINGING): connectOnEarlyMedia joins them.
        self._early_media: set[str] = set()

    def carries(self, arguments: Mapping[str, Any]) -> bool:
        return str(arguments.get("conference_id") or "") in self._rooms

    def owns(self, engine_id: str) -> bool:
        """Whether an engine event's id is one of this node's rooms."""
        return engine_id in self._rooms or engine_id in self._recordings

    # ---- rooms ----------------------------------------------------------------------------------

    async def create_conference(self, *, account_id: str, request: NewConference) -> VoiceConference:
        """A new, empty room on this node -> the conference's created event. It ends when its last participant
        leaves (or on hangup, or its maxDuration)."""
        if not 1 <= request.max_duration_s <= 28800:
            raise InvalidInput("maxDuration must be between 1 and 28800 seconds")
        async with self.calls.sessions() as session:
            await get_configuration(session=session, account_id=account_id, configuration_id=request.configuration_id)
        conference_id = new_id()
        await self.engine.create_mix(conference_id)
        room = _Room(conference_id, account_id, record_on_join=request.recording)
        self._rooms[conference_id] = room
        async with self.calls.sessions() as session, session.begin():
            conference = VoiceConference(
                id=conference_id,
                account_id=account_id,
                configuration_id=request.configuration_id,
                name=request.name or conference_id,
                state=ConferenceState.ACTIVE,
                node_id=self._node_id(),
                max_duration_s=request.max_duration_s,
                created_at=utcnow(),
            )
            session.add(conference)
            await session.flush()
            await self._emit(session, conference, VoiceEventType.CONFERENCE_CREATED)
        room.timer = asyncio.get_running_loop().call_later(
            request.max_duration_s,
            lambda: self.calls.spawn(self._max_duration_reached(conference_id), "conference-max-duration"),
        )
        return conference

    def _node_id(self) -> str:
        return str(getattr(self.control, "node_id", ""))

    async def get_view(self, *, account_id: str, conference_id: str) -> ConferenceView:
        async with self.calls.sessions() as session:
            conference = await queries.get_conference(session, account_id=account_id, conference_id=conference_id)
            return await queries.view(session, conference)

    async def _live_room(self, account_id: str, conference_id: str) -> tuple[VoiceConference, _Room]:
        async with self.calls.sessions() as session:
            conference = await queries.get_conference(session, account_id=account_id, conference_id=conference_id)
        if conference.state != ConferenceState.ACTIVE:
            raise CallNotLive("The conference has already ended.")
        room = self._rooms.get(conference_id)
        if room is None:
            raise CallOnAnotherNode(f"conference {conference_id} is mixed by media node {conference.node_id}")
        return conference, room

    async def hangup(self, *, account_id: str, conference_id: str) -> ConferenceView:
        """Hang up every participant's call (source API); the conference finishes once they have left (at once
        when it has none). Answers the conference as it is now."""
        _, room = await self._live_room(account_id, conference_id)
        await self._end_all(room, Ending(VoiceCallState.FINISHED, HangupSource.API, ErrorCode.NORMAL_HANGUP))
        return await self.get_view(account_id=account_id, conference_id=conference_id)

    async def _end_all(self, room: _Room, ending: Ending) -> None:
        room.ending = ending
        async with self.calls.sessions() as session:
            active = await queries.active_participants(session, room.conference_id)
        if not active:
            await self._finish(room.conference_id, ending.error_code)
            return
        for participant in active:
            live = self.calls.get(participant.call_id)
            if live is not None:
                await self._end_call(live, ending)

    async def _end_call(self, live: LiveCall, ending: Ending) -> None:
        call = await self.calls.get_call(account_id=live.account_id, call_id=live.call_id)
        with contextlib.suppress(CallplaneError):
            if call.state == VoiceCallState.ESTABLISHED:
                live.requested = ending
                await self.engine.hangup(live.engine_id)
            elif live.direction is CallDirection.INBOUND:
                live.requested = Ending(VoiceCallState.FINISHED, ending.hangup_source, ending.error_code)
                await self.engine.reject(live.engine_id, status=480, reason=SipReasonHeader("Q.850", 16))
            else:
                live.requested = Ending(VoiceCallState.CANCELLED, ending.hangup_source, ErrorCode.CANCELLED)
                await self.engine.hangup(live.engine_id)

    async def _max_duration_reached(self, conference_id: str) -> None:
        room = self._rooms.get(conference_id)
        if room is not None:
            ending = Ending(VoiceCallState.FINISHED, HangupSource.PLATFORM, ErrorCode.MAX_DURATION_REACHED)
            await self._end_all(room, ending)

    async def _finish_if_empty(self, conference_id: str) -> None:
        async with self.calls.sessions() as session:
            active = await queries.active_participants(session, conference_id)
        if not active:
            room = self._rooms.get(conference_id)
            code = room.ending.error_code if room is not None and room.ending is not None else ErrorCode.NORMAL_HANGUP
            await self._finish(conference_id, code)

    async def _finish(self, conference_id: str, code: ErrorCode) -> None:
        """The one way a conference ends: FINISHED once (a conditional UPDATE), its finished event, the mix gone."""
        async with self.calls.sessions() as session, session.begin():
            result = await session.execute(
                update(VoiceConference)
                .where(VoiceConference.id == conference_id, VoiceConference.state == ConferenceState.ACTIVE)
                .values(state=ConferenceState.FINISHED, ended_at=utcnow(), error_code=int(code))
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                return
            conference = await session.get(VoiceConference, conference_id)
            assert conference is not None
            await session.refresh(conference)
            await self._emit(session, conference, VoiceEventType.CONFERENCE_FINISHED)
        room = self._rooms.pop(conference_id, None)
        if room is not None:
            if room.timer is not None:
                room.timer.cancel()
            if room.pending_prompt is not None:
                room.pending_prompt[0].cancel()
            room.prompt = None  # a prompt cut by the end is not reported (the finished event says it)
        with contextlib.suppress(CallplaneError):
            await self.engine.destroy_mix(conference_id)  # the recording closes: MixRecordingFinished

    async def recover(self, node_id: str) -> int:
        """Conferences this node left live when it stopped end now (their calls ended with the process)."""
        async with self.calls.sessions() as session, session.begin():
            ids = list(
                await session.scalars(
                    select(VoiceConference.id).where(
                        VoiceConference.node_id == node_id, VoiceConference.state == ConferenceState.ACTIVE
                    )
                )
            )
            if ids:
                await session.execute(
                    update(VoiceConferenceParticipant)
                    .where(
                        VoiceConferenceParticipant.conference_id.in_(ids),
                        VoiceConferenceParticipant.state != ParticipantState.LEFT,
                    )
                    .values(state=ParticipantState.LEFT, left_at=utcnow())
                )
        for conference_id in ids:
            await self._finish(conference_id, ErrorCode.ENGINE_RESTARTED)
        return len(ids)

    # ---- participants ---------------------------------------------------------------------------

    async def connect(
        self, *, account_id: str, call_ids: list[str], conference: NewConference | None
    ) -> VoiceConference:
        """`POST /connect`: the calls in a new conference (of the first call's configuration)."""
        if len(set(call_ids)) != len(call_ids) or len(call_ids) < 2:
            raise InvalidInput("connect needs at least two different calls")
        if len(call_ids) > MAX_PARTICIPANTS:
            raise ConferenceFull(f"A conference can have at most {MAX_PARTICIPANTS} participants.")
        for call_id in call_ids:
            await self._joinable(account_id, call_id)
        first = await self.calls.get_call(account_id=account_id, call_id=call_ids[0])
        request = conference or NewConference(configuration_id="")
        created = await self.create_conference(
            account_id=account_id,
            request=NewConference(first.configuration_id, request.name, request.max_duration_s, request.recording),
        )
        for call_id in call_ids:
            await self.add_existing_call(
                account_id=account_id, conference_id=created.id, call_id=call_id, options=JoinOptions()
            )
        return created

    async def connect_with_new_call(
        self,
        *,
        account_id: str,
        call_id: str,
        request: NewCall,
        options: JoinOptions,
        conference: NewConference | None,
    ) -> tuple[VoiceConference, VoiceCall]:
        """`POST /calls/{id}/connect`: the call in a new conference, and a new call placed into it."""
        await self._joinable(account_id, call_id)
        call = await self.calls.get_call(account_id=account_id, call_id=call_id)
        async with self.calls.sessions() as session:
            await self.control.check_target(session, account_id, request)  # refused before a conference exists
        asked = conference or NewConference(configuration_id="")
        created = await self.create_conference(
            account_id=account_id,
            request=NewConference(call.configuration_id, asked.name, asked.max_duration_s, asked.recording),
        )
        await self.add_existing_call(
            account_id=account_id, conference_id=created.id, call_id=call_id, options=JoinOptions()
        )
        placed = await self.add_new_call(
            account_id=account_id,
            conference_id=created.id,
            request=dataclasses.replace(request, parent_call_id=call_id),  # the new call's parentCallId
            options=options,
        )
        return created, placed

    async def _joinable(self, account_id: str, call_id: str) -> LiveCall:
        live = await self.calls.require(account_id, call_id)
        call = await self.calls.get_call(account_id=account_id, call_id=call_id)
        if call.id in self._by_call:
            raise InvalidCallState(f"the call is already in conference {self._by_call[call.id]}")
        if call.dialog_id is not None:
            async with self.calls.sessions() as session:
                dialog = await session.get(VoiceDialog, call.dialog_id)
            if dialog is not None and dialog.state in DIALOG_LIVE:
                raise InvalidCallState("the call is in a dialog: a dialog's calls cannot join a conference")
        return live

    async def add_existing_call(
        self, *, account_id: str, conference_id: str, call_id: str, options: JoinOptions
    ) -> VoiceConference:
        """A live call of the account becomes a participant (JOINING); it joins the room at once when answered
        (or in early media with `connect_on_early_media`), else when it is."""
        conference, room = await self._live_room(account_id, conference_id)
        await self._joinable(account_id, call_id)
        await self._add_participant(room, call_id, options)
        await self._join_if_ready(room, call_id)
        return conference

    async def add_new_call(
        self, *, account_id: str, conference_id: str, request: NewCall, options: JoinOptions
    ) -> VoiceCall:
        """Place a call (the conference's configuration) that joins the room when it answers; with `ringback` the
        room hears a generated ringback while it rings."""
        conference, room = await self._live_room(account_id, conference_id)
        await self._check_room_for_one_more(conference_id)
        placed = await self.control.create_call(
            account_id=account_id,
            request=NewCall(
                configuration_id=conference.configuration_id,
                endpoint=request.endpoint,
                from_user=request.from_user,
                from_display_name=request.from_display_name,
                connect_timeout_s=request.connect_timeout_s,
                max_duration_s=request.max_duration_s,
                custom_data=request.custom_data,
                external_id=request.external_id,
                parent_call_id=request.parent_call_id,
                machine_detection=request.machine_detection,
            ),
        )
        if options.ringback:
            room.ringback_for.add(placed.id)
        await self._add_participant(room, placed.id, options)
        await self._progress(placed.id)  # it may have rung or answered before it was a participant
        await self._join_if_ready(room, placed.id)
        async with self.calls.sessions() as session:
            found = await session.get(VoiceCall, placed.id)
        return found or placed

    async def _check_room_for_one_more(self, conference_id: str) -> None:
        async with self.calls.sessions() as session:
            active = await queries.active_participants(session, conference_id)
        if len(active) >= MAX_PARTICIPANTS:
            raise ConferenceFull(f"A conference can have at most {MAX_PARTICIPANTS} participants.")

    async def _add_participant(self, room: _Room, call_id: str, options: JoinOptions) -> None:
        if options.role not in ROLES:
            raise InvalidInput(f"unknown role {options.role}")
        await self._check_room_for_one_more(room.conference_id)
        self._by_call[call_id] = room.conference_id
        live = self.calls.get(call_id)
        if live is not None:
            live.in_dialog = True  # its events now touch the room's other calls: handled one at a time (_consume)
        async with self.calls.sessions() as session, session.begin():
            conference = await session.get(VoiceConference, room.conference_id)
            call = await session.get(VoiceCall, call_id)
            assert conference is not None and call is not None
            participant = VoiceConferenceParticipant(
                id=new_id(),
                conference_id=room.conference_id,
                call_id=call_id,
                state=ParticipantState.JOINING,
                role=options.role,
                connect_on_early_media=options.connect_on_early_media,
                created_at=utcnow(),
            )
            session.add(participant)
            call.conference_id = room.conference_id
            if options.custom_data:
                call.custom_data = {**call.custom_data, **options.custom_data}
            await session.flush()
            await self._emit(session, conference, VoiceEventType.PARTICIPANT_JOINING, participant=participant)

    async def _join_if_ready(self, room: _Room, call_id: str) -> None:
        async with self.calls.sessions() as session:
            call = await session.get(VoiceCall, call_id)
            participant = await queries.participant_of(session, call_id)
        if call is None or participant is None or participant.state != ParticipantState.JOINING:
            return
        if call.state in TERMINAL_STATES:  # it ended before it was a participant (a new call that failed at once)
            await self._leave(call_id, VoiceEventType.PARTICIPANT_JOIN_FAILED, keep_conference=True)
            return
        early = call.state == VoiceCallState.PRE_ESTABLISHED or call_id in self._early_media
        if call.state == VoiceCallState.ESTABLISHED or (early and participant.connect_on_early_media):
            await self._join(room, call_id)

    async def _join(self, room: _Room, call_id: str) -> None:
        """The participant's call enters the room: its own prompt and recording stop (the guide: a call's
        recording ends "when the call joins a conference", and its playback is stopped), it hears the others."""
        live = self.calls.get(call_id)
        if live is None or call_id in self._joining:
            return
        self._joining.add(call_id)
        try:
            async with self.calls.sessions() as session:
                participant = await queries.participant_of(session, call_id)
            if participant is None or participant.state != ParticipantState.JOINING:
                return
            await self._stop_ringback(room, call_id)
            with contextlib.suppress(CallplaneError):
                if live.playbacks or live.pending_play is not None:
                    await self.media.stop_play(account_id=live.account_id, call_id=call_id)
                if live.recording_id is not None and live.recording_dialog_id is None:
                    await self.engine.stop_recording(live.engine_id)
            try:
                await self.engine.join_mix(
                    room.conference_id, live.engine_id, muted=participant.muted, deaf=participant.deaf
                )
            except CallplaneError as error:
                log.info("join failed", extra={"fields": {"call_id": call_id, "error": error.message}})
                await self._leave(call_id, VoiceEventType.PARTICIPANT_JOIN_FAILED, keep_conference=False)
                return
            room.engine_ids[call_id] = live.engine_id
            async with self.calls.sessions() as session, session.begin():
                result = await session.execute(
                    update(VoiceConferenceParticipant)
                    .where(
                        VoiceConferenceParticipant.id == participant.id,
                        VoiceConferenceParticipant.state == ParticipantState.JOINING,
                    )
                    .values(state=ParticipantState.JOINED, joined_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    refreshed = await session.get(VoiceConferenceParticipant, participant.id)
                    conference = await session.get(VoiceConference, room.conference_id)
                    assert refreshed is not None and conference is not None
                    await session.refresh(refreshed)
                    await self._emit(session, conference, VoiceEventType.PARTICIPANT_JOINED, participant=refreshed)
        finally:
            self._joining.discard(call_id)
        await self._record_on_first_join(room)

    async def _record_on_first_join(self, room: _Room) -> None:
        request, room.record_on_join = room.record_on_join, None
        if request is None:
            return
        try:
            await self._start_recording(room, request)
        except CallplaneError as error:
            await self._emit_for(room.conference_id, VoiceEventType.CONFERENCE_RECORDING_FAILED, detail=error.message)

    async def remove_participant(self, *, account_id: str, conference_id: str, call_id: str) -> None:
        """The call leaves the room and stays up (the client's docs: "removing a call from a conference leaves
        the call up")."""
        await self._live_room(account_id, conference_id)
        await self._participant(conference_id, call_id)
        live = self.calls.get(call_id)
        if live is not None:
            with contextlib.suppress(CallplaneError):
                await self.engine.leave_mix(live.engine_id)
        await self._leave(call_id, VoiceEventType.PARTICIPANT_REMOVED, keep_conference=False)

    async def _participant(self, conference_id: str, call_id: str) -> VoiceConferenceParticipant:
        async with self.calls.sessions() as session:
            participant = await queries.participant_of(session, call_id)
        if participant is None or participant.conference_id != conference_id:
            raise queries.ConferenceNotFound(f"Call {call_id} is not a participant of conference {conference_id}.")
        return participant

    async def _leave(self, call_id: str, kind: VoiceEventType, *, keep_conference: bool) -> None:
        """The participant's session ends (LEFT) with its event; the conference ends when nobody is left. The
        call keeps `conference_id` when it ended in the room (its CallLog lists it), loses it when removed."""
        conference_id = self._by_call.pop(call_id, None)
        async with self.calls.sessions() as session, session.begin():
            participant = await queries.participant_of(session, call_id)
            if participant is None:
                return
            conference_id = participant.conference_id
            result = await session.execute(
                update(VoiceConferenceParticipant)
                .where(
                    VoiceConferenceParticipant.id == participant.id,
                    VoiceConferenceParticipant.state != ParticipantState.LEFT,
                )
                .values(state=ParticipantState.LEFT, left_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                return
            await session.refresh(participant)
            if not keep_conference:
                await session.execute(
                    update(VoiceCall)
                    .where(VoiceCall.id == call_id)
                    .values(conference_id=None)
                    .execution_options(synchronize_session=False)
                )
            conference = await session.get(VoiceConference, conference_id)
            assert conference is not None
            await self._emit(session, conference, kind, participant=participant)
        room = self._rooms.get(conference_id)
        if room is not None:
            room.ringback_for.discard(call_id)
            await self._stop_ringback(room, call_id)
        await self._finish_if_empty(conference_id)

    async def update_participant(
        self, *, account_id: str, conference_id: str, call_id: str, update: ParticipantUpdate
    ) -> None:
        await self._live_room(account_id, conference_id)
        participant = await self._participant(conference_id, call_id)
        await self._apply(participant, update)

    async def update_all(self, *, account_id: str, conference_id: str, update: ParticipantUpdate) -> None:
        """Every participant's flags (`PATCH /conferences/{id}`)."""
        await self._live_room(account_id, conference_id)
        async with self.calls.sessions() as session:
            active = await queries.active_participants(session, conference_id)
        for participant in active:
            await self._apply(participant, update)

    async def _apply(self, participant: VoiceConferenceParticipant, change: ParticipantUpdate) -> None:
        if change.role is not None and change.role not in ROLES:
            raise InvalidInput(f"unknown role {change.role}")
        muted = participant.muted if change.muted is None else change.muted
        deaf = participant.deaf if change.deaf is None else change.deaf
        media_changed = (muted, deaf) != (participant.muted, participant.deaf)
        role_changed = change.role is not None and change.role != participant.role
        live = self.calls.get(participant.call_id)
        if media_changed and participant.state == ParticipantState.JOINED and live is not None:
            await self.engine.update_mix_member(live.engine_id, muted=muted, deaf=deaf)
        if not (media_changed or role_changed):
            return
        async with self.calls.sessions() as session, session.begin():
            row = await session.get(VoiceConferenceParticipant, participant.id)
            conference = await session.get(VoiceConference, participant.conference_id)
            assert row is not None and conference is not None
            row.muted, row.deaf = muted, deaf
            if change.role is not None:
                row.role = change.role
            await session.flush()
            if media_changed:
                await self._emit(session, conference, VoiceEventType.PARTICIPANT_MEDIA_CHANGED, participant=row)
            if role_changed:
                await self._emit(session, conference, VoiceEventType.PARTICIPANT_ROLE_CHANGED, participant=row)

    # ---- what the legs do -----------------------------------------------------------------------

    async def on_leg(self, change: LegChange) -> None:
        """A participant's call rang (ringback), answered or had early media (it joins), or ended (it leaves)."""
        if change.event is LegEvent.EARLY_MEDIA:
            self._early_media.add(change.call_id)  # it may become a participant after its 183 (a new call)
        elif change.event in (LegEvent.FINISHED, LegEvent.FAILED, LegEvent.ESTABLISHED):
            self._early_media.discard(change.call_id)
        conference_id = self._by_call.get(change.call_id)
        if conference_id is None:
            return
        room = self._rooms.get(conference_id)
        if change.event in (LegEvent.FINISHED, LegEvent.FAILED):
            async with self.calls.sessions() as session:
                participant = await queries.participant_of(session, change.call_id)
            joined = participant is not None and participant.state == ParticipantState.JOINED
            kind = VoiceEventType.PARTICIPANT_REMOVED if joined else VoiceEventType.PARTICIPANT_JOIN_FAILED
            await self._leave(change.call_id, kind, keep_conference=True)
        elif room is None:
            return
        elif change.event in (LegEvent.RINGING, LegEvent.EARLY_MEDIA):
            await self._progress(change.call_id)
            if change.event is LegEvent.EARLY_MEDIA:
                await self._join_if_ready(room, change.call_id)
        elif change.event is LegEvent.ESTABLISHED:
            await self._join_if_ready(room, change.call_id)

    async def _progress(self, call_id: str) -> None:
        """A new participant rings: the room hears ringback, when asked, until it joins or leaves."""
        conference_id = self._by_call.get(call_id)
        room = self._rooms.get(conference_id or "")
        if room is None or call_id not in room.ringback_for or room.ringback_id is not None:
            return
        async with self.calls.sessions() as session:
            call = await session.get(VoiceCall, call_id)
        if call is None or call.state not in (VoiceCallState.RINGING, VoiceCallState.PRE_ESTABLISHED):
            return
        with contextlib.suppress(CallplaneError):
            room.ringback_id = await self.engine.play_to_mix(room.conference_id, RINGBACK, loop_count=RINGBACK_LOOPS)

    async def _stop_ringback(self, room: _Room, call_id: str) -> None:
        if call_id not in room.ringback_for:
            return
        room.ringback_for.discard(call_id)
        if room.ringback_id is not None and not room.ringback_for:
            room.ringback_id = None
            if room.prompt is None:
                with contextlib.suppress(CallplaneError):
                    await self.engine.stop_mix_playback(room.conference_id)

    # ---- what the room hears --------------------------------------------------------------------

    async def say(self, *, account_id: str, conference_id: str, speech: Speech, loop_count: int = 1) -> None:
        """Every participant hears it (deaf ones excepted) -> the conference's SAY_FINISHED."""
        await self._start_prompt(
            account_id, conference_id, PlayContent(speech=speech), loop_count, VoiceEventType.SAY_FINISHED
        )

    async def play(self, *, account_id: str, conference_id: str, content: PlayContent, loop_count: int = 1) -> None:
        await self._start_prompt(account_id, conference_id, content, loop_count, VoiceEventType.PLAY_FINISHED)

    async def stop_play(self, *, account_id: str, conference_id: str) -> None:
        _, room = await self._live_room(account_id, conference_id)
        pending, room.pending_prompt = room.pending_prompt, None
        if pending is not None and not pending[0].done():
            pending[0].cancel()  # stopped before its audio was ready: it never played
            await self._emit_for(conference_id, pending[1], played_completely=False, duration_ms=0)
            return
        if room.prompt is not None:
            with contextlib.suppress(CallplaneError):
                await self.engine.stop_mix_playback(conference_id)

    async def _start_prompt(
        self, account_id: str, conference_id: str, content: PlayContent, loop_count: int, kind: VoiceEventType
    ) -> None:
        if loop_count < 1:
            raise InvalidInput("loopCount must be at least 1")
        _, room = await self._live_room(account_id, conference_id)
        source = None if content.url is not None else await self.media.source(account_id, content)

        async def start() -> None:
            started = time.monotonic()
            playing = source if source is not None else await self.media.source(account_id, content)
            room.ringback_id = None  # a prompt replaces the ringback
            playback_id = await self.engine.play_to_mix(conference_id, playing, loop_count=loop_count)
            room.prompt = (playback_id, kind, started)  # replaced: only the new prompt is reported

        previous = room.pending_prompt
        if previous is not None:
            previous[0].cancel()
        action = "SAY" if kind is VoiceEventType.SAY_FINISHED else "PLAY"
        task = self.calls.spawn(self._guarded(conference_id, action, start()), "conference-play")
        room.pending_prompt = (task, kind)

    async def _guarded(self, conference_id: str, action: str, work: Any) -> None:
        try:
            await work
        except CallplaneError as error:
            await self._emit_for(conference_id, VoiceEventType.ACTION_FAILED, action=action, detail=error.message)

    async def on_engine_event(self, event: object) -> bool:
        """The engine's events of this node's rooms (a prompt ended, a recording closed); False if not ours."""
        if isinstance(event, PlaybackFinished) and event.call_id in self._rooms:
            room = self._rooms[event.call_id]
            if room.prompt is not None and room.prompt[0] == event.playback_id:
                _, kind, started = room.prompt
                room.prompt = None
                duration_ms = round((time.monotonic() - started) * 1000)
                await self._emit_for(
                    room.conference_id, kind, played_completely=event.completed, duration_ms=duration_ms
                )
            return True
        if isinstance(event, MixRecordingFinished) and event.mix_id in self._recordings:
            await self._recording_closed(event)
            return True
        return False

    # ---- recordings -----------------------------------------------------------------------------

    async def start_recording(self, *, account_id: str, conference_id: str, request: DialogRecordingRequest) -> None:
        """Composed: one mono file of the room (every unmuted participant and the prompt). Not composed: one file
        per participant with what it said (all aligned). Conference and call recordings are exclusive."""
        _, room = await self._live_room(account_id, conference_id)
        await self._start_recording(room, request)

    async def _start_recording(self, room: _Room, request: DialogRecordingRequest) -> None:
        if room.conference_id in self._recordings:
            raise InvalidCallState("the conference is already being recorded")
        async with self.calls.sessions() as session:
            active = await queries.active_participants(session, room.conference_id)
        for participant in active:
            live = self.calls.get(participant.call_id)
            if live is not None and live.recording_id is not None:
                raise InvalidCallState(
                    f"call {participant.call_id} is being recorded: call and conference recordings are exclusive"
                )
        file_id = new_id()
        directory = self.calls.recordings_dir() / room.account_id
        directory.mkdir(parents=True, exist_ok=True)
        member_dir = None if request.composed else directory / f"mix-{file_id}"
        recording = _Recording(file_id, directory / f"{file_id}.wav", member_dir, request, utcnow(), room)
        self._recordings[room.conference_id] = recording
        try:
            await self.engine.start_mix_recording(room.conference_id, recording.path, member_dir=member_dir)
        except CallplaneError:
            self._recordings.pop(room.conference_id, None)
            raise

    async def stop_recording(self, *, account_id: str, conference_id: str) -> None:
        await self._live_room(account_id, conference_id)
        if conference_id not in self._recordings:
            raise InvalidCallState("the conference is not being recorded")
        await self.engine.stop_mix_recording(conference_id)  # MixRecordingFinished makes the files ready

    async def _recording_closed(self, event: MixRecordingFinished) -> None:
        recording = self._recordings.pop(event.mix_id)
        engine_to_call = {engine_id: call_id for call_id, engine_id in recording.room.engine_ids.items()}
        async with self.calls.sessions() as session, session.begin():
            conference = await session.get(VoiceConference, event.mix_id)
            if conference is None:
                return
            first = await session.scalar(
                select(VoiceConferenceParticipant.call_id)
                .where(VoiceConferenceParticipant.conference_id == conference.id)
                .order_by(VoiceConferenceParticipant.created_at)
                .limit(1)
            )
            if first is None:
                await self._emit(
                    session, conference, VoiceEventType.CONFERENCE_RECORDING_FAILED, detail="nobody joined"
                )
                return
            ended = utcnow()
            files: list[VoiceRecording] = []
            if recording.request.composed:
                files.append(
                    self._file(conference, first, recording, recording.file_id, recording.path, event, ended, True)
                )
            else:
                for engine_id, path in sorted(event.member_paths.items()):
                    call_id = engine_to_call.get(engine_id)
                    if call_id is None or not path.exists():
                        continue
                    file_id = new_id()
                    target = path.parent.parent / f"{file_id}.wav"
                    await asyncio.to_thread(shutil.move, path, target)
                    files.append(self._file(conference, call_id, recording, file_id, target, event, ended, False))
                with contextlib.suppress(OSError):
                    recording.path.unlink()
                if recording.member_dir is not None:
                    shutil.rmtree(recording.member_dir, ignore_errors=True)
            for file in files:  # a shared store takes them before they are READY (core/recordings/voice_files.py)
                await self.calls.store.publish(recording_key(file))
            session.add_all(files)
            await session.flush()
            await self._emit(session, conference, VoiceEventType.CONFERENCE_RECORDING_READY, recordings=files)

    def _file(
        self,
        conference: VoiceConference,
        call_id: str,
        recording: _Recording,
        file_id: str,
        path: Path,
        event: MixRecordingFinished,
        ended: Any,
        composed: bool,
    ) -> VoiceRecording:
        prefix = recording.request.file_prefix or ""
        return VoiceRecording(
            id=file_id,
            account_id=conference.account_id,
            call_id=call_id,
            configuration_id=conference.configuration_id,
            name=f"{prefix}{file_id}.wav",
            storage_key=str(path.relative_to(self.calls.recordings_dir())),
            channels="MONO",
            size_bytes=path.stat().st_size if path.exists() else None,
            duration_ms=event.duration_ms,
            custom_data=dict(recording.request.custom_data),
            started_at=recording.started_at,
            ended_at=ended,
            ready=True,
            conference_id=conference.id,
            composed=composed,
        )

    async def compose_recording(
        self, *, account_id: str, conference_id: str, delete_call_recordings: bool = True, multi_channel: bool = False
    ) -> None:
        """Compose the per-participant files of each start/stop into one file, in the background: mono mixed, or
        one channel per participant with `multi_channel` -> the conference's composition-finished event."""
        async with self.calls.sessions() as session:
            found = await queries.conference_recordings(session, account_id=account_id, conference_id=conference_id)
        if not any(not f.composed for f in found.files):
            raise InvalidInput("the conference has no per-participant recording files to compose")
        self.calls.spawn(self._compose(found, delete_call_recordings, multi_channel), "conference-compose")

    async def _compose(self, found: ConferenceRecordings, delete_sources: bool, multi_channel: bool) -> None:
        conference = found.conference
        owner = ComposedOwner(
            account_id=conference.account_id,
            configuration_id=conference.configuration_id,
            conference_id=conference.id,
        )
        try:
            composed = await compose_sessions(
                self.calls,
                found.files,
                owner=owner,
                order=lambda f: f.id,
                multi_channel=multi_channel,
                delete_sources=delete_sources,
            )
        except (OSError, ValueError) as error:
            await self._emit_for(
                conference.id, VoiceEventType.CONFERENCE_COMPOSITION_FAILED, detail=f"composition failed: {error}"
            )
            return
        await self._emit_for(conference.id, VoiceEventType.CONFERENCE_COMPOSITION_FINISHED, recordings=composed)

    # ---- events ---------------------------------------------------------------------------------

    async def _emit_for(self, conference_id: str, kind: VoiceEventType, **details: Any) -> None:
        async with self.calls.sessions() as session, session.begin():
            conference = await session.get(VoiceConference, conference_id)
            if conference is not None:
                await self._emit(session, conference, kind, **details)

    async def _emit(
        self,
        session: AsyncSession,
        conference: VoiceConference,
        kind: VoiceEventType,
        *,
        participant: VoiceConferenceParticipant | None = None,
        **details: Any,
    ) -> None:
        """A conference's event in the caller's transaction: the room as it is now, and for a participant event
        its session; `call` is the participant's call, or a stand-in carrying the conference's account and
        configuration (no call is concerned)."""
        view = await queries.view(session, conference)
        call = view.calls.get(participant.call_id) if participant is not None else None
        if call is None:
            call = VoiceCall(account_id=conference.account_id, configuration_id=conference.configuration_id)
        event = VoiceEvent(kind, call, conference=view, participant=participant, **details)
        await publish(session=session, renderer=self.calls.renderer, event=event)
