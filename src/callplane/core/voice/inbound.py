"""Taking inbound calls that no voice route owns: another domain (call tracking) plans how to carry them.

The voice service stays the only code that commands the engine: a planner says which account and configuration
own the call, adds its own rows in the call's transaction, then asks the service to connect the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from callplane.media.engine import IncomingCall, RecordingChannels

if TYPE_CHECKING:
    from callplane.core.voice.models import VoiceCall
    from callplane.core.voice.service import VoiceService


@dataclass(frozen=True, slots=True)
class InboundPlan:
    account_id: str
    configuration_id: str
    record: RecordingChannels | None  # record the call from its answer
    payload: object  # the planner's own data, handed back to it


class InboundPlanner(Protocol):
    async def plan(self, *, session: AsyncSession, event: IncomingCall) -> InboundPlan | None:
        """A plan for a call to an unrouted user, or None (the call is refused)."""

    async def accepted(self, *, session: AsyncSession, call: VoiceCall, plan: InboundPlan) -> None:
        """Add the planner's rows in the transaction that creates the call (the core Call is flushed)."""

    async def connect(self, *, voice: VoiceService, call: VoiceCall, plan: InboundPlan) -> None:
        """After the call is committed and live in this process: connect it (e.g. a dialog to a destination)."""
