"""Promo numbers and the marketing data set on the tenancy tree (managed by operators), and how a call to a
promo number is taken: a tracked inbound leg bridged (a voice dialog) to the campaign's destination."""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.call_tracking.errors import PromoNumberNotFound
from callplane.core.call_tracking.models import CustomDataValue, DestinationType, OwnerType, PromoNumber
from callplane.core.ingestion.phones import PhoneNumberError, normalize_phone
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.errors import AlreadyExists
from callplane.core.tenancy.models import Account, Campaign, CustomDataField, Organization, OrganizationKind
from callplane.core.voice import trunks
from callplane.core.voice.configurations import get_configuration, route_for
from callplane.core.voice.models import CallsConfiguration, EndpointType
from callplane.core.voice.outbound import check_host_port, sip_user_problem
from callplane.core.voice.schemas import Endpoint
from callplane.db.base import new_id
from callplane.errors import InvalidInput, NotFound

log = logging.getLogger("callplane.call_tracking")

_SIP_USER = re.compile(r"^[A-Za-z0-9._~+-]{1,64}$")
_SIP_URI = re.compile(r"^sips?:(?P<user>[^@;>\s]+)@(?P<host>[^;>\s:]+)(?::(?P<port>\d{1,5}))?$")
# The order a value's owner wins in: the most specific last.
PRECEDENCE = (OwnerType.NETWORK, OwnerType.ADVERTISER, OwnerType.CAMPAIGN, OwnerType.PROMO_NUMBER)


# ---- phone numbers --------------------------------------------------------------------------------


# Not cached here: normalize_phone caches the parse itself (one cache for ingestion, searches and routed INVITEs).
def phone_e164(value: str | None) -> str | None:
    """The E.164 form of a number (a SIP user such as `sipp` is not one: None)."""
    if not value:
        return None
    try:
        return normalize_phone(value)
    except PhoneNumberError:
        return None


def _number_key(number: str) -> str:
    e164 = phone_e164(number) if any(ch.isdigit() for ch in number) else None
    if e164 is not None:
        return e164
    if not _SIP_USER.match(number):
        raise InvalidInput("number must be a phone number or a SIP user (letters, digits, . _ ~ + -)")
    return number


def number_candidates(called_user: str) -> list[str]:
    """The promo-number spellings a called SIP user may match (as dialled, and as E.164)."""
    found = [called_user]
    e164 = phone_e164(called_user) if any(ch.isdigit() for ch in called_user) else None
    if e164 is not None and e164 not in found:
        found.append(e164)
    return found


@dataclass(frozen=True, slots=True)
class Destination:
    type: DestinationType
    value: str  # sip:user@host[:port] or +E164
    user: str
    host: str | None  # host[:port] for SIP
    e164: str | None  # the destination_phone_number

    def endpoint(self, trunk_id: str | None) -> Endpoint:
        if self.type is DestinationType.SIP:
            return Endpoint(EndpointType.SIP, self.user, host=self.host)
        return Endpoint(EndpointType.PHONE, self.user, trunk_id=trunk_id)


def parse_destination(value: str) -> Destination:
    """A SIP URI (`sip:user@host[:port]`) or a phone number (dialled through a trunk)."""
    text = value.strip()
    if text.lower().startswith(("sip:", "sips:")):
        match = _SIP_URI.match(text)
        if match is None:
            raise InvalidInput("destination must be sip:user@host[:port] or a phone number")
        host = match["host"] + (f":{match['port']}" if match["port"] else "")
        user = match["user"]
        return Destination(DestinationType.SIP, text, user, host, phone_e164(user))
    try:
        e164 = normalize_phone(text)
    except PhoneNumberError as exc:
        raise InvalidInput(f"destination {exc}") from exc
    return Destination(DestinationType.PHONE, e164, e164, None, e164)


# ---- promo numbers ----------------------------------------------------------------------------------


