"""SIP trunks as the engine sees them: the peer of a trunk, phone calls placed through a trunk, and the REGISTER
reconciler (`TrunkRegistrar`) that keeps the engine's registrations equal to the enabled REGISTERED trunks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.voice.outbound import check_target, pinned_address
from callplane.core.voice.trunk_models import SipTrunk, TrunkAdminStatus, TrunkKind, TrunkRegistrationStatus
from callplane.core.voice.trunks import TrunkChannels, TrunkUnavailable, format_number, get_trunk
from callplane.errors import CallplaneError
from callplane.media.engine import (
    CallEngine,
    EngineNotRunning,
    OutboundCall,
    RegistrationChanged,
    TrunkRegistration,
)
from callplane.media.engine import SipTrunk as SipPeer

log = logging.getLogger("callplane.voice.trunks")


async def pinned_peer(policy: TargetPolicy, peer: SipPeer, *, what: str) -> SipPeer:
    """The peer with `address` set to its first checked IPv4 address: the INVITE goes to exactly the address the
    outbound target policy checked, while the Request-URI keeps the name."""
    return replace(peer, address=await pinned_address(policy, peer.host, peer.port, what=what))


def sip_peer(trunk: SipTrunk, secret_box: SecretBox) -> SipPeer:
    """The engine's view of a trunk: where to send, and the digest credentials to answer challenges with."""
    password = secret_box.decrypt(trunk.password_encrypted) if trunk.password_encrypted else None
    return SipPeer(host=trunk.host, port=trunk.port, username=trunk.username, password=password)


async def phone_call_through_trunk(
    *,
    session: AsyncSession,
    account_id: str,
    trunk_id: str,
    phone_number: str,
    from_number: str | None,
    secret_box: SecretBox,
    channels: TrunkChannels,
    from_display_name: str | None = None,
    headers: Mapping[str, str] | None = None,
    ring_timeout_s: float | None = None,
) -> OutboundCall:
    """The engine command for a PHONE endpoint: numbers in the trunk's format, a channel held.

    The caller releases the channel (`channels.release(trunk_id)`) when the call ends, or at once if dialing
    fails.
    """
    trunk = await get_trunk(session=session, account_id=account_id, trunk_id=trunk_id)
    if trunk.admin_status != TrunkAdminStatus.ENABLED:
        raise TrunkUnavailable(f"SIP trunk {trunk_id} is {trunk.admin_status}")
    to_user = format_number(phone_number, trunk.number_format)
    from_user = format_number(from_number, trunk.number_format) if from_number else "anonymous"
    channels.acquire(trunk.id, trunk.channel_limit)
    return OutboundCall(
        to_user=to_user,
        trunk=sip_peer(trunk, secret_box),
        from_user=from_user,
        from_display_name=from_display_name,
        headers=dict(headers or {}),
        ring_timeout_s=ring_timeout_s,
    )


# ---- registration -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Wanted:
    registration: TrunkRegistration
    fingerprint: str


