"""Taking inbound calls that no voice route owns: another domain (call tracking) plans how to carry them.

The voice service stays the only code that commands the engine: a planner says which account and configuration
own the call, adds its own rows in the call's transaction, then asks the service to connect the call.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.voice.models import VoiceCall, VoiceDialog
from callplane.core.voice.schemas import NewCall, RecordingChannels
from callplane.core.voice.states import ErrorCode
from callplane.media.engine import IncomingCall


@dataclass(frozen=True, slots=True)
class InboundPlan:
    account_id: str
    configuration_id: str
    record: RecordingChannels | None  # record the call from its answer
    payload: object  # the planner's own data, handed back to it


class DialogPlacer(Protocol):
    """What a planner may ask of the voice service once the call is live (the service is one)."""

    def create_dialog(
        self, *, account_id: str, parent_call_id: str, child: NewCall | None, child_hangup_ends_parent: bool = True
    ) -> Awaitable[VoiceDialog]: ...

    def hangup(self, *, account_id: str, call_id: str, error_code: ErrorCode | None = None) -> Awaitable[VoiceCall]: ...


class InboundPlanner(Protocol):
    async def plan(self, *, session: AsyncSession, event: IncomingCall) -> InboundPlan | None:
        """A plan for a call to an unrouted user, or None (the call is refused)."""

    async def accepted(self, *, session: AsyncSession, call: VoiceCall, plan: InboundPlan) -> None:
        """Add the planner's rows in the transaction that creates the call (the core Call is flushed)."""

    async def connect(self, *, voice: DialogPlacer, call: VoiceCall, plan: InboundPlan) -> None:
        """After the call is committed and live in this process: connect it (e.g. a dialog to a destination)."""
