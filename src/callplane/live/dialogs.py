"""Dialogs: two calls bridged, what both parties hear (prompts, the parent's ringback while the child rings), the
dialog's recordings and their composition.

A component of the voice service over the registry of live calls; it learns what happens to the legs from the
call control's leg events (`on_leg`), and asks the control (`CallPlacer`) to place and move calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.voice import queries
from callplane.core.voice.events import VoiceEvent, VoiceEventType, publish
from callplane.core.voice.models import (
    DialogHangupSource,
    DialogState,
    HangupSource,
    VoiceCall,
    VoiceCallState,
    VoiceDialog,
    VoiceRecording,
)
from callplane.core.voice.queries import DialogRecordings
from callplane.core.voice.schemas import DialogRecordingRequest, NewCall, PlayContent, Speech
from callplane.core.voice.states import (
    DIALOG_LIVE,
    DIALOG_TERMINAL,
    CallNotLive,
    Ending,
    ErrorCode,
    InvalidCallState,
)
from callplane.db.base import new_id, utcnow
from callplane.errors import CallplaneError, InvalidInput
from callplane.live.calls import CallOnAnotherNode, LegChange, LegEvent, LiveCall, LiveCalls, Playback
from callplane.live.compositions import ComposedOwner, compose_sessions
from callplane.live.media_actions import MediaActions
from callplane.media.engine import RINGBACK, CallDirection, FileSource, SipReasonHeader
from callplane.media.engine import RecordingChannels as EngineChannels

RINGBACK_LOOPS = 1000  # cadences of ringback: far longer than any connectTimeout


class CallPlacer(Protocol):
    """What dialogs ask of the call control (the voice service is one)."""

    def create_call(self, *, account_id: str, request: NewCall) -> Awaitable[VoiceCall]: ...

    async def check_target(self, session: AsyncSession, account_id: str, request: NewCall) -> object: ...

    async def move(
        self, call_id: str, target: VoiceCallState, event: LegEvent, *, ringing: bool = False
    ) -> VoiceCall | None: ...


class Dialogs:
    def __init__(self, *, calls: LiveCalls, media: MediaActions, control: CallPlacer) -> None:
        self.calls = calls
        self.engine = calls.engine
        self.media = media
        self.control = control
        self._state = _DialogMedia()

    async def on_leg(self, change: LegChange) -> None:
        """A leg event of the call control: a child's progress, a leg answered or ended, a file ready."""
        if change.event in (LegEvent.RINGING, LegEvent.EARLY_MEDIA):
            if change.dialog_id is not None:
                await self._dialog_child_progress(change.dialog_id, change.call_id)
        elif change.dialog_id is None:
            return
        elif change.event is LegEvent.ESTABLISHED:
            await self._dialog_leg_answered(change.dialog_id, change.call_id)
        elif change.event in (LegEvent.FINISHED, LegEvent.FAILED):
            await self._dialog_leg_ended(change.dialog_id, change.call_id)
        elif change.event is LegEvent.RECORDING_READY and change.recording_id is not None:
            await self._dialog_file_ready(change.dialog_id, change.recording_id)

    # ---- two calls bridged ---------------------------------------------------------------------

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
        """A dialog for a live parent call, placing `child` (its configuration is the parent's); the child's answer
        answers an unanswered inbound parent and bridges the two. `child_ringing` and `ringback` are the request's
        propagationOptions: what the parent hears while the child rings (registered before the child is dialled, so
        a fast 180 is never missed)."""
        await self.calls.require(account_id, parent_call_id)
        parent = await self.calls.get_call(account_id=account_id, call_id=parent_call_id)
        if parent.dialog_id is not None:
            raise InvalidCallState("the call is already in a dialog")
        if parent.conference_id is not None:
            raise InvalidCallState("the call is in a conference: a conference's calls cannot be in a dialog")
        if child is None:
            raise InvalidInput("childCallRequest is required")
        async with self.calls.sessions() as session:
            await self.control.check_target(
                session, account_id, child
            )  # refused before a dialog exists (create_call checks again)
        dialog = await self._new_dialog(parent, child_hangup_ends_parent)
        if child_ringing or ringback:
            self._state.progress[dialog.id] = _Progress(dialog.id, ringing=child_ringing, ringback=ringback)
        placed = await self.control.create_call(
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
                machine_detection=child.machine_detection,
            ),
        )
        async with self.calls.sessions() as session, session.begin():
            await session.execute(
                update(VoiceDialog)
                .where(VoiceDialog.id == dialog.id, VoiceDialog.child_call_id.is_(None))
                .values(child_call_id=placed.id)
            )
        return await self.get_dialog(account_id=account_id, dialog_id=dialog.id)

    async def dialog_from_calls(
        self, *, account_id: str, parent_call_id: str, child_call_id: str, child_hangup_ends_parent: bool = True
    ) -> VoiceDialog:
        """Bridge two live, answered calls of the account into a dialog at once."""
        if parent_call_id == child_call_id:
            raise InvalidInput("a dialog needs two different calls")
        legs = [
            await self.calls.require(account_id, parent_call_id),
            await self.calls.require(account_id, child_call_id),
        ]
        calls = [await self.calls.get_call(account_id=account_id, call_id=leg.call_id) for leg in legs]
        if any(call.dialog_id is not None for call in calls):
            raise InvalidCallState("the call is already in a dialog")
        if any(call.conference_id is not None for call in calls):
            raise InvalidCallState("the call is in a conference: a conference's calls cannot be in a dialog")
        if any(call.state != VoiceCallState.ESTABLISHED for call in calls):
            raise InvalidCallState("both calls must be answered (ESTABLISHED) to be joined in a dialog")
        dialog = await self._new_dialog(calls[0], child_hangup_ends_parent, child_call_id=child_call_id)
        await self._bridge_dialog(dialog.id)
        return await self.get_dialog(account_id=account_id, dialog_id=dialog.id)

    async def _new_dialog(
        self, parent: VoiceCall, child_hangup_ends_parent: bool, *, child_call_id: str | None = None
    ) -> VoiceDialog:
        async with self.calls.sessions() as session, session.begin():
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
                if (live := self.calls.get(call_id)) is not None:
                    live.in_dialog = True
            await session.execute(update(VoiceCall).where(VoiceCall.id.in_(ids)).values(dialog_id=dialog.id))
            await session.flush()
            await self._publish_dialog(session, dialog, VoiceEventType.DIALOG_CREATED)
        return dialog

    async def get_dialog(self, *, account_id: str, dialog_id: str) -> VoiceDialog:
        async with self.calls.sessions() as session:
            return await queries.get_dialog(session, account_id=account_id, dialog_id=dialog_id)

    async def hangup_dialog(self, *, account_id: str, dialog_id: str) -> VoiceDialog:
        """Hang up both calls; the dialog ends FINISHED (or FAILED if it never connected) with source API."""
        dialog = await self.get_dialog(account_id=account_id, dialog_id=dialog_id)
        if dialog.state in DIALOG_TERMINAL:
            raise CallNotLive("The dialog has already ended.")
        await self._end_dialog(dialog.id, DialogHangupSource.API, ErrorCode.NORMAL_HANGUP)
        for call_id in (dialog.parent_call_id, dialog.child_call_id):
            live = self.calls.get(call_id or "")
            if live is not None:
                await self._end_leg(live, HangupSource.API)
        return await self.get_dialog(account_id=account_id, dialog_id=dialog_id)

    async def _dialog_leg_answered(self, dialog_id: str, call_id: str) -> None:
        """The child answered: answer an unanswered inbound parent, then bridge. The bridge waits for the parent's
        own ESTABLISHED (its leg event comes back here), so DIALOG_ESTABLISHED never precedes the parent's state."""
        async with self.calls.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
            parent_call = await session.get(VoiceCall, dialog.parent_call_id) if dialog else None
            child_call = await session.get(VoiceCall, dialog.child_call_id) if dialog and dialog.child_call_id else None
        if dialog is None or dialog.state != DialogState.CREATED or parent_call is None or child_call is None:
            return
        parent = self.calls.get(dialog.parent_call_id)
        if parent is None:
            return
        if dialog.parent_call_id == call_id:  # the parent answered: bridge if the child already has
            if child_call.state == VoiceCallState.ESTABLISHED:
                await self._bridge_once(dialog.id)
            return
        if parent_call.state != VoiceCallState.ESTABLISHED:
            if parent.direction is CallDirection.INBOUND:
                await self.engine.answer(parent.engine_id)  # its ESTABLISHED leg event bridges the dialog
            return  # an outbound parent that has not answered cannot be answered by us
        await self._bridge_once(dialog.id)

    async def _bridge_once(self, dialog_id: str) -> None:
        # both legs' answers can reach here at once (a parent answering by itself as the child does)
        if dialog_id in self._state.bridging:
            return
        self._state.bridging.add(dialog_id)
        try:
            await self._bridge_dialog(dialog_id)
        finally:
            self._state.bridging.discard(dialog_id)

    async def _bridge_dialog(self, dialog_id: str) -> None:
        async with self.calls.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        if dialog is None or dialog.child_call_id is None:
            return
        parent, child = self.calls.get(dialog.parent_call_id), self.calls.get(dialog.child_call_id)
        if parent is None or child is None:
            return
        await self._stop_ringback(dialog.id)
        await self.engine.bridge(parent.engine_id, child.engine_id)
        async with self.calls.sessions() as session, session.begin():
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
                await self._publish_dialog(session, refreshed, VoiceEventType.DIALOG_ESTABLISHED)
        await self._dialog_established(dialog_id)

    async def _dialog_leg_ended(self, dialog_id: str, call_id: str) -> None:
        """One leg ended: end the dialog once, and the other leg (the parent only if propagation asks)."""
        async with self.calls.sessions() as session:
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
        other = self.calls.get(other_id or "")
        if other is not None and (is_parent or dialog.child_hangup_ends_parent):
            await self._end_leg(other, HangupSource.PLATFORM)

    async def _end_leg(self, live: LiveCall, source: HangupSource) -> None:
        call = await self.calls.get_call(account_id=live.account_id, call_id=live.call_id)
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
        async with self.calls.sessions() as session, session.begin():
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
            ended = VoiceEventType.DIALOG_FINISHED if state == DialogState.FINISHED else VoiceEventType.DIALOG_FAILED
            await self._publish_dialog(session, dialog, ended)

    async def _publish_dialog(self, session: AsyncSession, dialog: VoiceDialog, event_type: VoiceEventType) -> None:
        parent = await session.get(VoiceCall, dialog.parent_call_id)
        child = await session.get(VoiceCall, dialog.child_call_id) if dialog.child_call_id else None
        if parent is None:
            return
        await publish(
            session=session,
            renderer=self.calls.renderer,
            event=VoiceEvent(event_type, parent, dialog=dialog, child=child),
        )

    # ---- dialogs: prompts both parties hear, recordings ------------------------------------------

    async def _established_dialog(self, account_id: str, dialog_id: str) -> tuple[VoiceDialog, LiveCall, LiveCall]:
        dialog = await self.get_dialog(account_id=account_id, dialog_id=dialog_id)
        if dialog.state in DIALOG_TERMINAL:
            raise CallNotLive("The dialog has already ended.")
        if dialog.state != DialogState.ESTABLISHED or dialog.child_call_id is None:
            raise InvalidCallState("the dialog is not established yet")
        parent, child = self.calls.get(dialog.parent_call_id), self.calls.get(dialog.child_call_id)
        if parent is None or child is None:
            raise CallOnAnotherNode(f"dialog {dialog_id} is carried by another media node")
        return dialog, parent, child

    async def dialog_say(self, *, account_id: str, dialog_id: str, speech: Speech, loop_count: int = 1) -> None:
        """Say text to both parties (mixed over what they hear of each other) -> the dialog's SAY_FINISHED."""
        await self._start_dialog_playback(
            account_id, dialog_id, PlayContent(speech=speech), loop_count, VoiceEventType.SAY_FINISHED
        )

    async def dialog_play(self, *, account_id: str, dialog_id: str, content: PlayContent, loop_count: int = 1) -> None:
        """Play audio to both parties -> the dialog's PLAY_FINISHED."""
        await self._start_dialog_playback(account_id, dialog_id, content, loop_count, VoiceEventType.PLAY_FINISHED)

    async def dialog_stop_play(self, *, account_id: str, dialog_id: str) -> None:
        dialog, parent, _ = await self._established_dialog(account_id, dialog_id)
        pending = self._state.pending_play.pop(dialog.id, None)
        if pending is not None and not pending[0].done():
            pending[0].cancel()  # stopped before its audio was ready: it never played
            await self.calls.emit_dialog(dialog.id, pending[1], played_completely=False, duration_ms=0)
            return
        await self.engine.stop_bridge_playback(parent.engine_id)

    async def _start_dialog_playback(
        self, account_id: str, dialog_id: str, content: PlayContent, loop_count: int, kind: VoiceEventType
    ) -> None:
        if loop_count < 1:
            raise InvalidInput("loopCount must be at least 1")
        dialog, parent, _ = await self._established_dialog(account_id, dialog_id)
        source = None if content.url is not None else await self.media.source(account_id, content)

        async def start() -> None:
            started = time.monotonic()
            playback_id = await self.engine.play_to_bridge(
                parent.engine_id,
                source if source is not None else FileSource(await self.media.download(content.url or "")),
                loop_count=loop_count,
            )
            for previous, playing in list(parent.playbacks.items()):
                if playing.dialog_id == dialog.id:
                    parent.playbacks.pop(previous)  # replaced: only the new prompt is reported
            parent.playbacks[playback_id] = Playback(
                kind=kind, started=started, stop_on_dtmf=False, terminator=None, custom_data={}, dialog_id=dialog.id
            )

        previous = self._state.pending_play.get(dialog.id)
        if previous is not None:
            previous[0].cancel()  # replaced before it started
        action = "SAY" if kind is VoiceEventType.SAY_FINISHED else "PLAY"
        task = self.calls.spawn(self._guarded_dialog(dialog.id, action, start()), "dialog-play")
        self._state.pending_play[dialog.id] = (task, kind)

    async def _guarded_dialog(self, dialog_id: str, action: str, work: Any) -> None:
        """An accepted dialog action; a failure becomes the dialog's ERROR event (the API already answered)."""
        try:
            await work
        except CallplaneError as error:
            await self.calls.emit_dialog(dialog_id, VoiceEventType.ACTION_FAILED, action=action, detail=error.message)

    async def _emit_dialog(self, dialog_id: str, event_type: VoiceEventType, **details: Any) -> None:
        async with self.calls.sessions() as session, session.begin():
            dialog = await session.get(VoiceDialog, dialog_id)
            if dialog is None:
                return
            parent = await session.get(VoiceCall, dialog.parent_call_id)
            child = await session.get(VoiceCall, dialog.child_call_id) if dialog.child_call_id else None
            if parent is None:
                return
            event = VoiceEvent(event_type, parent, dialog=dialog, child=child, **details)
            await publish(session=session, renderer=self.calls.renderer, event=event)

    async def start_dialog_recording(self, *, account_id: str, dialog_id: str, request: DialogRecordingRequest) -> None:
        """Composed: one file of both parties mixed (the parent leg's mix of what it hears and sends). Not composed:
        one file per call with that party alone. The dialog's recording-ready event when all files of this recording
        are ready."""
        dialog, parent, child = await self._established_dialog(account_id, dialog_id)
        await self._record_dialog(dialog, parent, child, request)

    async def record_dialog_when_established(self, *, dialog_id: str, request: DialogRecordingRequest) -> None:
        """The dialog request's `recording`: started when the dialog is established (this process's dialogs)."""
        self._state.record_on_establish[dialog_id] = request
        async with self.calls.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        if dialog is not None and dialog.state == DialogState.ESTABLISHED:
            await self._dialog_established(dialog_id)  # it connected before we got here

    async def stop_dialog_recording(self, *, account_id: str, dialog_id: str) -> None:
        dialog = await self.get_dialog(account_id=account_id, dialog_id=dialog_id)
        if dialog.state in DIALOG_TERMINAL:
            raise CallNotLive("The dialog has already ended.")
        recording = self._state.recordings.get(dialog.id)
        if recording is None or recording.stopping:
            raise InvalidCallState("the dialog is not being recorded")
        await self._stop_dialog_files(dialog)

    async def _record_dialog(
        self, dialog: VoiceDialog, parent: LiveCall, child: LiveCall, request: DialogRecordingRequest
    ) -> None:
        if dialog.id in self._state.recordings:
            raise InvalidCallState("the dialog is already being recorded")
        if parent.recording_id is not None or child.recording_id is not None:
            raise InvalidCallState("a call of the dialog is being recorded (call and dialog recordings are exclusive)")
        legs = (
            [(parent, EngineChannels.MONO)]
            if request.composed
            else [(parent, EngineChannels.HEARD), (child, EngineChannels.HEARD)]
        )
        now = utcnow()
        planned: list[tuple[LiveCall, EngineChannels, str, str]] = []
        async with self.calls.sessions() as session, session.begin():
            for live, channels in legs:
                file_id = new_id()
                storage_key = f"{live.account_id}/{file_id}.wav"
                session.add(
                    VoiceRecording(
                        id=file_id,
                        account_id=live.account_id,
                        call_id=live.call_id,
                        configuration_id=dialog.configuration_id,
                        name=f"{file_id}.wav",  # always `<fileId>.wav`, as call recordings
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
        self._state.recordings[dialog.id] = _DialogRecording(files=ids, pending=set(ids))
        for live, channels, file_id, storage_key in planned:
            live.recording_id, live.recording_dialog_id = file_id, dialog.id
            try:
                await self.engine.start_recording(live.engine_id, self.calls.recordings_dir() / storage_key, channels)
            except CallplaneError:
                live.recording_id = live.recording_dialog_id = None
                await self._stop_dialog_files(dialog)  # the legs already started finish (and are reported)
                self._state.recordings[dialog.id].pending.discard(file_id)
                raise

    async def _stop_dialog_files(self, dialog: VoiceDialog) -> None:
        recording = self._state.recordings.get(dialog.id)
        if recording is None:
            return
        recording.stopping = True
        for live in (self.calls.get(dialog.parent_call_id), self.calls.get(dialog.child_call_id or "")):
            if live is not None and live.recording_id in recording.pending:
                with contextlib.suppress(CallplaneError):
                    await self.engine.stop_recording(live.engine_id)  # RecordingFinished makes the file ready

    async def limit_dialog_duration(self, *, dialog_id: str, max_duration_s: int) -> None:
        """The dialog request's `maxDuration`, counted from the bridge: then both calls are hung up and the dialog
        ends FINISHED, source PLATFORM, MAX_DURATION_REACHED (each call's own maxDuration still applies)."""
        if max_duration_s < 1:
            raise InvalidInput("maxDuration must be at least 1 second")
        self._state.max_duration[dialog_id] = max_duration_s
        async with self.calls.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        if dialog is not None and dialog.state == DialogState.ESTABLISHED:
            self._arm_dialog_max_duration(dialog_id)  # it connected before we got here

    def _arm_dialog_max_duration(self, dialog_id: str) -> None:
        seconds = self._state.max_duration.pop(dialog_id, None)
        if seconds is not None:
            asyncio.get_running_loop().call_later(
                seconds, lambda: self.calls.spawn(self._dialog_max_duration_reached(dialog_id), "dialog-max-duration")
            )

    async def _dialog_max_duration_reached(self, dialog_id: str) -> None:
        async with self.calls.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        if dialog is None or dialog.state in DIALOG_TERMINAL:
            return
        await self._end_dialog(dialog_id, DialogHangupSource.PLATFORM, ErrorCode.MAX_DURATION_REACHED)
        await self._dialog_ended_media(dialog)
        for call_id in (dialog.parent_call_id, dialog.child_call_id):
            live = self.calls.get(call_id or "")
            if live is not None:
                live.requested = Ending(VoiceCallState.FINISHED, HangupSource.PLATFORM, ErrorCode.MAX_DURATION_REACHED)
                with contextlib.suppress(CallplaneError):
                    await self.engine.hangup(live.engine_id)

    async def _dialog_established(self, dialog_id: str) -> None:
        self._arm_dialog_max_duration(dialog_id)
        request = self._state.record_on_establish.pop(dialog_id, None)
        if request is None:
            return
        async with self.calls.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
        parent = self.calls.get(dialog.parent_call_id) if dialog else None
        child = self.calls.get(dialog.child_call_id or "") if dialog else None
        if dialog is None or parent is None or child is None:
            return
        try:
            await self._record_dialog(dialog, parent, child, request)
        except CallplaneError as error:
            await self.calls.emit_dialog(dialog_id, VoiceEventType.DIALOG_RECORDING_FAILED, detail=error.message)

    async def _dialog_ended_media(self, dialog: VoiceDialog) -> None:
        """The dialog ended: a leg that stays up (no propagation) stops recording for it; nothing is pending."""
        self._state.record_on_establish.pop(dialog.id, None)
        self._state.max_duration.pop(dialog.id, None)
        await self._stop_ringback(dialog.id)
        self._state.progress.pop(dialog.id, None)
        pending = self._state.pending_play.pop(dialog.id, None)
        if pending is not None:
            pending[0].cancel()
        await self._stop_dialog_files(dialog)

    async def _dialog_file_ready(self, dialog_id: str, file_id: str) -> None:
        recording = self._state.recordings.get(dialog_id)
        if recording is None:
            return
        recording.pending.discard(file_id)
        if recording.pending:
            return
        del self._state.recordings[dialog_id]
        async with self.calls.sessions() as session, session.begin():
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
            event = VoiceEvent(
                VoiceEventType.DIALOG_RECORDING_READY, parent, dialog=dialog, child=child, recordings=files
            )
            await publish(session=session, renderer=self.calls.renderer, event=event)

    # ---- dialogs: what the parent hears while the child rings -----------------------------------

    async def _dialog_child_progress(self, dialog_id: str, call_id: str) -> None:
        """The dialog request's propagationOptions, on the child's first 180/183: its ringing reaches an unanswered
        inbound parent as a 180 (`childCallRinging`), or the parent hears a generated ringback until the bridge
        (`ringbackGeneration`: an unanswered inbound parent is pre-answered, 183, for it)."""
        progress = self._state.progress.get(dialog_id)
        if progress is None or progress.applied:
            return
        async with self.calls.sessions() as session:
            dialog = await session.get(VoiceDialog, dialog_id)
            parent = await session.get(VoiceCall, dialog.parent_call_id) if dialog else None
        if dialog is None or parent is None or parent.id == call_id:  # the parent's own progress is not the child's
            return
        progress.applied = True
        live = self.calls.get(parent.id)
        if live is None or dialog.state != DialogState.CREATED:
            return
        inbound = live.direction is CallDirection.INBOUND
        unanswered = parent.state in (VoiceCallState.CALLING, VoiceCallState.RINGING)
        with contextlib.suppress(CallplaneError):
            if progress.ringing and inbound and parent.state == VoiceCallState.CALLING:
                await self.engine.send_ringing(live.engine_id)
                await self.control.move(parent.id, VoiceCallState.RINGING, LegEvent.RINGING, ringing=True)
            if progress.ringback and (inbound or not unanswered):
                if unanswered:
                    await self.engine.pre_answer(live.engine_id)
                    await self.control.move(parent.id, VoiceCallState.PRE_ESTABLISHED, LegEvent.EARLY_MEDIA)
                await self.engine.play(live.engine_id, RINGBACK, loop_count=RINGBACK_LOOPS)
                progress.ringback_playing = True

    async def _stop_ringback(self, dialog_id: str) -> None:
        progress = self._state.progress.get(dialog_id)
        if progress is None or not progress.ringback_playing:
            return
        progress.ringback_playing = False
        async with self.calls.sessions() as session:
            dialog = await session.get(VoiceDialog, progress.dialog_id)
        live = self.calls.get(dialog.parent_call_id) if dialog else None
        if live is not None:
            with contextlib.suppress(CallplaneError):
                await self.engine.stop_playback(live.engine_id)

    # ---- composition -------------------------------------------------------------------------

    async def compose_dialog_recording(
        self, *, account_id: str, dialog_id: str, delete_call_recordings: bool = True, multi_channel: bool = False
    ) -> None:
        """Compose the dialog's per-call files into one file per recording (each start/stop), in the background:
        mono mixed, or one channel per call (parent first) with `multi_channel` -> the composition-finished event."""
        async with self.calls.sessions() as session:
            found = await queries.dialog_recordings(session, account_id=account_id, dialog_id=dialog_id)
        if not any(not f.composed for f in found.files):
            raise InvalidInput("the dialog has no per-call recording files to compose")
        self.calls.spawn(self._compose(found, delete_call_recordings, multi_channel), "dialog-compose")

    async def _compose(self, found: DialogRecordings, delete_call_recordings: bool, multi_channel: bool) -> None:
        dialog = found.dialog
        owner = ComposedOwner(
            account_id=dialog.account_id,
            configuration_id=dialog.configuration_id,
            call_id=dialog.parent_call_id,
            dialog_id=dialog.id,
        )
        try:
            composed = await compose_sessions(
                self.calls,
                found.files,
                owner=owner,
                order=lambda f: (f.call_id != dialog.parent_call_id, f.id),  # the parent first
                multi_channel=multi_channel,
                delete_sources=delete_call_recordings,
            )
        except (OSError, ValueError) as error:
            await self.calls.emit_dialog(
                dialog.id, VoiceEventType.DIALOG_COMPOSITION_FAILED, detail=f"composition failed: {error}"
            )
            return
        await self.calls.emit_dialog(dialog.id, VoiceEventType.DIALOG_COMPOSITION_FINISHED, recordings=composed)


@dataclass
class _DialogRecording:
    """A dialog recording in progress: its files (one composed, or one per call) until all are ready."""

    files: list[str]
    pending: set[str]
    stopping: bool = False


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

    pending_play: dict[str, tuple[asyncio.Task[Any], VoiceEventType]] = field(
        default_factory=dict
    )  # accepted, still loading
    recordings: dict[str, _DialogRecording] = field(default_factory=dict)  # in progress
    record_on_establish: dict[str, DialogRecordingRequest] = field(default_factory=dict)
    progress: dict[str, _Progress] = field(default_factory=dict)  # by dialog id: what its child's ringing does
    bridging: set[str] = field(default_factory=set)  # dialog ids being bridged now
    max_duration: dict[str, int] = field(default_factory=dict)  # seconds, armed when the dialog is established

    def recording_of(self, file_id: str) -> str | None:
        """The dialog whose recording this file is (while it records)."""
        for dialog_id, recording in self.recordings.items():
            if file_id in recording.pending:
                return dialog_id
        return None