async def create_promo_number(
    *,
    session: AsyncSession,
    account_id: str,
    campaign_id: str,
    number: str,
    destination: str,
    trunk_id: str | None = None,
    configuration_id: str | None = None,
    description: str = "",
    external_id: str | None = None,
    media_type: str | None = None,
    record: bool = True,
    policy: TargetPolicy | None = None,
) -> PromoNumber:
    """A promo number of a campaign. Without a configuration, one is made for it whose postCallProcessing is
    `record` (the recording of each call goes through the post-call pipeline). A SIP destination is checked
    against the outbound target `policy` when one is given (the API; every INVITE is checked again)."""
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or campaign.account_id != account_id:
        raise NotFound("campaign does not exist in this account")
    key = _number_key(number.strip())
    target = parse_destination(destination)
    if target.type is DestinationType.SIP:
        problem = sip_user_problem(target.user)
        if problem is not None:
            raise InvalidInput(f"destination: {problem}")
        if policy is not None and target.host is not None:
            await check_host_port(policy, target.host, what=f"destination {target.value}")
    if target.type is DestinationType.PHONE:
        if trunk_id is None:
            raise InvalidInput("a phone-number destination needs trunk_id (the SIP trunk that dials it)")
        await trunks.get_trunk(session=session, account_id=account_id, trunk_id=trunk_id)
    elif trunk_id is not None:
        raise InvalidInput("trunk_id applies to phone-number destinations only")
    if await route_for(session=session, called_user=key) is not None:
        raise AlreadyExists(f"{key!r} is already an inbound voice route")
    if configuration_id is not None:
        await get_configuration(session=session, account_id=account_id, configuration_id=configuration_id)
    else:
        configuration = CallsConfiguration(
            id=new_id(), account_id=account_id, name=f"call tracking {key}", post_call_processing=record
        )
        session.add(configuration)
        configuration_id = configuration.id
    promo = PromoNumber(
        account_id=account_id,
        campaign_id=campaign_id,
        number=key,
        external_id=external_id,
        description=description,
        media_type=media_type,
        destination_type=target.type,
        destination=target.value,
        trunk_id=trunk_id,
        configuration_id=configuration_id,
        record=record,
    )
    session.add(promo)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"promo number {key!r} already exists") from exc
    return promo


async def get_promo_number(*, session: AsyncSession, account_id: str, promo_number_id: str) -> PromoNumber:
    promo = await session.get(PromoNumber, promo_number_id)
    if promo is None or promo.account_id != account_id:
        raise PromoNumberNotFound()
    return promo


async def list_promo_numbers(*, session: AsyncSession, account_id: str) -> list[PromoNumber]:
    return list(
        await session.scalars(
            select(PromoNumber).where(PromoNumber.account_id == account_id).order_by(PromoNumber.created_at)
        )
    )


async def delete_promo_number(*, session: AsyncSession, account_id: str, promo_number_id: str) -> PromoNumber:
    promo = await get_promo_number(session=session, account_id=account_id, promo_number_id=promo_number_id)
    await session.execute(
        delete(CustomDataValue).where(
            CustomDataValue.owner_type == OwnerType.PROMO_NUMBER, CustomDataValue.owner_id == promo.id
        )
    )
    await session.delete(promo)
    await session.flush()
    return promo


# ---- custom data values on networks, advertisers, campaigns, promo numbers ---------------------------


async def check_owner(session: AsyncSession, account_id: str, owner_type: OwnerType, owner_id: str) -> None:
    found: Any
    if owner_type is OwnerType.NETWORK:
        found = await session.get(Account, owner_id)
    elif owner_type is OwnerType.ADVERTISER:
        found = await session.get(Organization, owner_id)
        if found is not None and found.kind != OrganizationKind.ADVERTISER:
            found = None
    elif owner_type is OwnerType.CAMPAIGN:
        found = await session.get(Campaign, owner_id)
    else:
        found = await session.get(PromoNumber, owner_id)
    if found is None or (owner_type is OwnerType.NETWORK and found.id != account_id):
        raise NotFound(f"{owner_type} {owner_id!r} does not exist in this account")
    if owner_type is not OwnerType.NETWORK and found.account_id != account_id:
        raise NotFound(f"{owner_type} {owner_id!r} does not exist in this account")


