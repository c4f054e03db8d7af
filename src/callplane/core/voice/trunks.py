"""SIP trunks: CRUD, number formats and per-process channel counts (the engine's side: live/registrar.py).

A trunk is a SIP peer (host, port, UDP for now) with optional digest credentials, a number format and a
channel limit. REGISTERED trunks are ones *we* register with (a carrier account), reconciled from the
database by `live.registrar.TrunkRegistrar`, so any process that runs the engine applies what an API process
committed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.voice.trunk_models import (
    NumberFormat,
    SipTrunk,
    TrunkAdminStatus,
    TrunkKind,
    TrunkRegistrationStatus,
)
from callplane.db.base import utcnow
from callplane.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger("callplane.voice.trunks")

SUPPORTED_TRANSPORTS = ("UDP",)
SUPPORTED_CODECS = ("PCMU", "PCMA")
MAX_CHANNEL_LIMIT = 1000


class SipTrunkNotFound(NotFound):
    """SIP trunk not found."""


class UnsupportedTransport(InvalidInput):
    """Only UDP SIP trunks are supported for now (TCP and TLS are not built yet)."""


class TrunkChannelsExhausted(Conflict):
    """The SIP trunk has no free channel: its channel limit is reached."""

    permanent = False


class TrunkUnavailable(Conflict):
    """The SIP trunk is disabled."""


class InvalidPhoneNumber(InvalidInput):
    """The phone number is not valid."""


@dataclass(frozen=True, slots=True)
class TrunkSpec:
    """Everything a create or a (full) update sets; unset optional fields take their defaults."""

    name: str
    kind: TrunkKind
    host: str
    channel_limit: int
    port: int = 5060
    transport: str = "UDP"
    username: str | None = None
    password: str | None = None
    number_format: NumberFormat = NumberFormat.E164
    international_calls_allowed: bool = False
    codecs: tuple[str, ...] = SUPPORTED_CODECS
    source_hosts: tuple[str, ...] = ()
    extras: Mapping[str, Any] = field(default_factory=dict)


def _check(spec: TrunkSpec) -> None:
    if not spec.name.strip():
        raise InvalidInput("name must not be blank")
    if spec.transport.upper() not in SUPPORTED_TRANSPORTS:
        raise UnsupportedTransport(
            f"transport {spec.transport} is not supported; only UDP is (TCP and TLS are not built)"
        )
    if not spec.host.strip():
        raise InvalidInput("a SIP trunk needs the peer's host")
    if not 1 <= spec.port <= 65535:
        raise InvalidInput(f"port {spec.port} is out of range")
    if not 1 <= spec.channel_limit <= MAX_CHANNEL_LIMIT:
        raise InvalidInput(f"channelLimit must be between 1 and {MAX_CHANNEL_LIMIT}")
    unsupported = [codec for codec in spec.codecs if codec not in SUPPORTED_CODECS]
    if unsupported:
        raise InvalidInput(f"codec {', '.join(unsupported)} is not supported; only PCMU and PCMA are")
    if spec.kind is TrunkKind.REGISTERED and not (spec.username and spec.password):
        raise InvalidInput("a REGISTERED trunk needs the username and password we register with")
    if bool(spec.username) != bool(spec.password) and spec.kind is TrunkKind.STATIC:
        raise InvalidInput("digest credentials need both username and password")


def _apply(trunk: SipTrunk, spec: TrunkSpec, secret_box: SecretBox) -> None:
    trunk.name = spec.name.strip()
    trunk.kind = spec.kind
    trunk.host = spec.host.strip()
    trunk.port = spec.port
    trunk.transport = spec.transport.upper()
    trunk.username = spec.username
    trunk.password_encrypted = secret_box.encrypt(spec.password) if spec.password else None
    trunk.number_format = spec.number_format
    trunk.channel_limit = spec.channel_limit
    trunk.international_calls_allowed = spec.international_calls_allowed
    trunk.codecs = list(spec.codecs)
    trunk.source_hosts = list(spec.source_hosts) or [spec.host.strip()]
    trunk.extras = dict(spec.extras)
    trunk.registration_status = TrunkRegistrationStatus.UNREGISTERED if spec.kind is TrunkKind.REGISTERED else None
    trunk.registration_detail = None
    trunk.updated_at = utcnow()


async def create_trunk(*, session: AsyncSession, account_id: str, spec: TrunkSpec, secret_box: SecretBox) -> SipTrunk:
    _check(spec)
    trunk = SipTrunk(account_id=account_id, admin_status=TrunkAdminStatus.ENABLED)
    _apply(trunk, spec, secret_box)
    session.add(trunk)
    await session.flush()
    return trunk


async def get_trunk(*, session: AsyncSession, account_id: str, trunk_id: str) -> SipTrunk:
    trunk = await session.get(SipTrunk, trunk_id)
    if trunk is None or trunk.account_id != account_id:
        raise SipTrunkNotFound()
    return trunk


async def list_trunks(
    *, session: AsyncSession, account_id: str, name: str | None = None, offset: int = 0, limit: int = 20
) -> tuple[list[SipTrunk], int]:
    """One page of the account's trunks (oldest first) and the total count."""
    condition = SipTrunk.account_id == account_id
    if name:
        condition = condition & (SipTrunk.name == name)
    total = await session.scalar(select(func.count()).select_from(SipTrunk).where(condition)) or 0
    rows = await session.scalars(
        select(SipTrunk).where(condition).order_by(SipTrunk.created_at, SipTrunk.id).offset(offset).limit(limit)
    )
    return list(rows), total


