"""Application transfer: the calls configuration that owns a live call (its application) asks another configuration
of the account to take it over; the receiving one accepts or rejects, or the request times out.

Infobip's guide ("Transfer calls between applications"): the receiving application gets the request as an event
(CALL_TRANSFER_REQUESTED, rendered APPLICATION_TRANSFER_REQUESTED), accepts or rejects it through the API, and the
requesting application is told the outcome (CALL_TRANSFER_FINISHED / CALL_TRANSFER_FAILED). On accept the call's
`configuration_id` changes: from then on its events go to the new owner's subscribers.

A pending transfer lives on the node that carries the call (the commands are relayed there by call id), for at most
its timeout: nothing about it needs to survive the process, since the call does not either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import update

from callplane.core.voice.configurations import get_configuration
from callplane.core.voice.events import VoiceEvent, VoiceEventType, publish
from callplane.core.voice.models import VoiceCall
from callplane.core.voice.states import InvalidCallState
from callplane.db.base import new_id
from callplane.errors import InvalidInput, NotFound
from callplane.live.calls import LiveCalls

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
