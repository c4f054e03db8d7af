"""Application transfer: the calls configuration that owns a live call (its application) asks another configuration
of the account to take it over; the receiving one accepts or rejects, or the request times out.

Infobip's guide ("Transfer calls between applications"): the receiving application gets the request as an event
(CALL_TRANSFER_REQUESTED, rendered APPLICATION_TRANSFER_REQUESTED), accepts or rejects it through the API, and the
requesting application is told the outcome (CALL_TRANSFER_FINISHED / CALL_TRANSFER_FAILED). On accept the call's
`configuration_id` changes: from then on its events go to the new owner's subscribers.

Blind transfer (below): a dialog's party sends SIP REFER; the other party is handed to the REFER's target.

A pending transfer lives on the node that carries the call (the commands are relayed there by call id), for at most
its timeout: nothing about it needs to survive the process, since the call does not either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import update

from callplane.core.voice.configurations import get_configuration
from callplane.core.voice.events import VoiceEvent, VoiceEventType, publish
from callplane.core.voice.models import DialogState, EndpointType, VoiceCall, VoiceDialog
from callplane.core.voice.schemas import Endpoint, NewCall
from callplane.core.voice.states import TERMINAL_STATES, ErrorCode, InvalidCallState
from callplane.db.base import new_id
from callplane.errors import CallplaneError, InvalidInput, NotFound
from callplane.live.calls import LegChange, LegEvent, LiveCall, LiveCalls
from callplane.live.hold import Holds
from callplane.media.engine import TransferRequested

log = logging.getLogger("callplane.voice")

DEFAULT_TIMEOUT_S = 30  # the client's default: how long the receiving application has to accept
MAX_TIMEOUT_S = 600


class TransferNotFound(NotFound):
    """No pending application transfer has this id for this call."""


@dataclass
class PendingTransfer:
    transfer_id: str
    call_id: str
    account_id: str
    source_configuration_id: str
    destination_configuration_id: str
    custom_data: dict[str, str] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class ApplicationTransfers:
    def __init__(self, *, calls: LiveCalls) -> None:
        self.calls = calls
        self._pending: dict[str, PendingTransfer] = {}  # by transfer id

    async def request(
        self,
        *,
        account_id: str,
        call_id: str,
        destination_configuration_id: str,
        timeout_s: int = DEFAULT_TIMEOUT_S,
        custom_data: Mapping[str, str] | None = None,
    ) -> str:
        """Offer the live call to another configuration of the account; returns the transfer id."""
        await self.calls.require(account_id, call_id)
        if not 1 <= timeout_s <= MAX_TIMEOUT_S:
            raise InvalidInput(f"timeout must be between 1 and {MAX_TIMEOUT_S} seconds")
        if any(pending.call_id == call_id for pending in self._pending.values()):
            raise InvalidCallState("an application transfer of this call is already pending")
        async with self.calls.sessions() as session:
            await get_configuration(
                session=session, account_id=account_id, configuration_id=destination_configuration_id
            )
            call = await session.get(VoiceCall, call_id)
        assert call is not None
        if call.configuration_id == destination_configuration_id:
            raise InvalidInput("the call already belongs to this calls configuration")
        pending = PendingTransfer(
            transfer_id=new_id(),
            call_id=call_id,
            account_id=account_id,
            source_configuration_id=call.configuration_id,
            destination_configuration_id=destination_configuration_id,
            custom_data=dict(custom_data or {}),
        )
        self._pending[pending.transfer_id] = pending
        pending.timer = asyncio.get_running_loop().call_later(
            timeout_s, lambda: self.calls.spawn(self._timed_out(pending.transfer_id), "application-transfer-timeout")
        )
        await self._emit(pending, VoiceEventType.CALL_TRANSFER_REQUESTED, to=destination_configuration_id)
        log.info(
            "application transfer requested", extra={"fields": {"call_id": call_id, "to": destination_configuration_id}}
        )
        return pending.transfer_id

    async def accept(self, *, account_id: str, call_id: str, transfer_id: str) -> None:
        """The receiving configuration takes the call: it owns it (and its events) from now on."""
        pending = self._take(account_id, call_id, transfer_id)
        await self.calls.require(account_id, call_id)
        async with self.calls.sessions() as session, session.begin():
            call = await session.get(VoiceCall, call_id)
            assert call is not None
            values: dict[str, object] = {"configuration_id": pending.destination_configuration_id}
            if pending.custom_data:
                values["custom_data"] = {**call.custom_data, **pending.custom_data}
            await session.execute(
                update(VoiceCall)
                .where(VoiceCall.id == call_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        await self._emit(pending, VoiceEventType.CALL_TRANSFER_FINISHED, to=pending.source_configuration_id)

    async def reject(self, *, account_id: str, call_id: str, transfer_id: str) -> None:
        pending = self._take(account_id, call_id, transfer_id)
        await self._emit(pending, VoiceEventType.CALL_TRANSFER_FAILED, to=pending.source_configuration_id)

    def call_ended(self, call_id: str) -> list[PendingTransfer]:
        """The call ended: its pending transfer is over (the caller reports it failed)."""
        ended = [pending for pending in self._pending.values() if pending.call_id == call_id]
        for pending in ended:
            self._forget(pending.transfer_id)
        return ended

    async def report_ended(self, call_id: str) -> None:
        for pending in self.call_ended(call_id):
            await self._emit(pending, VoiceEventType.CALL_TRANSFER_FAILED, to=pending.source_configuration_id)

    async def _timed_out(self, transfer_id: str) -> None:
        pending = self._forget(transfer_id)
        if pending is not None:
            log.info("application transfer timed out", extra={"fields": {"call_id": pending.call_id}})
            await self._emit(pending, VoiceEventType.CALL_TRANSFER_FAILED, to=pending.source_configuration_id)

    def _take(self, account_id: str, call_id: str, transfer_id: str) -> PendingTransfer:
        pending = self._pending.get(transfer_id)
        if pending is None or pending.call_id != call_id or pending.account_id != account_id:
            raise TransferNotFound()
        self._forget(transfer_id)
        return pending

    def _forget(self, transfer_id: str) -> PendingTransfer | None:
        pending = self._pending.pop(transfer_id, None)
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()
        return pending

    async def _emit(self, pending: PendingTransfer, kind: VoiceEventType, *, to: str) -> None:
        async with self.calls.sessions() as session, session.begin():
            call = await session.get(VoiceCall, pending.call_id)
            if call is None:
                return
            event = VoiceEvent(
                kind,
                call,
                transfer_id=pending.transfer_id,
                source_configuration_id=pending.source_configuration_id,
                destination_configuration_id=pending.destination_configuration_id,
                to_configuration_id=to,
            )
            await publish(session=session, renderer=self.calls.renderer, event=event)


# ---- blind transfer: a dialog's party sends REFER -------------------------------------------------------------


class TransferPlacer(Protocol):
    """What blind transfers ask of the call control (the voice service is one)."""

    def create_call(self, *, account_id: str, request: NewCall) -> Awaitable[VoiceCall]: ...

    def dialog_from_calls(
        self, *, account_id: str, parent_call_id: str, child_call_id: str, child_hangup_ends_parent: bool = True
    ) -> Awaitable[VoiceDialog]: ...

    def hangup(self, *, account_id: str, call_id: str, error_code: ErrorCode | None = None) -> Awaitable[VoiceCall]: ...


@dataclass
class PendingReferral:
    dialog_id: str
    transferor_call_id: str  # who sent REFER: it leaves once the target answers
    transferee_call_id: str  # the other party: bridged to the target
    refer_to: str


# SIP status of the sipfrag NOTIFY for how the target's call ended (RFC 3515: the final response it got)
FAILURE_STATUS = {
    ErrorCode.BUSY: (486, "Busy Here"),
    ErrorCode.NO_ANSWER: (480, "Temporarily Unavailable"),
    ErrorCode.REJECTED: (603, "Decline"),
    ErrorCode.FORBIDDEN: (403, "Forbidden"),
    ErrorCode.DESTINATION_NOT_FOUND: (404, "Not Found"),
    ErrorCode.CANCELLED: (487, "Request Terminated"),
}


class BlindTransfers:
    """REFER from a dialog's party (the engine accepted it: the call was bridged): the target is called with the
    transferor's configuration; when it answers, the dialog ends, the other party is bridged to the target in a new
    dialog and the transferor is hung up (NOTIFY 200 first); if it does not, the transferor is told (NOTIFY with
    the failure) and the two stay as they were. Events: DIALOG_TRANSFER_REQUESTED, _FINISHED, _FAILED."""

    def __init__(self, *, calls: LiveCalls, holds: Holds, control: TransferPlacer) -> None:
        self.calls = calls
        self.engine = calls.engine
        self.holds = holds
        self.control = control
        self._pending: dict[str, PendingReferral] = {}  # by the target's call id

    async def on_requested(self, live: LiveCall, event: TransferRequested) -> None:
        call = await self.calls.get_call(account_id=live.account_id, call_id=live.call_id)
        dialog = None
        if call.dialog_id is not None:
            async with self.calls.sessions() as session:
                dialog = await session.get(VoiceDialog, call.dialog_id)
        if dialog is None or dialog.state != DialogState.ESTABLISHED or dialog.child_call_id is None:
            await self._notify(live, 503, "Service Unavailable")  # bridged outside a dialog: nothing to hand over
            return
        other = dialog.child_call_id if dialog.parent_call_id == call.id else dialog.parent_call_id
        await self._emit(dialog.id, call.id, VoiceEventType.DIALOG_TRANSFER_REQUESTED, event.refer_to)
        host = f"{event.target_host}:{event.target_port}" if event.target_port else event.target_host
        try:
            target = await self.control.create_call(
                account_id=call.account_id,
                request=NewCall(
                    configuration_id=call.configuration_id,
                    endpoint=Endpoint(EndpointType.SIP, event.target_user, host=host),
                    from_user=call.to_user if call.direction == "INBOUND" else call.from_user,
                    custom_data={"transferred_from_dialog": dialog.id},
                ),
            )
        except CallplaneError as error:
            log.info("transfer target refused", extra={"fields": {"call_id": call.id, "error": error.message}})
            await self._notify(live, 403, "Forbidden")
            await self._emit(
                dialog.id, call.id, VoiceEventType.DIALOG_TRANSFER_FAILED, event.refer_to, ErrorCode.FORBIDDEN
            )
            return
        if target.state in TERMINAL_STATES:  # the dial failed at once
            await self._failed(PendingReferral(dialog.id, call.id, other, event.refer_to), target)
            return
        self._pending[target.id] = PendingReferral(dialog.id, call.id, other, event.refer_to)

    async def on_leg(self, change: LegChange) -> None:
        if change.event not in (LegEvent.ESTABLISHED, LegEvent.FINISHED, LegEvent.FAILED):
            return
        pending = self._pending.pop(change.call_id, None)
        if pending is None:
            return
        async with self.calls.sessions() as session:
            target = await session.get(VoiceCall, change.call_id)
        assert target is not None
        if change.event is not LegEvent.ESTABLISHED:
            await self._failed(pending, target)
            return
        transferor, transferee = self.calls.get(pending.transferor_call_id), self.calls.get(pending.transferee_call_id)
        if transferee is None:  # the party to hand over left meanwhile
            await self.control.hangup(account_id=target.account_id, call_id=target.id)
            return
        if transferor is not None:
            await self._notify(transferor, 200, "OK")
        await self.holds.leave_dialog(account_id=target.account_id, call_id=transferee.call_id)
        with contextlib.suppress(CallplaneError):
            await self.engine.unbridge(transferee.engine_id)
        await self._emit(
            pending.dialog_id, pending.transferor_call_id, VoiceEventType.DIALOG_TRANSFER_FINISHED, pending.refer_to
        )
        await self.control.dialog_from_calls(
            account_id=target.account_id, parent_call_id=transferee.call_id, child_call_id=target.id
        )
        if transferor is not None:
            with contextlib.suppress(CallplaneError):
                await self.control.hangup(account_id=target.account_id, call_id=transferor.call_id)

    async def _failed(self, pending: PendingReferral, target: VoiceCall) -> None:
        code = ErrorCode(target.error_code) if target.error_code else ErrorCode.DESTINATION_UNAVAILABLE
        transferor = self.calls.get(pending.transferor_call_id)
        if transferor is not None:
            await self._notify(transferor, *FAILURE_STATUS.get(code, (503, "Service Unavailable")))
        await self._emit(
            pending.dialog_id, pending.transferor_call_id, VoiceEventType.DIALOG_TRANSFER_FAILED, pending.refer_to, code
        )

    async def _emit(
        self, dialog_id: str, transferor_id: str, kind: VoiceEventType, refer_to: str, code: ErrorCode | None = None
    ) -> None:
        """A dialog transfer event (its own transaction): the dialog, the transferor's call, where to."""
        async with self.calls.sessions() as session, session.begin():
            dialog = await session.get(VoiceDialog, dialog_id)
            transferor = await session.get(VoiceCall, transferor_id)
            if dialog is None or transferor is None:
                return
            event = VoiceEvent(
                kind, transferor, dialog=dialog, detail=refer_to, error_code=int(code) if code is not None else None
            )
            await publish(session=session, renderer=self.calls.renderer, event=event)

    async def _notify(self, live: LiveCall, status: int, phrase: str) -> None:
        with contextlib.suppress(CallplaneError):
            await self.engine.notify_transfer(live.engine_id, status, phrase)