async def update_trunk(
    *, session: AsyncSession, account_id: str, trunk_id: str, spec: TrunkSpec, secret_box: SecretBox
) -> SipTrunk:
    """A full replacement, as Infobip documents (omitted fields go back to their defaults)."""
    trunk = await get_trunk(session=session, account_id=account_id, trunk_id=trunk_id)
    _check(spec)
    _apply(trunk, spec, secret_box)
    await session.flush()
    return trunk


async def delete_trunk(*, session: AsyncSession, account_id: str, trunk_id: str) -> SipTrunk:
    trunk = await get_trunk(session=session, account_id=account_id, trunk_id=trunk_id)
    await session.delete(trunk)
    await session.flush()
    return trunk


async def set_admin_status(
    *, session: AsyncSession, account_id: str, trunk_id: str, status: TrunkAdminStatus
) -> SipTrunk:
    trunk = await get_trunk(session=session, account_id=account_id, trunk_id=trunk_id)
    trunk.admin_status = status
    trunk.updated_at = utcnow()
    await session.flush()
    return trunk


# ---- phone calls through a trunk ----------------------------------------------------------------


def format_number(value: str, number_format: str, *, default_region: str = "US") -> str:
    """A phone number as the trunk wants it in the Request-URI / From user part."""
    try:
        parsed = phonenumbers.parse(value.strip(), default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"{value!r} is not a phone number") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(f"{value!r} is not a valid phone number")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if number_format == NumberFormat.INTERNATIONAL:
        return e164[1:]
    if number_format == NumberFormat.US_NATIONAL:
        if parsed.country_code != 1:
            return e164[1:]  # not a NANP number: national format would be ambiguous
        return str(parsed.national_number)
    return e164


class TrunkChannels:
    """Live calls per trunk in this engine process, to enforce channel limits and report `activeCalls`.

    In-memory on purpose: a call's channel is held by the process whose engine carries the call.
    """

    def __init__(self) -> None:
        self._active: dict[str, int] = {}

    def active(self, trunk_id: str) -> int:
        return self._active.get(trunk_id, 0)

    def acquire(self, trunk_id: str, limit: int) -> None:
        if self.active(trunk_id) >= limit:
            raise TrunkChannelsExhausted(f"SIP trunk {trunk_id} has all {limit} channels in use")
        self._active[trunk_id] = self.active(trunk_id) + 1

    def release(self, trunk_id: str) -> None:
        remaining = self.active(trunk_id) - 1
        if remaining > 0:
            self._active[trunk_id] = remaining
        else:
            self._active.pop(trunk_id, None)

    @contextlib.contextmanager
    def holding(self, trunk_id: str, limit: int) -> Iterator[None]:
        """Hold a channel for the block (release on error); callers that keep it release on hangup."""
        self.acquire(trunk_id, limit)
        try:
            yield
        except BaseException:
            self.release(trunk_id)
            raise