async def set_custom_data_values(
    *, session: AsyncSession, account_id: str, owner_type: OwnerType, owner_id: str, values: dict[str, str | None]
) -> list[tuple[str, str]]:
    """Set (or, with None, clear) marketing data values on one owner; names are the account's custom data
    fields. Returns the owner's values after the change as (name, value)."""
    await check_owner(session, account_id, owner_type, owner_id)
    fields = {
        row.api_name_key: row
        for row in await session.scalars(select(CustomDataField).where(CustomDataField.account_id == account_id))
    }
    unknown = [name for name in values if name.strip().casefold() not in fields]
    if unknown:
        raise InvalidInput(problems=[f"custom data field {name!r} does not exist in this account" for name in unknown])
    for name, value in values.items():
        field = fields[name.strip().casefold()]
        await session.execute(
            delete(CustomDataValue).where(
                CustomDataValue.owner_type == owner_type,
                CustomDataValue.owner_id == owner_id,
                CustomDataValue.field_id == field.id,
            )
        )
        if value is not None:
            session.add(
                CustomDataValue(
                    account_id=account_id, owner_type=owner_type, owner_id=owner_id, field_id=field.id, value=value
                )
            )
    await session.flush()
    return await list_custom_data_values(session=session, owner_type=owner_type, owner_id=owner_id)


async def list_custom_data_values(
    *, session: AsyncSession, owner_type: OwnerType, owner_id: str
) -> list[tuple[str, str]]:
    rows = await session.execute(
        select(CustomDataField.api_name, CustomDataValue.value)
        .join(CustomDataField, CustomDataField.id == CustomDataValue.field_id)
        .where(CustomDataValue.owner_type == owner_type, CustomDataValue.owner_id == owner_id)
        .order_by(CustomDataField.api_name)
    )
    return [(name, value) for name, value in rows.all()]


async def resolved_custom_data(
    session: AsyncSession, account_id: str, owners: dict[OwnerType, str]
) -> dict[str, tuple[str, str, OwnerType]]:
    """field id -> (name, value, owner type) with the most specific owner's value winning."""
    if not owners:
        return {}
    rows = await session.execute(
        select(
            CustomDataValue.owner_type, CustomDataValue.owner_id, CustomDataValue.field_id, CustomDataValue.value
        ).where(CustomDataValue.account_id == account_id, CustomDataValue.owner_id.in_(list(owners.values())))
    )
    names = {}
    merged: dict[str, tuple[str, str, OwnerType]] = {}
    found = [row for row in rows.all() if owners.get(OwnerType(row.owner_type)) == row.owner_id]
    if found:
        field_ids = {row.field_id for row in found}
        names = dict(
            (
                await session.execute(
                    select(CustomDataField.id, CustomDataField.api_name).where(CustomDataField.id.in_(field_ids))
                )
            ).all()
        )
    for owner_type in PRECEDENCE:
        for row in found:
            if row.owner_type == owner_type and row.field_id in names:
                merged[row.field_id] = (names[row.field_id], row.value, owner_type)
    return merged


# ---- taking a call to a promo number ---------------------------------------------------------------


def new_transaction_id() -> str:
    """Invoca's shape: `ABCD1234-ABCD1234` (16 random hex digits)."""
    raw = secrets.token_hex(8).upper()
    return f"{raw[:8]}-{raw[8:]}"


def new_call_record_id() -> str:
    """Invoca's shape: `Z6E5-C7397356976E`."""
    raw = secrets.token_hex(8).upper()
    return f"{raw[:4]}-{raw[4:]}"