class TrunkRegistrar:
    """Keeps the engine's registrations equal to the enabled REGISTERED trunks in the database.

    `reconcile()` registers new or changed trunks and unregisters removed or disabled ones; the engine's
    `RegistrationChanged` events are written back to each trunk's `registration_status`.
    """

    def __init__(
        self,
        *,
        engine: CallEngine,
        sessions: async_sessionmaker[AsyncSession],
        secret_box: SecretBox,
        policy: TargetPolicy,
        expires_s: int = 3600,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.secret_box = secret_box
        self.policy = policy  # the outbound target policy: no REGISTER to a refused address
        self.expires_s = expires_s
        self._current: dict[str, tuple[str, str]] = {}  # trunk id -> (registration id, fingerprint)
        self._trunk_of: dict[str, str] = {}  # registration id -> trunk id
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Reconcile soon (after a trunk was committed in this process)."""
        self._wake.set()

    async def _wanted(self) -> dict[str, _Wanted]:
        async with self.sessions() as session:
            trunks = await session.scalars(
                select(SipTrunk).where(
                    SipTrunk.kind == TrunkKind.REGISTERED, SipTrunk.admin_status == TrunkAdminStatus.ENABLED
                )
            )
            wanted = {}
            refused: dict[str, str] = {}
            for trunk in trunks:
                peer = sip_peer(trunk, self.secret_box)
                try:
                    await check_target(self.policy, peer.host, peer.port, what=f"SIP trunk {trunk.id} ({peer.host})")
                except CallplaneError as error:
                    refused[trunk.id] = error.message
                    continue
                fingerprint = hashlib.sha256(
                    f"{peer.host}|{peer.port}|{peer.username}|{peer.password}|{self.expires_s}".encode()
                ).hexdigest()
                registration = TrunkRegistration(trunk=peer, user=trunk.username or "", expires_s=self.expires_s)
                wanted[trunk.id] = _Wanted(registration, fingerprint)
        await self._mark_refused(refused)
        return wanted

    async def _mark_refused(self, refused: Mapping[str, str]) -> None:
        """Trunks whose peer the target policy refuses are not registered: the reason is their status detail."""
        if not refused:
            return
        async with self.sessions() as session, session.begin():
            for trunk in await session.scalars(select(SipTrunk).where(SipTrunk.id.in_(list(refused)))):
                if trunk.registration_detail != refused[trunk.id]:
                    log.warning(
                        "trunk not registered", extra={"fields": {"trunk_id": trunk.id, "detail": refused[trunk.id]}}
                    )
                    trunk.registration_status = TrunkRegistrationStatus.UNREGISTERED
                    trunk.registration_detail = refused[trunk.id]

    async def reconcile(self) -> None:
        wanted = await self._wanted()
        dropped = []
        for trunk_id, (registration_id, fingerprint) in list(self._current.items()):
            if trunk_id not in wanted or wanted[trunk_id].fingerprint != fingerprint:
                del self._current[trunk_id]
                await self.engine.unregister(registration_id)
                dropped.append(trunk_id)
        await self._mark_unregistered(dropped, "unregistered")
        for trunk_id, want in wanted.items():
            if trunk_id not in self._current:
                registration_id = await self.engine.register(want.registration)
                self._current[trunk_id] = (registration_id, want.fingerprint)
                self._trunk_of[registration_id] = trunk_id

    async def record(self, event: RegistrationChanged) -> None:
        """Write an engine registration event to its trunk (events of replaced registrations are dropped)."""
        trunk_id = self._trunk_of.get(event.registration_id)
        if trunk_id is None or self._current.get(trunk_id, ("",))[0] != event.registration_id:
            return
        async with self.sessions() as session, session.begin():
            trunk = await session.get(SipTrunk, trunk_id)
            if trunk is None:
                return
            trunk.registration_status = (
                TrunkRegistrationStatus.REGISTERED if event.registered else TrunkRegistrationStatus.UNREGISTERED
            )
            trunk.registration_detail = event.status_line
        log.info(
            "trunk registration",
            extra={"fields": {"trunk_id": trunk_id, "registered": event.registered, "status": event.status_line}},
        )

    async def run_forever(self, stop: asyncio.Event, *, poll_s: float = 5.0) -> None:
        """Reconcile every `poll_s` (or when poked) and record registration events until `stop`."""
        events = self.engine.subscribe()
        recorder = asyncio.create_task(self._record_events(events))
        try:
            while not stop.is_set():
                await self.reconcile()
                self._wake.clear()
                waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
                await asyncio.wait(waits, timeout=poll_s, return_when=asyncio.FIRST_COMPLETED)
                for task in waits:
                    task.cancel()
        finally:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
            for registration_id, _ in list(self._current.values()):
                with contextlib.suppress(EngineNotRunning):
                    await self.engine.unregister(registration_id)
            stopped = list(self._current)
            self._current.clear()
            await self._mark_unregistered(stopped, "engine stopped")

    async def _mark_unregistered(self, trunk_ids: list[str], detail: str) -> None:
        """Registrations we dropped ourselves: their own events are ignored (the trunk may be registering anew)."""
        if not trunk_ids:
            return
        async with self.sessions() as session, session.begin():
            for trunk in await session.scalars(select(SipTrunk).where(SipTrunk.id.in_(trunk_ids))):
                if trunk.kind == TrunkKind.REGISTERED:
                    trunk.registration_status = TrunkRegistrationStatus.UNREGISTERED
                    trunk.registration_detail = detail

    async def _record_events(self, events: asyncio.Queue[Any]) -> None:
        while True:
            event = await events.get()
            if isinstance(event, RegistrationChanged):
                await self.record(event)
